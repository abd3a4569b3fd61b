"""Shared pieces of the RPC tests: how ``async def`` tests run, a scripted coordinator, servers,
clients and raw connections on 127.0.0.1 port 0, and a TC in a subprocess.

``async def`` tests run on a fresh event loop each. A test that takes the ``loop_kind`` fixture
runs twice, on asyncio's loop and on uvloop's (skipped when uvloop is not installed). Any error
the loop reports that nobody handled ("Future exception was never retrieved", an exception in a
protocol callback...) fails the test, unless it is marked ``loop_errors_expected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from pyseata.errors import TransactionError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus, MessageType, TransactionExceptionCode
from pyseata.protocol.frame import Frame, FrameDecoder, encode_frame
from pyseata.rpc.channel import Channel, ChannelConfig, RequestHandler
from pyseata.rpc.registry import ClientInfo
from pyseata.rpc.server import RpcServer, ServerConfig

SRC = Path(__file__).resolve().parents[2] / "src"
XID = "127.0.0.1:8091:2612341069705662465"

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the dev environment
    uvloop = None  # type: ignore[assignment]


# --- configurations with short intervals -----------------------------------------------------------


def quick(**overrides: Any) -> ChannelConfig:
    """A channel config with the timers off unless asked for, and a short request timeout."""
    values: dict[str, Any] = {"request_timeout": 10.0, "heartbeat_interval": None, "idle_timeout": None}
    values.update(overrides)
    return ChannelConfig(**values)


def server_config(**overrides: Any) -> ServerConfig:
    overrides.setdefault("channel", quick(idle_timeout=30.0))
    overrides.setdefault("drain_timeout", 5.0)
    return ServerConfig(host="127.0.0.1", port=0, **overrides)


# --- a scripted coordinator ---------------------------------------------------------------------


class ScriptedTC:
    """A TransactionHandler answering from a table, as a TC would for one transaction at a time.

    Begin gives :data:`XID`, branch register the next branch id, lock query "lockable", report
    success; commit answers Committed; rollback sends BranchRollback to the RM of every branch
    (through ``server.send_to_rm``) and answers Rollbacked. ``gate``, when set, makes every
    request wait for it first. Every request seen is kept in ``seen``.
    """

    def __init__(self, xid: str = XID) -> None:
        self.xid = xid
        self.seen: list[tuple[m.Message, ClientInfo]] = []
        self.gone: list[ClientInfo] = []
        self.server: RpcServer | None = None
        self.gate: asyncio.Event | None = None
        self.branches: list[tuple[int, str, str, str | None]] = []  # id, resource, client id, data
        self.rm_answers: list[m.Message] = []
        self._branch_ids = itertools.count(123456790)

    async def handle(self, request: m.Message, client: ClientInfo) -> m.AbstractResultMessage:
        self.seen.append((request, client))
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(request, m.GlobalBeginRequest):
            return m.GlobalBeginResponse(xid=self.xid)
        if isinstance(request, m.GlobalLockQueryRequest):
            return m.GlobalLockQueryResponse(lockable=True)
        if isinstance(request, m.BranchRegisterRequest):
            branch_id = next(self._branch_ids)
            self.branches.append((branch_id, request.resource_id or "", client.client_id, request.application_data))
            return m.BranchRegisterResponse(branch_id=branch_id)
        if isinstance(request, m.BranchReportRequest):
            return m.BranchReportResponse()
        if isinstance(request, m.GlobalStatusRequest):
            return m.GlobalStatusResponse(global_status=GlobalStatus.Begin)
        if isinstance(request, m.GlobalCommitRequest):
            return m.GlobalCommitResponse(global_status=GlobalStatus.Committed)
        if isinstance(request, m.GlobalRollbackRequest):
            return await self._rollback(request)
        raise TransactionError("not scripted", TransactionExceptionCode.FailedToSendBranchRollbackRequest)

    async def _rollback(self, request: m.GlobalRollbackRequest) -> m.GlobalRollbackResponse:
        assert self.server is not None
        for branch_id, resource_id, client_id, data in reversed(self.branches):
            rollback = m.BranchRollbackRequest(
                xid=request.xid, branch_id=branch_id, resource_id=resource_id, application_data=data
            )
            answer = await self.server.send_to_rm(resource_id, client_id, BranchType.AT, rollback)
            self.rm_answers.append(answer)
            assert isinstance(answer, m.BranchRollbackResponse)
            assert answer.branch_status is BranchStatus.PhaseTwo_Rollbacked
        return m.GlobalRollbackResponse(global_status=GlobalStatus.Rollbacked)

    def client_gone(self, client: ClientInfo) -> None:
        self.gone.append(client)


@contextlib.asynccontextmanager
async def running_server(
    handler: ScriptedTC | None = None, **config: Any
) -> AsyncIterator[tuple[RpcServer, ScriptedTC]]:
    """An RpcServer on 127.0.0.1 port 0, shut down afterwards."""
    tc = handler or ScriptedTC()
    server = RpcServer(tc, server_config(**config))
    tc.server = server
    await server.start()
    try:
        yield server, tc
    finally:
        if tc.gate is not None:
            tc.gate.set()
        await server.shutdown(drain_timeout=2.0)


# --- clients ------------------------------------------------------------------------------------


async def _refuse(channel: Channel, frame: Frame) -> None:
    raise AssertionError(f"unexpected request from the peer: {frame!r}")


async def connect(
    port: int,
    handler: RequestHandler | None = None,
    config: ChannelConfig | None = None,
    *,
    host: str = "127.0.0.1",
    local_host: str | None = None,
    **kwargs: Any,
) -> Channel:
    """A client Channel connected to ``host:port`` (``kwargs`` go to create_connection)."""
    loop = asyncio.get_running_loop()
    channel = Channel(handler or _refuse, config or quick(), name="test-client")
    local = (local_host, 0) if local_host else None
    await loop.create_connection(lambda: channel, host, port, local_addr=local, **kwargs)
    return channel


async def register_tm(channel: Channel, app: str = "order-svc", version: str = "2.2.0", **kw: Any) -> m.Message:
    return await channel.request(m.RegisterTMRequest(version, app, "default_tx_group", **kw))


async def register_rm(channel: Channel, resources: str, app: str = "order-svc", version: str = "2.2.0") -> m.Message:
    return await channel.request(m.RegisterRMRequest(version, app, "default_tx_group", None, resources))


async def registered_tm(port: int, app: str = "order-svc", **kwargs: Any) -> Channel:
    channel = await connect(port, **kwargs)
    answer = await register_tm(channel, app)
    assert isinstance(answer, m.RegisterTMResponse) and answer.identified, answer
    return channel


@contextlib.asynccontextmanager
async def channel_server(
    handler: RequestHandler | None = None, config: ChannelConfig | None = None
) -> AsyncIterator[tuple[int, list[Channel]]]:
    """A bare listener on 127.0.0.1 port 0 whose connections are Channels (no TC logic); yields
    the port and the list of accepted channels. Everything is closed afterwards."""
    loop = asyncio.get_running_loop()
    accepted: list[Channel] = []

    def make() -> Channel:
        channel = Channel(handler or _refuse, config or quick(), name="test-server")
        accepted.append(channel)
        return channel

    server = await loop.create_server(make, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), accepted
    finally:
        server.close()
        for channel in accepted:
            channel.cancel_tasks()
            channel.abort("test over")
        await server.wait_closed()


class RawConn:
    """A plain socket to a server: send any bytes, read whole frames, see the close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> RawConn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(self, frame: Frame) -> None:
        await self.send(encode_frame(frame))

    async def request(self, request_id: int, body: m.Message) -> Frame:
        await self.send_frame(Frame(MessageType.REQUEST_SYNC, request_id, body))
        return await self.read_frame()

    async def read_frame(self, timeout: float = 20.0) -> Frame:
        async with asyncio.timeout(timeout):
            while not self.frames:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)

    async def closed_by_peer(self, timeout: float = 20.0) -> bool:
        """True when the server closes the connection within ``timeout`` (data read meanwhile is
        dropped)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


# --- a TC in another process ----------------------------------------------------------------------

_TC_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from pyseata.protocol import messages as m
    from pyseata.protocol.enums import GlobalStatus
    from pyseata.rpc.channel import ChannelConfig
    from pyseata.rpc.server import RpcServer, ServerConfig

    class TC:
        async def handle(self, request, client):
            if isinstance(request, m.GlobalBeginRequest):
                return m.GlobalBeginResponse(xid="127.0.0.1:8091:1")
            await asyncio.Event().wait()  # every other request hangs: it stays pending

        def client_gone(self, client):
            pass

    async def main():
        config = ChannelConfig(request_timeout=60, heartbeat_interval=None, idle_timeout=None)
        server = RpcServer(TC(), ServerConfig(host="127.0.0.1", port=0, channel=config))
        await server.start()
        print(server.address[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@contextlib.contextmanager
def tc_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A TC in a subprocess (sys.executable -c ...), killed and reaped afterwards."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-c", _TC_PROCESS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            process.kill()
            _, err = process.communicate(timeout=30)
            raise AssertionError(f"the TC process did not start: {line!r} {err}")
        yield process, int(line)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
