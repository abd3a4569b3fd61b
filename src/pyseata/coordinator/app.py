"""A whole TC: store, coordinator, listener and recovery, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import replace
from pathlib import Path

from pyseata.coordinator.config import CoordinatorConfig
from pyseata.coordinator.core import Coordinator
from pyseata.coordinator.recovery import Recovery
from pyseata.coordinator.settings import ServerSettings
from pyseata.coordinator.store import open_store
from pyseata.coordinator.store.base import SessionStore
from pyseata.errors import ConfigError
from pyseata.rpc.auth import Credentials
from pyseata.rpc.channel import ChannelConfig
from pyseata.rpc.server import RpcServer, ServerConfig

__all__ = ["TransactionCoordinator"]

log = logging.getLogger("pyseata.tc")


def _advertised_host(settings: ServerSettings) -> str:
    if settings.advertise_host:
        return settings.advertise_host
    if settings.host not in ("0.0.0.0", "::", ""):
        return settings.host
    try:  # the address this machine would use to reach the outside (no packet is sent)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def _ssl_context(settings: ServerSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {settings.tls_cert} / key {settings.tls_key}: {exc}") from None
    return context


class TransactionCoordinator:
    """``async with TransactionCoordinator(settings) as tc:`` runs a TC until the block ends."""

    def __init__(self, settings: ServerSettings, store: SessionStore | None = None) -> None:
        self.settings = settings
        self._store = store
        self.coordinator: Coordinator | None = None
        self.server: RpcServer | None = None
        self.recovery: Recovery | None = None
        self._catch_up: asyncio.Task[None] | None = None

    @property
    def store(self) -> SessionStore:
        """The session store (opened by start() unless one was given)."""
        assert self._store is not None, "start() first"
        return self._store

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return self.server.address

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()  # `async with` does not call __aexit__ when __aenter__ fails
            raise

    async def _start(self) -> None:
        s = self.settings
        store = self._store or open_store(s.store)
        self._store = store
        config = CoordinatorConfig(
            advertise_host=_advertised_host(s), advertise_port=s.port, worker_id=s.worker_id,
            default_timeout_ms=s.default_timeout_ms, branch_request_timeout=s.branch_request_timeout,
            retry_period=s.retry_period, retry_backoff_max=s.retry_backoff_max,
            max_commit_retry_ms=s.max_commit_retry_ms, max_rollback_retry_ms=s.max_rollback_retry_ms,
            dead_session_ms=s.dead_session_ms, alert_webhook=s.alert_webhook,
            rollback_retry_timeout_unlock=s.rollback_retry_timeout_unlock,
            unresponsive_rm_cooldown=s.unresponsive_rm_cooldown, finished_outcomes_kept=s.finished_outcomes_kept,
        )
        coordinator = Coordinator(store, config)
        credentials = Credentials(s.secret, s.access_key) if s.secret else None
        server = RpcServer(coordinator, ServerConfig(
            host=s.host, port=s.port, credentials=credentials, ssl_context=_ssl_context(s),
            batch_response=s.batch_response, drain_timeout=s.drain_timeout,
            channel=ChannelConfig(request_timeout=s.branch_request_timeout, heartbeat_interval=None,
                                  idle_timeout=s.idle_timeout),
        ))
        await server.start()
        host, port = server.address
        if s.port == 0:  # the XIDs must carry the port the OS chose
            coordinator.config = replace(config, advertise_port=port)
        coordinator.sender = server.send_to_rm
        coordinator.start()
        recovery = Recovery(coordinator, owner=f"{coordinator.config.advertise_host}:{port}",
                            broadcast_undo_delete=server.broadcast_undo_log_delete)
        self.coordinator, self.server, self.recovery = coordinator, server, recovery
        unfinished = await store.count_globals()
        where = s.store
        if isinstance(path := getattr(store, "path", None), Path):  # a file store: say which file
            where = f"{where}, file {path.resolve()}"
        log.info("TC listening on %s:%d (store %s, %d unfinished transaction(s), XIDs as %s:%d)",
                 host, port, where, unfinished, coordinator.config.advertise_host, coordinator.config.advertise_port)
        if unfinished:
            # Carry on where the last run stopped, without waiting for the first tick. The task
            # is kept: the loop holds tasks only weakly, and stop() must be able to cancel it.
            self._catch_up = asyncio.get_running_loop().create_task(
                self._run_catch_up(recovery), name="recovery-after-restart")
        recovery.start()

    @staticmethod
    async def _run_catch_up(recovery: Recovery) -> None:
        try:
            await recovery.run_once(after_restart=True)
        except Exception:
            log.exception("catching up after the restart failed; the recovery loops will retry")

    async def stop(self) -> None:
        if self._catch_up is not None:
            self._catch_up.cancel()
            await asyncio.gather(self._catch_up, return_exceptions=True)
            self._catch_up = None
        if self.recovery is not None:
            await self.recovery.stop()
        if self.server is not None:
            await self.server.shutdown()
        if self.coordinator is not None:
            await self.coordinator.stop()
        if self._store is not None:
            await self._store.close()
        self.recovery = self.coordinator = self.server = None
        log.info("TC stopped")

    async def __aenter__(self) -> TransactionCoordinator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
