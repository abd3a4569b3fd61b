"""The TC's listener: accepts connections, registers TMs and RMs, hands transaction requests to
the coordinator, answers batches the way Seata does, and sends TC -> RM requests."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Protocol

from pyseata.errors import ConnectionClosedError, PyseataError, TransactionError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchType, ResultCode, TransactionExceptionCode, exception_code_table_for
from pyseata.protocol.frame import Frame
from pyseata.protocol.version import is_at_least, version_to_int
from pyseata.rpc.auth import Credentials, verify
from pyseata.rpc.channel import Channel, ChannelConfig
from pyseata.rpc.registry import ChannelRegistry, ClientInfo, Role

__all__ = [
    "TC_REQUESTS",
    "NoRmChannelError",
    "RpcServer",
    "ServerConfig",
    "TransactionHandler",
    "failure_response",
]

log = logging.getLogger("pyseata.rpc.server")

_CLOSE_GRACE = 2.0  # seconds for cancelled handlers to unwind and sockets to flush at shutdown

SERVER_VERSION = "2.2.0"  # what we report; Java clients only compare it for batch answers

TC_REQUESTS: frozenset[type[m.Message]] = frozenset(
    {
        m.GlobalBeginRequest,
        m.GlobalCommitRequest,
        m.GlobalRollbackRequest,
        m.GlobalStatusRequest,
        m.GlobalReportRequest,
        m.BranchRegisterRequest,
        m.BranchReportRequest,
        m.GlobalLockQueryRequest,
    }
)
"""The requests a TC serves (Java's NettyRemotingServer: type codes 1, 7, 9, 11, 13, 15, 17, 21);
BranchCommit/BranchRollback go the other way."""

_REGISTRATIONS = (m.RegisterTMRequest, m.RegisterRMRequest)


class TransactionHandler(Protocol):
    """What the coordinator provides to the listener."""

    async def handle(self, request: m.Message, client: ClientInfo) -> m.AbstractResultMessage: ...

    def client_gone(self, client: ClientInfo) -> None: ...


class NoRmChannelError(PyseataError, ConnectionError):
    """No registered RM connection can take a branch's phase-two request."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8091
    channel: ChannelConfig = field(
        default_factory=lambda: ChannelConfig(request_timeout=15.0, heartbeat_interval=None, idle_timeout=15.0)
    )
    credentials: Credentials | None = None
    ssl_context: ssl.SSLContext | None = None
    batch_response: bool = False  # Seata's transport.enableTcServerBatchSendResponse
    drain_timeout: float = 10.0
    backlog: int = 1024


def failure_response(request: m.Message, exc: BaseException) -> m.AbstractResultMessage:
    """The failed response Seata's AbstractExceptionHandler builds for ``request``."""
    cls = m.RESPONSE_FOR[type(request)]
    if isinstance(exc, TransactionError):
        return cls(
            result_code=ResultCode.Failed,
            msg=f"TransactionException[{exc}]",  # type: ignore[call-arg]
            transaction_exception_code=exc.code,
        )
    kwargs: dict[str, object] = {"result_code": ResultCode.Failed, "msg": f"RuntimeException[{exc}]"}
    if issubclass(cls, m.AbstractTransactionResponse):
        kwargs["transaction_exception_code"] = TransactionExceptionCode.Unknown
    return cls(**kwargs)  # type: ignore[arg-type]


class RpcServer:
    def __init__(self, handler: TransactionHandler, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.handler = handler
        self.registry = ChannelRegistry()
        self._server: asyncio.Server | None = None
        self._channels: set[Channel] = set()
        self._busy_closed: set[Channel] = set()  # closed connections whose handlers still run
        self._stopping = False

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_channel,
            self.config.host,
            self.config.port,
            ssl=self.config.ssl_context,
            backlog=self.config.backlog,
            reuse_address=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): with port 0 in the config, the port the OS chose."""
        assert self._server is not None, "start() first"
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def channels(self) -> set[Channel]:
        return set(self._channels)

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Stops accepting; lets the handlers in flight, and the requests already read, finish
        for up to the drain timeout; cancels what is left; closes every connection.

        Connections keep reading while draining: a handler may be waiting for an RM's answer.
        """
        self._stopping = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        timeout = self.config.drain_timeout if drain_timeout is None else drain_timeout
        deadline = loop.time() + timeout
        while tasks := self._handler_tasks():
            # Re-read the set each round: a finished handler lets a backlogged request start.
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning(
                    "shutdown: %d handler(s) still running after the %.1f s drain timeout; cancelling them",
                    len(tasks), timeout,
                )  # fmt: skip
                break
            await asyncio.wait(tasks, timeout=remaining)
        leftover = self._handler_tasks()
        channels = list(self._channels | self._busy_closed)
        for channel in channels:
            channel.cancel_tasks()
        if leftover:
            await asyncio.wait(leftover, timeout=_CLOSE_GRACE)  # their finally blocks run
        for channel in channels:
            channel.close("TC shutting down")
        # Each socket gets a moment to flush its last answers; a peer that does not read is cut.
        flushed = await asyncio.gather(*(c.wait_lost(_CLOSE_GRACE) for c in channels))
        for channel, done in zip(channels, flushed, strict=True):
            if not done:
                channel.abort("TC shutting down")
        self._busy_closed.clear()
        if self._server is not None:
            await self._server.wait_closed()

    def _handler_tasks(self) -> set[asyncio.Task[None]]:
        self._busy_closed = {c for c in self._busy_closed if c.active_handlers}
        return {task for c in self._channels | self._busy_closed for task in c.tasks}

    def _new_channel(self) -> Channel:
        channel = Channel(self._on_frame, self.config.channel, on_close=self._channel_closed, name="tc")
        self._channels.add(channel)
        return channel

    def _channel_closed(self, channel: Channel) -> None:
        self._channels.discard(channel)
        if channel.active_handlers:
            self._busy_closed.add(channel)  # its handlers run on; shutdown still waits for them
        info = self.registry.unregister(channel)
        if info is not None:
            log.info("%s %s disconnected", info.role.value, info.client_id)
            try:
                self.handler.client_gone(info)
            except Exception:
                log.exception("client_gone hook failed for %s", info.client_id)

    # --- inbound ----------------------------------------------------------------------------------

    async def _on_frame(self, channel: Channel, frame: Frame) -> None:
        body = frame.body
        info = self.registry.info(channel)
        if type(body) in TC_REQUESTS and info is not None:  # nearly all traffic: keep it short
            try:
                result = await self.handler.handle(body, info)
            except Exception as exc:
                result = self._failure(body, exc, info)
            channel.respond(frame, result)
        elif isinstance(body, _REGISTRATIONS):
            # Answered even when it came as oneway (seata-go registers that way).
            channel.respond(frame, self._register(channel, body))
        elif info is None:
            # Seata closes a connection that sends business messages before registering.
            log.warning("closing %s: %s before registration", channel.peer_text, type(body).__name__)
            channel.close(f"{type(body).__name__} before registration")
        elif isinstance(body, m.MergedWarpMessage):
            await self._merged(channel, frame, body, info)
        else:
            # Java's TC has no processor for these either (a BranchCommitRequest sent to the TC,
            # a stray response type as a request...): logged and dropped.
            log.warning("ignoring %s from %s: not a request a TC serves", type(body).__name__, info.client_id)

    def _failure(self, request: m.Message, exc: Exception, info: ClientInfo) -> m.AbstractResultMessage:
        if not isinstance(exc, TransactionError):
            log.error("handling %r from %s failed", request, info.client_id, exc_info=exc)
        return failure_response(request, exc)

    async def _handle_one(self, request: m.Message, info: ClientInfo) -> m.AbstractResultMessage:
        try:
            return await self.handler.handle(request, info)
        except Exception as exc:
            return self._failure(request, exc, info)

    async def _merged(self, channel: Channel, frame: Frame, body: m.MergedWarpMessage, info: ClientInfo) -> None:
        strays = [type(msg).__name__ for msg in body.msgs if type(msg) not in TC_REQUESTS]
        if strays:
            # Checked before anything runs: no half-applied batch.
            log.warning(
                "closing %s: merged message carries %s, which a TC does not serve",
                info.client_id,
                ", ".join(strays),
            )
            channel.close("merged message with non-transaction content")
            return
        # Handled concurrently, answered in order (Seata's enableParallelRequestHandle).
        results = tuple(await asyncio.gather(*(self._handle_one(msg, info) for msg in body.msgs)))
        if self.config.batch_response and body.msg_ids and is_at_least(info.version, "1.5.0"):
            # Seata copies the request's head map into batch answers (PROTOCOL.md 5.5).
            channel.respond(frame, m.BatchResultMessage(results, body.msg_ids), dict(frame.head_map))
        else:
            channel.respond(frame, m.MergeResultMessage(results))

    def _register(self, channel: Channel, req: m.RegisterTMRequest | m.RegisterRMRequest) -> m.Message:
        is_rm = isinstance(req, m.RegisterRMRequest)
        answer = m.RegisterRMResponse if is_rm else m.RegisterTMResponse
        reason = self._refusal(req)
        if reason is not None:
            log.warning(
                "refused %s registration from %s (app %s): %s",
                "RM" if is_rm else "TM",
                channel.peer_text,
                req.application_id,
                reason,
            )
            return answer(identified=False, version=SERVER_VERSION)
        channel.codes = exception_code_table_for(req.version)
        info = ClientInfo(
            role=Role.RM if is_rm else Role.TM,
            application_id=req.application_id or "",
            transaction_service_group=req.transaction_service_group or "",
            version=req.version or "",
            ip=channel.peer[0],
            port=channel.peer[1],
            extra_data=req.extra_data,
        )
        if isinstance(req, m.RegisterRMRequest):
            resources = {r for r in (req.resource_ids or "").split(",") if r}
            self.registry.register_rm(channel, info, resources)
            log.info("RM %s registered %d resource(s) (version %s)", info.client_id, len(resources), info.version)
        else:
            self.registry.register_tm(channel, info)
            log.info("TM %s registered (version %s)", info.client_id, info.version)
        return answer(identified=True, version=SERVER_VERSION)

    def _refusal(self, req: m.RegisterTMRequest | m.RegisterRMRequest) -> str | None:
        try:
            version_to_int(req.version or "")
        except ValueError as exc:
            return f"unusable client version {req.version!r}: {exc}"
        if not req.application_id:
            return "no application id"
        if self._stopping:
            return "TC is shutting down"
        creds = self.config.credentials
        if creds is not None:
            return verify(creds, req.transaction_service_group or "", req.extra_data)
        return None

    # --- outbound (TC -> RM) ----------------------------------------------------------------------

    async def send_to_rm(
        self,
        resource_id: str,
        client_id: str | None,
        branch_type: BranchType,
        request: m.Message,
        timeout: float | None = None,
    ) -> m.Message:
        """Sends a branch commit/rollback to the RM that owns the branch (or a stand-in)."""
        channel = self.registry.rm_channel(resource_id, client_id, branch_type)
        if channel is None:
            raise NoRmChannelError(f"no RM connected for resource {resource_id!r} (client {client_id})")
        try:
            return await channel.request(request, timeout=timeout)
        except ConnectionClosedError as exc:
            raise NoRmChannelError(f"RM connection for {resource_id!r} closed: {exc}") from exc

    def broadcast_undo_log_delete(self, save_days: int) -> int:
        """Sends UndoLogDeleteRequest (oneway) to one connection per AT resource."""
        sent = 0
        for resource_id, channels in self.registry.rm_channels_for_resources().items():
            try:
                channels[0].send_oneway(m.UndoLogDeleteRequest(BranchType.AT, resource_id, save_days))
                sent += 1
            except ConnectionClosedError:
                continue
        return sent
