"""``pyseata server``: run a Transaction Coordinator until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys
from typing import Any

import click

from pyseata.errors import ConfigError, PyseataError

log = logging.getLogger("pyseata.tc")


def _install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def _serve(settings: Any, ready_message: bool) -> None:
    from pyseata.coordinator.app import TransactionCoordinator

    tc = TransactionCoordinator(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await tc.start()
    except BaseException:
        await tc.stop()
        raise
    host, port = tc.address
    if ready_message:
        # One parseable line for scripts and tests that started us with --port 0.
        print(f"pyseata TC ready on {host}:{port}", flush=True)
    try:
        await stop.wait()
        log.info("stopping: draining requests in flight (up to %.0f s)", settings.drain_timeout)
    finally:
        await tc.stop()


@click.command("server")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8091; 0 picks a free one).")
@click.option("--store", default=None, help="Session store URL: sqlite:///path (default) or memory://.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file with a [server] table.")
@click.option("--advertise-host", default=None, help="Host clients reach this TC at (goes into XIDs).")
@click.option("--worker-id", type=int, default=None, help="0..1023, distinct per TC sharing a store.")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR.")
def server(config_file: str | None, **flags: Any) -> None:
    """Run a Transaction Coordinator (Seata protocol v1, wire-compatible with Seata clients)."""
    from pyseata.coordinator.settings import load_settings

    try:
        settings = load_settings(config_file, flags)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop_name = _install_uvloop()
    log.info("starting pyseata TC (%s event loop)", loop_name)
    try:
        asyncio.run(_serve(settings, ready_message=True))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            click.echo(f"error: port {settings.port} on {settings.host} is already in use: is another TC "
                       "running? Stop it or choose another --port.", err=True)
        else:
            click.echo(f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    except PyseataError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
