"""Runs one sample-shop service (a file of ``examples/shop``) as a process, as the demo needs it.

::

    python -m pyseata.demo.host examples/shop/stock.py --tc 127.0.0.1:8091 --db sqlite:///stock.db --port 0
    python examples/shop/stock.py --tc ... --db ... --port 8002        # the same (the file calls main)

A service file provides ``APPLICATION_ID``, ``options(parser)`` (its own command-line options) and
``create_app(db, args)``, which declares its TCC actions and returns a FastAPI (ASGI) or Flask (WSGI)
app. This host does the rest, which every service would otherwise repeat:

* binds 127.0.0.1 on ``--port`` itself (0: any free port), so that it knows the port before
  serving, and says so on one line of stdout: ``shop service stock ready on http://127.0.0.1:PORT``
  (the demo and the tests wait for that line, as for the TC's ``pyseata TC ready on ...``); a port
  in use is one clear line on stderr and exit status 2;
* starts the pyseata client runtime (``pyseata.client.init``) after ``create_app`` declared the
  actions, so they are registered with the TC from the start;
* serves with uvicorn (ASGI) or werkzeug's threaded server (WSGI) until SIGTERM or SIGINT, then
  closes the client runtime;
* with ``PYSEATA_DEMO_PARENT`` set (the demo sets it to its pid), stops by itself when that
  process goes away, so a demo killed without a chance to clean up leaves no service behind.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["PARENT_ENV", "READY", "load_service", "main", "watch_parent"]

READY = "shop service {name} ready on "
PARENT_ENV = "PYSEATA_DEMO_PARENT"
EXIT_PORT_IN_USE = 2

log = logging.getLogger("pyseata.demo.host")


def load_service(path: str | Path) -> ModuleType:
    """Imports a service file by path. Its folder goes first on sys.path, as when it is run as a
    script, so a service may import its neighbours (``schema``)."""
    file = Path(path).resolve()
    if not file.is_file():
        raise FileNotFoundError(f"no service file {file}")
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"pyseata_shop_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic and dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def watch_parent(parent: int, on_orphaned: Any = None, period: float = 0.5) -> threading.Thread:
    """Watches for the death of ``parent`` (we are re-parented); then SIGTERMs this process (an
    orderly stop), and ends it for good 10 s later if that did not work."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        (on_orphaned or (lambda: os.kill(os.getpid(), signal.SIGTERM)))()
        time.sleep(10)
        os._exit(1)

    thread = threading.Thread(target=watch, name="pyseata-demo-parent-watch", daemon=True)
    thread.start()
    return thread


def _parser(service: ModuleType, name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"shop {name} service", description=(service.__doc__ or "").split("\n")[0])
    parser.add_argument("--tc", required=True, help="HOST:PORT of the Transaction Coordinator.")
    parser.add_argument("--db", required=True, help="This service's database URL (see pyseata.demo.db).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=0, help="Port to listen on (0: any free port).")
    parser.add_argument("--log-level", default="INFO")
    service.options(parser)
    return parser


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A restarted service takes its port back while old connections still sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def main(path: str | Path, argv: list[str] | None = None) -> None:
    """Runs the service in ``path`` until SIGTERM / SIGINT (see the module doc)."""
    service = load_service(path)
    name = Path(path).stem
    args = _parser(service, name).parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise here
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parent = os.environ.get(PARENT_ENV)
    if parent:
        watch_parent(int(parent))

    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"error: port {args.port} on {args.host} is already in use: stop what uses it or choose another "
                  "port (0 picks a free one)", file=sys.stderr, flush=True)  # fmt: skip
        else:
            print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(EXIT_PORT_IN_USE)

    import pyseata.client as seata
    from pyseata.demo.db import Database

    db = Database.from_url(args.db)
    app = service.create_app(db, args)
    # Short client timeouts and many retries: the demo's chaos kills the TC for a second or two, and
    # a commit sent meanwhile should land on the restarted TC rather than give up.
    seata.init(application_id=service.APPLICATION_ID, grouplist=args.tc, tm_request_timeout=5.0,
               rm_request_timeout=5.0, connect_timeout=2.0, retry_interval=0.3, commit_retry_count=20,
               rollback_retry_count=20)  # fmt: skip
    port = sock.getsockname()[1]
    try:
        if hasattr(app, "wsgi_app"):
            _serve_wsgi(app, sock, lambda: _ready(name, args.host, port))
        else:
            _serve_asgi(app, sock, lambda: _ready(name, args.host, port))
    finally:
        _close_data_sources()
        seata.shutdown()
        sock.close()


def _close_data_sources() -> None:
    """AT data sources delete the undo logs of committed branches in the background: let them
    finish what is queued before the process ends (a SIGKILL leaves those rows to the TC's
    age-based clean-up, which is what Seata does too)."""
    from pyseata.client.rm import DEFAULT_REGISTRY

    try:
        from pyseata.at import DataSource
    except ImportError:  # no AT mode here: nothing to flush
        return
    for resource in DEFAULT_REGISTRY.resources():
        if isinstance(resource, DataSource):
            try:
                resource.close()
            except Exception:
                log.exception("closing %r failed", resource)


def _ready(name: str, host: str, port: int) -> None:
    print(f"{READY.format(name=name)}http://{host}:{port}", flush=True)


def _serve_asgi(app: Any, sock: socket.socket, ready: Any) -> None:
    import asyncio

    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=3,
                            access_log=False)  # fmt: skip
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            ready()
        await task

    # uvicorn handles SIGINT and SIGTERM itself (it stops accepting and lets requests in flight
    # finish), then raises the signal again with the handlers it found: make SIGTERM's a clean
    # exit, so that main() still closes the client runtime instead of dying on the default action.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    asyncio.run(serve())


def _exit_cleanly(*_: object) -> None:
    raise SystemExit(0)


def _serve_wsgi(app: Any, sock: socket.socket, ready: Any) -> None:
    from werkzeug.serving import make_server

    host, port = sock.getsockname()[:2]
    server = make_server(host, port, app, threaded=True, fd=sock.fileno())

    def stop(*_: object) -> None:
        # shutdown() waits for serve_forever to notice: not from the signal handler's own thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m pyseata.demo.host SERVICE_FILE --tc HOST:PORT --db URL [--port N] ...",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    main(sys.argv[1], sys.argv[2:])
