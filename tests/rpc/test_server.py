"""RpcServer, the TC's listener: registration and the channel registry, authentication, TLS,
merged requests, bad input, many connections, TC -> RM requests and graceful shutdown.

Everything runs on real sockets on 127.0.0.1 (and 127.0.0.2/3 where a test needs other IPs).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import resource
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from asyncsupport import eventually, within
from pyseata.errors import ConnectionClosedError, TransactionError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import (
    BranchStatus,
    BranchType,
    GlobalStatus,
    MessageType,
    ResultCode,
    SerializerType,
    TransactionExceptionCode,
)
from pyseata.protocol.frame import HEADER, Frame, encode_frame
from pyseata.rpc.auth import Credentials, signed_extra_data
from pyseata.rpc.channel import Channel
from pyseata.rpc.registry import ClientInfo, Role, client_id_of
from pyseata.rpc.server import NoRmChannelError, RpcServer

from .conftest import (
    XID,
    RawConn,
    ScriptedTC,
    connect,
    quick,
    register_rm,
    register_tm,
    registered_tm,
    running_server,
    server_config,
)

RES = "jdbc:mysql://127.0.0.1:3306/order"


def server_side(server: RpcServer, client: Channel) -> Channel:
    """The server's channel for ``client``'s connection."""
    (found,) = [c for c in server.channels if c.peer == client.local]
    return found


# --- registration and the registry ---------------------------------------------------------------


async def test_tm_and_rm_maps_follow_registration_and_close() -> None:
    async with running_server() as (server, tc):
        port = server.address[1]
        tm = await registered_tm(port, app="order-svc")
        rm = await connect(port)
        answer = await register_rm(rm, f"{RES},jdbc:other")
        assert answer == m.RegisterRMResponse(identified=True, version="2.2.0")
        both = await registered_tm(port, app="go-svc")  # seata-go: one connection, TM and RM
        assert (await register_rm(both, "jdbc:go", app="go-svc")) == m.RegisterRMResponse(
            identified=True, version="2.2.0"
        )

        registry = server.registry
        assert {app: len(chs) for app, chs in registry.tm_channels().items()} == {"order-svc": 1, "go-svc": 1}
        assert set(registry.rm_channels_for_resources()) == {RES, "jdbc:other", "jdbc:go"}
        info = registry.info(server_side(server, rm))
        assert info is not None and info.role is Role.RM and info.resource_ids == {RES, "jdbc:other"}
        assert info.client_id == client_id_of("order-svc", "127.0.0.1", rm.local[1])
        tm_info = registry.info(server_side(server, tm))
        assert tm_info is not None and (tm_info.role, tm_info.version) == (Role.TM, "2.2.0")

        # Re-registration as oneway (Java does this when resources are added): still answered.
        rm.send_oneway(m.RegisterRMRequest("2.2.0", "order-svc", "default_tx_group", None, "jdbc:third"))
        await eventually(lambda: "jdbc:third" in registry.rm_channels_for_resources())

        for channel in (tm, rm, both):
            channel.close()
        await eventually(lambda: len(registry) == 0, what="every connection unregistered")
        assert registry.tm_channels() == {} and registry.rm_channels_for_resources() == {}
        assert sorted(c.application_id for c in tc.gone) == ["go-svc", "order-svc", "order-svc"]


async def test_rm_channel_selection_follows_seatas_order() -> None:
    """Exact client, then another port on its IP, then another IP of its application, then (AT
    only) any application holding the resource."""
    async with running_server() as (server, _):
        port = server.address[1]

        async def rm(app: str, local_host: str) -> Channel:
            channel = await connect(port, local_host=local_host)
            assert (await register_rm(channel, RES, app=app)) == m.RegisterRMResponse(identified=True, version="2.2.0")
            return channel

        exact = await rm("order-svc", "127.0.0.1")
        same_ip = await rm("order-svc", "127.0.0.1")
        other_ip = await rm("order-svc", "127.0.0.2")
        other_app = await rm("stock-svc", "127.0.0.3")
        registry = server.registry
        wanted = client_id_of("order-svc", "127.0.0.1", exact.local[1])

        def pick(branch_type: BranchType = BranchType.AT) -> Channel | None:
            return registry.rm_channel(RES, wanted, branch_type)

        assert pick() is server_side(server, exact)
        assert pick(BranchType.TCC) is server_side(server, exact)
        for gone, next_choice in ((exact, same_ip), (same_ip, other_ip), (other_ip, other_app)):
            expected = server_side(server, next_choice)
            gone.close()
            await eventually(lambda g=gone: all(c.peer != g.local for c in server.channels))
            assert pick() is expected
            # Only AT may go to another application.
            assert pick(BranchType.TCC) is (None if next_choice is other_app else expected)
        assert registry.rm_channel("jdbc:unknown", wanted, BranchType.AT) is None
        other_app.close()
        await eventually(lambda: pick() is None)


@pytest.mark.parametrize("version", ["", "   ", "1.2.3.4.5"])
async def test_unusable_versions_are_refused(version: str, caplog: pytest.LogCaptureFixture) -> None:
    async with running_server() as (server, _):
        channel = await connect(server.address[1])
        with caplog.at_level(logging.WARNING, logger="pyseata.rpc.server"):
            answer = await register_tm(channel, version=version)
        assert answer == m.RegisterTMResponse(identified=False, version="2.2.0")
        assert "unusable client version" in caplog.text
        assert len(server.registry) == 0
        # Still unregistered: a transaction request now closes the connection.
        with pytest.raises(ConnectionClosedError):
            await channel.request(m.GlobalBeginRequest())


async def test_a_transaction_message_before_registration_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_server() as (server, tc):
        raw = await RawConn.open(server.address[1])
        # Heartbeats are answered before registration...
        await raw.send_frame(Frame.ping(3))
        assert (await raw.read_frame()).message_type is MessageType.HEARTBEAT_RESPONSE
        # ...business requests are not: Seata closes the connection.
        with caplog.at_level(logging.WARNING, logger="pyseata.rpc.server"):
            await raw.send_frame(Frame(MessageType.REQUEST_SYNC, 4, m.GlobalBeginRequest()))
            assert await raw.closed_by_peer()
        assert "GlobalBeginRequest before registration" in caplog.text
        assert tc.seen == []


# --- authentication -------------------------------------------------------------------------------

CREDS = Credentials(secret="s3cret", access_key="ak1")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (lambda: signed_extra_data(CREDS, "default_tx_group", "10.0.0.5"), None),
        (lambda: signed_extra_data(Credentials("wrong", "ak1"), "default_tx_group", "10.0.0.5"), "bad signature"),
        (lambda: signed_extra_data(CREDS, "other_group", "10.0.0.5"), "bad signature"),
        (lambda: signed_extra_data(Credentials("s3cret", "ak2"), "default_tx_group", "10.0.0.5"), "unknown access key"),
        (
            lambda: signed_extra_data(CREDS, "default_tx_group", "10.0.0.5", now_ms=_now_ms() - 10 * 60 * 1000),
            "outside the allowed window",
        ),
        (lambda: "ak=ak1\nvgroup=default_tx_group\n", "carries no signature"),
        (lambda: None, "carries no signature"),
    ],
    ids=["right", "wrong-secret", "wrong-group", "wrong-access-key", "clock-skew", "unsigned", "no-extra-data"],
)
async def test_registration_with_credentials(
    extra: object, reason: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_server(credentials=CREDS) as (server, _):
        extra_data = extra()  # type: ignore[operator]
        for register in (_tm_with, _rm_with):
            channel = await connect(server.address[1])
            with caplog.at_level(logging.WARNING, logger="pyseata.rpc.server"):
                answer = await register(channel, extra_data)
            assert isinstance(answer, m.AbstractIdentifyResponse)
            assert answer.identified is (reason is None), caplog.text
            if reason is not None:
                assert reason in caplog.text
            channel.close()
        assert "None" not in (extra_data or "")  # "ak=null" as Java writes it, never "ak=None"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


async def _tm_with(channel: Channel, extra_data: str | None) -> m.Message:
    return await channel.request(m.RegisterTMRequest("2.2.0", "order-svc", "default_tx_group", extra_data))


async def _rm_with(channel: Channel, extra_data: str | None) -> m.Message:
    return await channel.request(m.RegisterRMRequest("2.2.0", "order-svc", "default_tx_group", extra_data, RES))


def test_signed_extra_data_without_access_key_says_null_like_java() -> None:
    assert signed_extra_data(Credentials("x"), "g", "1.2.3.4", now_ms=1).startswith("ak=null\n")


# --- TLS ----------------------------------------------------------------------------------------


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for "localhost" and 127.0.0.1: with the ``cryptography`` package when it is
    installed, else with the ``openssl`` command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if importlib.util.find_spec("cryptography") is not None:
        _cert_with_cryptography(cert, key)
    elif shutil.which("openssl"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
    else:
        pytest.skip("neither the cryptography package nor the openssl command is available to make a certificate")
    return cert, key


def _cert_with_cryptography(cert_path: Path, key_path: Path) -> None:  # pragma: no cover - optional
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.mark.loop_errors_expected  # the plaintext client makes the TLS handshake fail on purpose
async def test_tls_listener_and_client_channel(tmp_path: Path, loop_kind: str) -> None:
    cert, key = self_signed_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    async with running_server(ssl_context=server_ctx) as (server, tc):
        port = server.address[1]
        channel = await connect(port, ssl=client_ctx, server_hostname="localhost")
        assert (await register_tm(channel)) == m.RegisterTMResponse(identified=True, version="2.2.0")
        assert await channel.request(m.GlobalBeginRequest()) == m.GlobalBeginResponse(xid=XID)
        assert tc.seen[0][1].client_id == client_id_of("order-svc", "127.0.0.1", channel.local[1])
        channel.close()
        # Plain bytes on the TLS port get nowhere.
        raw = await RawConn.open(port)
        await raw.send_frame(Frame(MessageType.REQUEST_SYNC, 1, m.RegisterTMRequest("2.2.0", "x", "g")))
        assert await raw.closed_by_peer()
        await raw.close()


# --- merged requests -------------------------------------------------------------------------------

MERGED = m.MergedWarpMessage(
    (m.GlobalBeginRequest(transaction_name="a"), m.GlobalStatusRequest(xid=XID), m.BranchRegisterRequest(xid=XID)),
    (5, 6, 7),
)
RESULTS = (
    m.GlobalBeginResponse(xid=XID),
    m.GlobalStatusResponse(global_status=GlobalStatus.Begin),
    m.BranchRegisterResponse(branch_id=123456790),
)


async def _merged_answer(version: str, **config: object) -> Frame:
    async with running_server(**config) as (server, _):  # type: ignore[arg-type]
        raw = await RawConn.open(server.address[1])
        registration = await raw.request(1, m.RegisterTMRequest(version, "order-svc", "default_tx_group"))
        assert registration.body == m.RegisterTMResponse(identified=True, version="2.2.0")
        await raw.send_frame(Frame(MessageType.REQUEST_ONEWAY, 9, MERGED, head_map={"k": "v", "trace": None}))
        answer = await raw.read_frame()
        await raw.close()
        return answer


async def test_merged_requests_get_one_merge_result_in_order() -> None:
    answer = await _merged_answer("2.2.0")
    assert (answer.message_type, answer.request_id) == (MessageType.RESPONSE, 9)
    assert answer.body == m.MergeResultMessage(RESULTS)
    assert dict(answer.head_map) == {}  # Seata copies the head map only into batch answers


async def test_batch_response_for_clients_from_1_5_copies_the_head_map() -> None:
    answer = await _merged_answer("2.2.0", batch_response=True)
    assert (answer.message_type, answer.request_id) == (MessageType.RESPONSE, 9)
    assert answer.body == m.BatchResultMessage(RESULTS, (5, 6, 7))
    assert dict(answer.head_map) == {"k": "v", "trace": None}


async def test_batch_response_is_not_used_for_clients_before_1_5() -> None:
    answer = await _merged_answer("1.4.2", batch_response=True)
    assert answer.body == m.MergeResultMessage(RESULTS)


@pytest.mark.parametrize("batch_response", [False, True])
async def test_batched_channel_requests_complete_either_way(batch_response: bool) -> None:
    async with running_server(batch_response=batch_response) as (server, tc):
        channel = await registered_tm(server.address[1])
        futures = [channel.request_batched(m.GlobalStatusRequest(xid=f"x{i}")) for i in range(5)]
        answers = await asyncio.gather(*futures)
        assert answers == [m.GlobalStatusResponse(global_status=GlobalStatus.Begin)] * 5
        assert [r.xid for r, _ in tc.seen if isinstance(r, m.GlobalStatusRequest)] == [f"x{i}" for i in range(5)]
        channel.close()


async def test_merged_message_with_a_non_transaction_request_is_refused_whole(caplog: pytest.LogCaptureFixture) -> None:
    async with running_server() as (server, tc):
        raw = await RawConn.open(server.address[1])
        await raw.request(1, m.RegisterTMRequest("2.2.0", "order-svc", "default_tx_group"))
        bad = m.MergedWarpMessage((m.GlobalBeginRequest(), m.BranchCommitRequest(xid=XID)), (2, 3))
        with caplog.at_level(logging.WARNING, logger="pyseata.rpc.server"):
            await raw.send_frame(Frame(MessageType.REQUEST_ONEWAY, 4, bad))
            assert await raw.closed_by_peer()
        assert "BranchCommitRequest" in caplog.text
        assert tc.seen == []  # nothing of the batch ran


# --- what the TC answers --------------------------------------------------------------------------


async def test_failures_become_failed_responses(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(ScriptedTC):
        async def handle(self, request: m.Message, client: ClientInfo) -> m.AbstractResultMessage:
            if isinstance(request, m.GlobalCommitRequest):
                raise TransactionError("no such transaction", TransactionExceptionCode.GlobalTransactionNotExist)
            raise RuntimeError("store is down")

    async with running_server(Failing()) as (server, _):
        channel = await registered_tm(server.address[1])
        commit = await channel.request(m.GlobalCommitRequest(xid=XID))
        assert commit == m.GlobalCommitResponse(
            result_code=ResultCode.Failed,
            msg="TransactionException[no such transaction]",
            transaction_exception_code=TransactionExceptionCode.GlobalTransactionNotExist,
        )
        with caplog.at_level(logging.ERROR, logger="pyseata.rpc.server"):
            begin = await channel.request(m.GlobalBeginRequest())
        assert begin == m.GlobalBeginResponse(result_code=ResultCode.Failed, msg="RuntimeException[store is down]")
        assert "store is down" in caplog.text
        channel.close()


async def test_requests_a_tc_does_not_serve_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    async with running_server() as (server, tc):
        channel = await registered_tm(server.address[1])
        with caplog.at_level(logging.WARNING, logger="pyseata.rpc.server"):
            channel.send_oneway(m.BranchCommitRequest(xid=XID, branch_id=1))  # that one goes TC -> RM
            await eventually(lambda: "not a request a TC serves" in caplog.text)
        assert tc.seen == []
        assert await channel.request(m.GlobalBeginRequest()) == m.GlobalBeginResponse(xid=XID)
        channel.close()


# --- TC -> RM ------------------------------------------------------------------------------------


async def test_send_to_rm_and_undo_log_broadcast() -> None:
    received: list[Frame] = []

    async def rm_handler(channel: Channel, frame: Frame) -> None:
        received.append(frame)
        if isinstance(frame.body, m.BranchCommitRequest):
            channel.respond(
                frame,
                m.BranchCommitResponse(
                    xid=frame.body.xid, branch_id=frame.body.branch_id, branch_status=BranchStatus.PhaseTwo_Committed
                ),
            )

    async with running_server() as (server, _):
        with pytest.raises(NoRmChannelError, match="no RM connected"):
            await server.send_to_rm(RES, None, BranchType.AT, m.BranchCommitRequest(xid=XID, branch_id=1))
        rm = await connect(server.address[1], rm_handler)
        await register_rm(rm, RES)
        client_id = client_id_of("order-svc", "127.0.0.1", rm.local[1])
        answer = await server.send_to_rm(RES, client_id, BranchType.AT, m.BranchCommitRequest(xid=XID, branch_id=42))
        assert answer == m.BranchCommitResponse(xid=XID, branch_id=42, branch_status=BranchStatus.PhaseTwo_Committed)
        assert server.broadcast_undo_log_delete(7) == 1
        await eventually(lambda: any(isinstance(f.body, m.UndoLogDeleteRequest) for f in received))
        undo = received[-1]
        assert undo.message_type is MessageType.REQUEST_ONEWAY
        assert undo.body == m.UndoLogDeleteRequest(BranchType.AT, RES, 7)
        rm.close()


async def test_send_to_rm_fails_when_the_rm_goes_away_meanwhile() -> None:
    async def vanish(channel: Channel, frame: Frame) -> None:
        channel.abort("RM crashed")

    async with running_server() as (server, _):
        rm = await connect(server.address[1], vanish)
        await register_rm(rm, RES)
        with pytest.raises(NoRmChannelError, match="closed"):
            await server.send_to_rm(RES, None, BranchType.AT, m.BranchRollbackRequest(xid=XID, branch_id=1))


# --- bad input ----------------------------------------------------------------------------------


def _frame_cut_in_half() -> bytes:
    frame = encode_frame(Frame(MessageType.REQUEST_SYNC, 1, m.RegisterTMRequest("2.2.0", "x", "g")))
    return frame[: len(frame) // 2]


BAD_INPUT = {
    "garbage": (b"GET / HTTP/1.1\r\nHost: tc\r\n\r\n", "does not speak Seata protocol v1"),
    "2-GiB-frame": (HEADER.pack(b"\xda\xda", 1, 0x7FFFFFFF, 16, 0, 1, 0, 1), "the maximum is 8388608"),
    "half-frame-then-silence": (_frame_cut_in_half(), "nothing read from"),
    "unknown-codec": (
        encode_frame(Frame(MessageType.REQUEST_SYNC, 1, m.GlobalBeginRequest()))[:10]
        + bytes([SerializerType.HESSIAN])
        + encode_frame(Frame(MessageType.REQUEST_SYNC, 1, m.GlobalBeginRequest()))[11:],
        "codec 22 (HESSIAN) is not supported",
    ),
    "business-before-registration": (
        encode_frame(Frame(MessageType.REQUEST_SYNC, 1, m.GlobalCommitRequest(xid=XID))),
        "GlobalCommitRequest before registration",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
async def test_bad_input_closes_only_that_connection(case: str, caplog: pytest.LogCaptureFixture) -> None:
    data, log_text = BAD_INPUT[case]
    # The idle timeout is short so that the half frame is dropped soon; the good client pings.
    async with running_server(channel=quick(idle_timeout=0.5)) as (server, tc):
        port = server.address[1]
        good = await registered_tm(port, config=quick(heartbeat_interval=0.05))
        raw = await RawConn.open(port)
        with caplog.at_level(logging.WARNING):
            await raw.send(data)
            assert await raw.closed_by_peer(), f"{case}: the connection stayed open"
            await eventually(lambda: log_text in caplog.text, what=f"log line {log_text!r}")
        await raw.close()
        # The server goes on serving the registered client.
        assert await good.request(m.GlobalBeginRequest()) == m.GlobalBeginResponse(xid=XID)
        assert [c.peer for c in server.channels] == [good.local]
        assert all(not isinstance(r, m.GlobalCommitRequest) for r, _ in tc.seen)
        good.close()


# --- many connections --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_thousand_registered_connections(loop_kind: str) -> None:
    connections = 1000
    needed = 2 * connections + 200  # both ends live in this process
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        async with running_server(backlog=2048) as (server, tc):
            port = server.address[1]
            channels: list[Channel] = []
            for start in range(0, connections, 100):  # in waves, gentle on the accept queue
                channels += await asyncio.gather(*(connect(port) for _ in range(start, start + 100)))
            answers = await within(
                asyncio.gather(*(register_tm(c, app=f"app-{i % 10}") for i, c in enumerate(channels))),
                120, "registrations",
            )  # fmt: skip
            assert all(a == m.RegisterTMResponse(identified=True, version="2.2.0") for a in answers)
            assert len(server.registry) == connections
            begins = await within(asyncio.gather(*(c.request(m.GlobalBeginRequest()) for c in channels)), 120, "begins")
            assert begins == [m.GlobalBeginResponse(xid=XID)] * connections
            assert len({client.client_id for _, client in tc.seen}) == connections
            for channel in channels:
                channel.close()
            await eventually(lambda: len(server.registry) == 0, timeout=60)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- graceful shutdown ------------------------------------------------------------------------------


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_shutdown_stops_accepting_and_lets_handlers_finish() -> None:
    tc = ScriptedTC()
    tc.gate = asyncio.Event()
    server = RpcServer(tc, server_config(drain_timeout=30))
    tc.server = server
    await server.start()
    port = server.address[1]
    tm = await registered_tm(port)
    tc.gate.set()
    tc.gate = asyncio.Event()  # from now on requests wait
    in_flight = asyncio.ensure_future(tm.request(m.GlobalCommitRequest(xid=XID), timeout=60))
    await eventually(lambda: any(isinstance(r, m.GlobalCommitRequest) for r, _ in tc.seen))
    shutdown = asyncio.create_task(server.shutdown())
    await eventually(lambda: server.channels and not shutdown.done())
    assert await _refused(port), "the listener still accepts while draining"
    assert not in_flight.done()
    tc.gate.set()
    assert await in_flight == m.GlobalCommitResponse(global_status=GlobalStatus.Committed)
    await within(shutdown, 30, "shutdown after the handlers finished")
    await within(tm.wait_closed(), 20, "the client sees the connection close")
    assert server.channels == set()


async def test_shutdown_cancels_a_handler_slower_than_the_drain_timeout(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = asyncio.Event()

    class Slow(ScriptedTC):
        async def handle(self, request: m.Message, client: ClientInfo) -> m.AbstractResultMessage:
            if isinstance(request, m.GlobalCommitRequest):
                self.seen.append((request, client))
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
            return await super().handle(request, client)

    tc = Slow()
    server = RpcServer(tc, server_config())
    await server.start()
    tm = await registered_tm(server.address[1])
    pending = asyncio.ensure_future(tm.request(m.GlobalCommitRequest(xid=XID), timeout=60))
    await eventually(lambda: any(isinstance(r, m.GlobalCommitRequest) for r, _ in tc.seen))
    with caplog.at_level(logging.WARNING, logger="pyseata.rpc.server"):
        await within(server.shutdown(drain_timeout=0.3), 30, "shutdown with a slow handler")
    assert cancelled.is_set()
    assert "cancelling them" in caplog.text
    with pytest.raises(ConnectionClosedError):
        await pending


async def test_registration_is_refused_while_shutting_down() -> None:
    tc = ScriptedTC()
    server = RpcServer(tc, server_config())
    await server.start()
    tm = await registered_tm(server.address[1])
    late = await connect(server.address[1])
    tc.gate = asyncio.Event()
    held = asyncio.ensure_future(tm.request(m.GlobalBeginRequest(), timeout=60))
    await eventually(lambda: tc.seen)
    shutdown = asyncio.create_task(server.shutdown(drain_timeout=30))
    while not await _refused(server.address[1]):  # the listener closes first thing
        await asyncio.sleep(0.01)
    assert await register_tm(late) == m.RegisterTMResponse(identified=False, version="2.2.0")
    tc.gate.set()
    await held
    await within(shutdown, 30, "shutdown")


def test_bound_address_is_reported() -> None:
    async def main() -> None:
        server = RpcServer(ScriptedTC(), server_config())
        await server.start()
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        with socket.create_connection((host, port), timeout=10):
            pass
        await server.shutdown()

    asyncio.run(main())
