"""The client runtime against real TCs: RpcServer on 127.0.0.1 port 0, and TC subprocesses.

Every test runs its own event loop (``asyncio.run``) or, for the synchronous client, its own loop
threads, and stops every server, client and process it starts.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncsupport import eventually
from pyseata.errors import ConfigError, ConnectionClosedError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus, ResultCode
from pyseata.protocol.frame import Frame, FrameDecoder
from pyseata.rpc.auth import Credentials
from pyseata.rpc.channel import ChannelConfig
from pyseata.rpc.client import (
    ClientTransportConfig,
    NoTcAvailableError,
    RegistrationRefusedError,
    Role,
    RpcClient,
    SyncRpcClient,
    TcAddress,
    parse_grouplist,
)
from pyseata.rpc.loop_thread import LoopThread
from pyseata.rpc.registry import ClientInfo
from pyseata.rpc.server import RpcServer, ServerConfig

SRC = Path(__file__).resolve().parents[2] / "src"
RESOURCE = "jdbc:sqlite:orders"


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an ``async def`` test in a fresh event loop, with an overall deadline."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))

    return run


# --- a scripted TC ------------------------------------------------------------------------------


class ScriptedTC:
    """A TransactionHandler answering from a table; remembers every request it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[m.Message, ClientInfo]] = []
        self.port = 0
        self._ids = itertools.count(1)
        self.release = asyncio.Event()  # GlobalCommit waits for it: a request that hangs

    async def handle(self, request: m.Message, client: ClientInfo) -> m.AbstractResultMessage:
        self.seen.append((request, client))
        answer = _ANSWERS[type(request)](self, request)
        result: m.AbstractResultMessage = await answer if isinstance(answer, Awaitable) else answer
        return result

    def client_gone(self, client: ClientInfo) -> None:
        pass

    def next_xid(self) -> str:
        return f"127.0.0.1:{self.port}:{next(self._ids)}"

    async def hang(self) -> m.AbstractResultMessage:
        await self.release.wait()
        return m.GlobalCommitResponse(global_status=GlobalStatus.Committed)

    def requests(self, kind: type[m.Message]) -> list[m.Message]:
        return [r for r, _ in self.seen if isinstance(r, kind)]


_ANSWERS: dict[type[m.Message], Callable[[ScriptedTC, Any], Any]] = {
    m.GlobalBeginRequest: lambda tc, _: m.GlobalBeginResponse(xid=tc.next_xid()),
    m.GlobalStatusRequest: lambda tc, _: m.GlobalStatusResponse(global_status=GlobalStatus.Begin),
    m.GlobalCommitRequest: lambda tc, _: tc.hang(),
    m.BranchRegisterRequest: lambda tc, _: m.BranchRegisterResponse(branch_id=next(tc._ids)),
    m.GlobalLockQueryRequest: lambda tc, _: m.GlobalLockQueryResponse(lockable=True),
}


async def start_tc(port: int = 0, **config: Any) -> tuple[RpcServer, ScriptedTC]:
    tc = ScriptedTC()
    server = RpcServer(tc, ServerConfig(port=port, drain_timeout=0.5, **config))
    await server.start()
    tc.port = server.address[1]
    return server, tc


def client_config(*ports: int, **overrides: Any) -> ClientTransportConfig:
    """Short timeouts and backoff so that failures and reconnects show up quickly."""
    settings: dict[str, Any] = {
        "application_id": "shop",
        "grouplist": {"default": ",".join(f"127.0.0.1:{p}" for p in ports)},
        "tm_request_timeout": 5.0,
        "rm_request_timeout": 5.0,
        "connect_timeout": 2.0,
        "reconnect_initial": 0.02,
        "reconnect_max": 0.1,
        "close_timeout": 1.0,
    }
    settings.update(overrides)
    return ClientTransportConfig(**settings)


def registered(server: RpcServer) -> list[ClientInfo]:
    infos = (server.registry.info(c) for c in server.registry.channels())
    return sorted((i for i in infos if i is not None), key=lambda i: i.role is Role.RM)  # TM first


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- configuration ------------------------------------------------------------------------------


def test_lookup_chain_group_to_cluster_to_addresses() -> None:
    config = ClientTransportConfig(
        application_id="shop",
        tx_service_group="orders_group",
        vgroup_mapping={"orders_group": "east", "default_tx_group": "default"},
        grouplist={"east": "10.0.0.1:8091, 10.0.0.2:8092,10.0.0.1:8091", "default": "127.0.0.1:8091"},
    )
    assert config.tc_addresses() == (TcAddress("10.0.0.1", 8091), TcAddress("10.0.0.2", 8092))
    assert parse_grouplist("[::1]:8091") == (TcAddress("::1", 8091),)
    assert str(TcAddress("::1", 8091)) == "[::1]:8091"


def test_defaults_are_seatas() -> None:
    config = ClientTransportConfig(application_id="shop")
    assert config.tx_service_group == "default_tx_group"
    assert dict(config.vgroup_mapping) == {"default_tx_group": "default"}
    assert config.tc_addresses() == (TcAddress("127.0.0.1", 8091),)
    assert (config.tm_request_timeout, config.rm_request_timeout) == (30.0, 15.0)
    assert (config.heartbeat_interval, config.idle_timeout) == (5.0, 15.0)
    assert config.version == "2.2.0"
    assert config.batch_requests is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tx_service_group": "my_group"}, "set vgroup_mapping['my_group']"),
        ({"vgroup_mapping": {"default_tx_group": "east"}}, "set grouplist['east']"),
        ({"grouplist": {"default": "127.0.0.1"}}, "'127.0.0.1' is not host:port"),
        ({"grouplist": {"default": "127.0.0.1:70000"}}, "is not host:port"),
        ({"grouplist": {"default": "127.0.0.1:\u00b2"}}, "is not host:port"),  # isdigit() but not int()
        ({"application_id": ""}, "application_id must be a non-empty string"),
        ({"tm_request_timeout": 0}, "tm_request_timeout must be > 0"),
        ({"heartbeat_interval": -1}, "heartbeat_interval must be > 0 seconds or None"),
        ({"heartbeat_interval": 5, "idle_timeout": 5}, "idle_timeout (5 s) must exceed heartbeat_interval"),
        (
            {"reconnect_initial": 1, "reconnect_max": 0.5},
            "reconnect_max (0.5 s) must be >= reconnect_initial",
        ),
        ({"reconnect_factor": 0.5}, "reconnect_factor must be >= 1"),
        ({"version": "1.2.3.4.5"}, "version '1.2.3.4.5' is not a Seata version"),
        ({"server_hostname": "tc.example"}, "set ssl_context too"),
        ({"handler_threads": 0}, "handler_threads must be an int >= 1"),
    ],
)
def test_config_errors_name_the_setting(overrides: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"application_id": "shop", **overrides}
    with pytest.raises(ConfigError) as info:
        ClientTransportConfig(**settings)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_is_immutable() -> None:
    mapping = {"default_tx_group": "default"}
    config = ClientTransportConfig(application_id="shop", vgroup_mapping=mapping)
    mapping["default_tx_group"] = "elsewhere"  # the caller's dict, not the config's
    assert config.vgroup_mapping["default_tx_group"] == "default"
    with pytest.raises(TypeError):
        config.vgroup_mapping["x"] = "y"  # type: ignore[index]


def test_resource_ids_with_commas_are_refused() -> None:
    with pytest.raises(ValueError, match="contains ','"):
        RpcClient(client_config(8091), resource_ids=["a,b"])


# --- registration -------------------------------------------------------------------------------


@async_test
async def test_registers_tm_and_rm_with_resource_ids() -> None:
    server, _ = await start_tc()
    client = RpcClient(client_config(server.address[1]), resource_ids=[RESOURCE, "tcc:pay"])
    try:
        await client.start()
        tm, rm = registered(server)
        assert (tm.role, rm.role) == (Role.TM, Role.RM)
        assert rm.resource_ids == {RESOURCE, "tcc:pay"}
        assert tm.port != rm.port  # separate connections per role, as Java
        for info in (tm, rm):
            assert (info.application_id, info.transaction_service_group, info.version) == (
                "shop", "default_tx_group", "2.2.0",
            )  # fmt: skip
        assert tm.extra_data == "vgroup=default_tx_group\nip=127.0.0.1\n"
        assert client.connected(Role.TM) == client.connected(Role.RM) == (f"127.0.0.1:{server.address[1]}",)
    finally:
        await client.close()
        await server.shutdown()


@async_test
async def test_without_resources_or_handler_only_a_tm_connection() -> None:
    server, _ = await start_tc()
    client = RpcClient(client_config(server.address[1]))
    try:
        await client.start()
        assert [i.role for i in registered(server)] == [Role.TM]
    finally:
        await client.close()
        await server.shutdown()


@async_test
async def test_register_resource_after_start_reaches_every_tc() -> None:
    servers = [server for server, _ in (await start_tc(), await start_tc())]
    client = RpcClient(client_config(*(s.address[1] for s in servers)))
    try:
        await client.start()
        await client.register_resource(RESOURCE)  # opens the RM connections on demand
        await eventually(lambda: all(len(registered(s)) == 2 for s in servers))
        channels = [s.registry.channels() for s in servers]
        await client.register_resource("tcc:pay")  # sent at once on the open RM connections
        for server, before in zip(servers, channels, strict=True):
            assert server.registry.channels() == before  # same connections, no reconnect
            rm = registered(server)[1]
            assert (rm.role, rm.resource_ids) == (Role.RM, {RESOURCE, "tcc:pay"})
        assert client.resource_ids == (RESOURCE, "tcc:pay")
    finally:
        await client.close()
        for server in servers:
            await server.shutdown()


@async_test
async def test_right_secret_registers() -> None:
    server, _ = await start_tc(credentials=Credentials(secret="s3cret", access_key="shop-key"))
    creds = Credentials(secret="s3cret", access_key="shop-key")
    client = RpcClient(client_config(server.address[1], credentials=creds), resource_ids=[RESOURCE])
    try:
        await client.start()
        tm, rm = registered(server)
        assert "ak=shop-key\n" in (tm.extra_data or "")
        assert rm.resource_ids == {RESOURCE}
    finally:
        await client.close()
        await server.shutdown()


@pytest.mark.parametrize(
    ("credentials", "hint"),
    [
        (Credentials(secret="wrong"), "check that the client's secret matches the TC's"),
        (None, "the TC may require credentials"),
    ],
)
@async_test
async def test_refused_registration_raises_a_clear_error(credentials: Credentials | None, hint: str) -> None:
    server, _ = await start_tc(credentials=Credentials(secret="s3cret"))
    client = RpcClient(client_config(server.address[1], credentials=credentials))
    try:
        with pytest.raises(RegistrationRefusedError) as info:
            await client.start()
        text = str(info.value)
        assert f"TC 127.0.0.1:{server.address[1]} refused TM registration of application 'shop'" in text
        assert hint in text
        assert registered(server) == []
        assert client.closed
    finally:
        await client.close()
        await server.shutdown()


# --- requests -----------------------------------------------------------------------------------


@async_test
async def test_requests_follow_the_xid_to_its_tc() -> None:
    (server_a, tc_a), (server_b, tc_b) = await start_tc(), await start_tc()
    client = RpcClient(client_config(server_a.address[1], server_b.address[1]))
    try:
        await client.start()
        for tc in (tc_a, tc_b, tc_b, tc_a, tc_b):
            xid = tc.next_xid()
            answer = await client.request(m.GlobalStatusRequest(xid=xid))  # xid taken from the body
            assert isinstance(answer, m.GlobalStatusResponse)
            assert tc.requests(m.GlobalStatusRequest)[-1] == m.GlobalStatusRequest(xid=xid)
        assert len(tc_a.requests(m.GlobalStatusRequest)) == 2
        assert len(tc_b.requests(m.GlobalStatusRequest)) == 3
        # An explicit xid wins over the body's; a TC we do not know falls back to any.
        await client.request(m.GlobalStatusRequest(xid="x"), xid=tc_b.next_xid())
        assert len(tc_b.requests(m.GlobalStatusRequest)) == 4
        await client.request(m.GlobalStatusRequest(xid="10.9.9.9:8091:1"))
        assert len(tc_a.seen) + len(tc_b.seen) == 7
    finally:
        await client.close()
        await server_a.shutdown()
        await server_b.shutdown()


@async_test
async def test_requests_without_xid_alternate_between_tcs() -> None:
    (server_a, tc_a), (server_b, tc_b) = await start_tc(), await start_tc()
    client = RpcClient(client_config(server_a.address[1], server_b.address[1]))
    try:
        await client.start()
        xids = [await client.request(m.GlobalBeginRequest(timeout=60000)) for _ in range(6)]
        assert all(isinstance(x, m.GlobalBeginResponse) for x in xids)
        assert len(tc_a.seen) == len(tc_b.seen) == 3
    finally:
        await client.close()
        await server_a.shutdown()
        await server_b.shutdown()


@async_test
async def test_no_tc_reachable_names_the_addresses_tried() -> None:
    port = free_port()
    client = RpcClient(client_config(port))
    try:
        await client.start()  # does not raise: the TC may come up later
        started = time.monotonic()
        with pytest.raises(NoTcAvailableError) as info:
            await client.request(m.GlobalBeginRequest(), timeout=0.3)
        assert 0.25 < time.monotonic() - started < 2
        assert f"127.0.0.1:{port} (ConnectionRefusedError" in str(info.value)
        assert info.value.addresses == (f"127.0.0.1:{port}",)
        assert isinstance(info.value, ConnectionError)
    finally:
        await client.close()


@async_test
async def test_close_fails_pending_and_later_requests() -> None:
    server, tc = await start_tc()
    client = RpcClient(client_config(server.address[1]))
    try:
        await client.start()
        pending = asyncio.create_task(client.request(m.GlobalCommitRequest(xid=tc.next_xid())))
        await eventually(lambda: bool(tc.requests(m.GlobalCommitRequest)))
        await client.close()
        with pytest.raises(ConnectionClosedError):
            await pending
        with pytest.raises(ConnectionClosedError):
            await client.request(m.GlobalBeginRequest())
    finally:
        tc.release.set()
        await client.close()
        await server.shutdown()


@pytest.mark.parametrize("batch_response", [False, True], ids=["MergeResult", "BatchResult"])
@async_test
async def test_batched_rm_requests_travel_in_one_merged_frame(batch_response: bool) -> None:
    server, tc = await start_tc(batch_response=batch_response)
    tap = FrameTap(server.address)
    await tap.start()
    client = RpcClient(client_config(tap.port, batch_requests=True), resource_ids=[RESOURCE])
    try:
        await client.start()
        requests = [m.BranchRegisterRequest(xid=tc.next_xid(), resource_id=RESOURCE) for _ in range(5)]
        answers = await asyncio.gather(*(client.request(r, role="RM") for r in requests))
        assert all(isinstance(a, m.BranchRegisterResponse) for a in answers)
        assert len({a.branch_id for a in answers if isinstance(a, m.BranchRegisterResponse)}) == 5
        assert tc.requests(m.BranchRegisterRequest) == requests
        merged = [f.body for f in tap.sent if isinstance(f.body, m.MergedWarpMessage)]
        assert len(merged) == 1 and merged[0].msgs == tuple(requests)
        kind = m.BatchResultMessage if batch_response else m.MergeResultMessage
        assert any(isinstance(f.body, kind) for f in tap.received)
        # TM requests are never batched (Java's TM default).
        await client.request(m.GlobalBeginRequest())
        assert isinstance(tap.sent[-1].body, m.GlobalBeginRequest)
    finally:
        await client.close()
        await tap.close()
        await server.shutdown()


@async_test
async def test_heartbeats_keep_an_idle_connection_open() -> None:
    quiet = ChannelConfig(request_timeout=5.0, heartbeat_interval=None, idle_timeout=0.3)
    server, _ = await start_tc(channel=quiet)
    client = RpcClient(client_config(server.address[1], heartbeat_interval=0.05, idle_timeout=0.3))
    try:
        await client.start()
        channels = server.registry.channels()
        await asyncio.sleep(1.0)  # more than three idle timeouts with nothing but pings
        assert server.registry.channels() == channels
        assert client.connected() == (f"127.0.0.1:{server.address[1]}",)
    finally:
        await client.close()
        await server.shutdown()


@async_test
async def test_tls_with_server_hostname(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path, "tc.pyseata.test")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server, _ = await start_tc(ssl_context=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    config = client_config(server.address[1], ssl_context=client_context, server_hostname="tc.pyseata.test")
    client = RpcClient(config)
    try:
        await client.start()
        assert isinstance(await client.request(m.GlobalBeginRequest()), m.GlobalBeginResponse)
    finally:
        await client.close()
        await server.shutdown()


# --- TC -> RM requests --------------------------------------------------------------------------


def commit_request(server: RpcServer, branch_id: int = 7) -> m.BranchCommitRequest:
    return m.BranchCommitRequest(
        xid=f"127.0.0.1:{server.address[1]}:42",
        branch_id=branch_id,
        resource_id=RESOURCE,
        branch_type=BranchType.AT,
    )


def committed(request: m.Message) -> m.BranchCommitResponse:
    assert isinstance(request, m.BranchCommitRequest)
    return m.BranchCommitResponse(
        xid=request.xid, branch_id=request.branch_id, branch_status=BranchStatus.PhaseTwo_Committed
    )


@pytest.mark.parametrize("kind", ["async", "sync"])
@async_test
async def test_branch_commit_reaches_the_handler(kind: str) -> None:
    threads: list[threading.Thread] = []

    async def async_handler(request: m.Message) -> m.Message:
        threads.append(threading.current_thread())
        return committed(request)

    def sync_handler(request: m.Message) -> m.Message:
        threads.append(threading.current_thread())
        return committed(request)

    server, _ = await start_tc()
    client = RpcClient(client_config(server.address[1]), resource_ids=[RESOURCE])
    client.on_branch_request(async_handler if kind == "async" else sync_handler)
    try:
        await client.start()
        answer = await server.send_to_rm(RESOURCE, None, BranchType.AT, commit_request(server), timeout=5)
        assert answer == committed(commit_request(server))
        if kind == "async":
            assert threads == [threading.current_thread()]  # on the loop
        else:
            assert threads[0] is not threading.current_thread()  # never on the I/O loop
            assert threads[0].name.startswith("pyseata-branch")
    finally:
        await client.close()
        await server.shutdown()


def failing_handler(request: m.Message) -> m.Message:
    raise RuntimeError("disk full")


async def failing_async_handler(request: m.Message) -> m.Message:
    raise RuntimeError("disk full")


def wrong_answer_handler(request: m.Message) -> m.Message:
    return m.GlobalBeginResponse()


@pytest.mark.parametrize(
    ("handler", "text"),
    [
        (failing_handler, "RuntimeException[disk full]"),
        (failing_async_handler, "RuntimeException[disk full]"),
        (wrong_answer_handler, "not a BranchCommitResponse"),
        (None, "no branch handler for BranchCommitRequest"),
    ],
)
@async_test
async def test_handler_failure_answers_a_failed_response(
    handler: Callable[[m.Message], Any] | None, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = await start_tc()
    client = RpcClient(client_config(server.address[1]), resource_ids=[RESOURCE], branch_handler=handler)
    try:
        await client.start()
        request = commit_request(server, branch_id=9)
        answer = await server.send_to_rm(RESOURCE, None, BranchType.AT, request, timeout=5)
        assert isinstance(answer, m.BranchCommitResponse)
        assert answer.result_code is ResultCode.Failed
        assert text in (answer.msg or "")
        assert (answer.xid, answer.branch_id) == (request.xid, 9)
        assert f"xid={request.xid} branch=9" in caplog.text
    finally:
        await client.close()
        await server.shutdown()


@async_test
async def test_undo_log_delete_is_delivered_without_an_answer() -> None:
    received: asyncio.Queue[m.Message] = asyncio.Queue()

    async def handler(request: m.Message) -> None:
        await received.put(request)

    server, _ = await start_tc()
    client = RpcClient(client_config(server.address[1]), resource_ids=[RESOURCE], branch_handler=handler)
    try:
        await client.start()
        assert server.broadcast_undo_log_delete(3) == 1
        got = await asyncio.wait_for(received.get(), 5)
        assert got == m.UndoLogDeleteRequest(BranchType.AT, RESOURCE, 3)
    finally:
        await client.close()
        await server.shutdown()


# --- reconnecting -------------------------------------------------------------------------------


@async_test
async def test_reconnects_and_registers_again_after_a_tc_restart() -> None:
    server, _ = await start_tc()
    port = server.address[1]
    client = RpcClient(client_config(port), resource_ids=[RESOURCE], branch_handler=committed)
    try:
        await client.start()
        await server.shutdown(drain_timeout=0)
        await eventually(lambda: client.connected() == ())
        await client.register_resource("tcc:pay")  # while no RM connection is up: remembered
        # A request made while the TC is down waits for the reconnect and then succeeds.
        waiting = asyncio.create_task(client.request(m.GlobalBeginRequest()))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        server, _ = await start_tc(port)
        assert isinstance(await waiting, m.GlobalBeginResponse)
        await eventually(lambda: len(registered(server)) == 2)
        tm, rm = registered(server)
        assert (tm.role, rm.role) == (Role.TM, Role.RM)
        assert rm.resource_ids == {RESOURCE, "tcc:pay"}
        answer = await server.send_to_rm(RESOURCE, None, BranchType.AT, commit_request(server), timeout=5)
        assert answer == committed(commit_request(server))
    finally:
        await client.close()
        await server.shutdown()


TC_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from pyseata.protocol import messages as m
    from pyseata.rpc.server import RpcServer, ServerConfig

    class TC:
        server = None

        async def handle(self, request, client):
            if isinstance(request, m.GlobalCommitRequest):
                await asyncio.Event().wait()  # hangs until the test kills this process
            registry = self.server.registry
            infos = [registry.info(c) for c in registry.channels()]
            seen = sorted([i.role.value, i.application_id, sorted(i.resource_ids)] for i in infos)
            xid = "127.0.0.1:%d:1" % self.server.address[1]
            return m.GlobalBeginResponse(xid=xid, extra_data=json.dumps(seen))

        def client_gone(self, client):
            pass

    async def main(port):
        tc = TC()
        tc.server = RpcServer(tc, ServerConfig(port=port))
        await tc.server.start()
        print(tc.server.address[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main(int(sys.argv[1])))
    """
)


@pytest.fixture
def tc_processes() -> Iterator[Callable[[int], Awaitable[tuple[subprocess.Popen[str], int]]]]:
    """Starts TC subprocesses on a port (0: any) and kills whatever is left at the end."""
    started: list[subprocess.Popen[str]] = []

    async def start(port: int) -> tuple[subprocess.Popen[str], int]:
        proc = subprocess.Popen(
            [sys.executable, "-c", TC_PROCESS, str(port)], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )  # fmt: skip
        started.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
        return proc, int(line)

    yield start
    for proc in started:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_tc_process_killed_and_restarted(
    tc_processes: Callable[[int], Awaitable[tuple[subprocess.Popen[str], int]]],
) -> None:
    async def scenario() -> None:
        proc, port = await tc_processes(0)
        client = RpcClient(client_config(port), resource_ids=[RESOURCE], branch_handler=committed)
        try:
            await client.start()
            answer = await client.request(m.GlobalBeginRequest())
            assert isinstance(answer, m.GlobalBeginResponse)
            assert json.loads(answer.extra_data or "") == [["RM", "shop", [RESOURCE]], ["TM", "shop", []]]
            pending = asyncio.create_task(client.request(m.GlobalCommitRequest(xid=answer.xid), timeout=20))
            await asyncio.sleep(0.3)  # the commit is in flight and the TC sits on it
            proc.kill()
            killed = time.monotonic()
            with pytest.raises(ConnectionClosedError):
                await pending
            assert time.monotonic() - killed < 2  # promptly, not at the 20 s deadline
            await asyncio.to_thread(proc.wait, 5)
            await tc_processes(port)
            # The client reconnects and registers both roles again by itself.
            seen: list[Any] = []
            while seen != [["RM", "shop", [RESOURCE]], ["TM", "shop", []]]:
                answer = await client.request(m.GlobalBeginRequest())
                assert isinstance(answer, m.GlobalBeginResponse)
                seen = json.loads(answer.extra_data or "")
                await asyncio.sleep(0.02)
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


# --- synchronous programs -----------------------------------------------------------------------


def test_sync_client_from_eight_threads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    before = set(threading.enumerate())
    with LoopThread(name="test-tc") as tc_loop:
        server, tc = tc_loop.run(start_tc())
        handled_on: list[str] = []

        def handler(request: m.Message) -> m.Message:
            handled_on.append(threading.current_thread().name)
            return committed(request)

        client = SyncRpcClient(client_config(server.address[1]), resource_ids=[RESOURCE])
        client.on_branch_request(handler)
        with client:
            results: list[str] = []
            errors: list[BaseException] = []

            def worker() -> None:
                try:
                    for _ in range(25):
                        answer = client.request(m.GlobalBeginRequest())
                        assert isinstance(answer, m.GlobalBeginResponse) and answer.xid
                        results.append(answer.xid)
                    client.request(m.GlobalLockQueryRequest(xid=results[-1], resource_id=RESOURCE), role="RM")
                except BaseException as exc:
                    errors.append(exc)

            workers = [threading.Thread(target=worker) for _ in range(8)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join(20)
            assert errors == []
            assert len(set(results)) == 200
            assert len(tc.requests(m.GlobalLockQueryRequest)) == 8
            client.register_resource("tcc:pay")
            to_rm = server.send_to_rm("tcc:pay", None, BranchType.TCC, commit_request(server), 5)
            answer = tc_loop.run(to_rm)
            assert answer == committed(commit_request(server))
            assert handled_on and handled_on[0].startswith("pyseata-branch")
        assert not client.loop_thread.is_running
        tc_loop.run(server.shutdown())
    time.sleep(0.05)  # idle pool workers take a moment to see the shutdown
    assert {t for t in threading.enumerate() if t.is_alive()} <= before
    assert "Task was destroyed" not in caplog.text
    assert "never awaited" not in caplog.text


def test_sync_client_start_failure_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    with LoopThread(name="test-tc") as tc_loop:
        server, _ = tc_loop.run(start_tc(credentials=Credentials(secret="s3cret")))
        client = SyncRpcClient(client_config(server.address[1], credentials=Credentials(secret="nope")))
        with pytest.raises(RegistrationRefusedError, match="secret"):
            client.start()
        assert not client.loop_thread.is_running
        tc_loop.run(server.shutdown())
    assert set(threading.enumerate()) <= before


def test_loop_thread_refuses_to_block_its_own_loop() -> None:
    with LoopThread() as loop_thread:

        async def nested() -> None:
            loop_thread.run(asyncio.sleep(0))

        with pytest.raises(RuntimeError, match="from the loop thread"):
            loop_thread.run(nested())
    with pytest.raises(RuntimeError, match="not running"):
        loop_thread.run(asyncio.sleep(0))


# --- test tools ---------------------------------------------------------------------------------


class FrameTap:
    """A TCP proxy in front of a TC that decodes the frames going each way (to see batching)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sent: list[Frame] = []  # client -> TC
        self.received: list[Frame] = []  # TC -> client
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pump(reader, up_writer, self.sent), self._pump(up_reader, writer, self.received),
            return_exceptions=True,
        )  # fmt: skip

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, frames: list[Frame]) -> None:
        decoder = FrameDecoder()
        try:
            while data := await source.read(65536):
                frames.extend(decoder.feed(data))
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


def make_certificate(directory: Path, hostname: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / "tc.pem", directory / "tc.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={hostname}",
         "-addext", f"subjectAltName=DNS:{hostname}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
