"""Channel: one connection speaking Seata protocol v1, tested over real sockets on 127.0.0.1.

The central property (ARCHITECTURE.md, "rpc/"): the read loop never waits for a handler, so a
handler that sends a request back over its own connection and waits for the answer always gets
it, even with the handler pool full and the backlog over its limit. The other side of that coin
is back-pressure: when this side waits for nothing, a flood pauses reading instead of filling
memory, and a peer that overruns a hard limit is disconnected.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

import pytest

from asyncsupport import eventually, within
from pyseata.errors import ConnectionClosedError, RpcTimeoutError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, CompressorType, GlobalStatus, MessageType
from pyseata.protocol.frame import Frame, FrameDecoder, encode_frame
from pyseata.rpc.channel import Channel, ChannelConfig

from .conftest import XID, RawConn, channel_server, connect, quick

# --- handlers used below -----------------------------------------------------------------------


async def echo_name(channel: Channel, frame: Frame) -> None:
    """Answers a begin with its own transaction name as the XID: shows which answer is whose."""
    assert isinstance(frame.body, m.GlobalBeginRequest)
    channel.respond(frame, m.GlobalBeginResponse(xid=frame.body.transaction_name))


async def never_answer(channel: Channel, frame: Frame) -> None:
    await asyncio.Event().wait()


def commit_answer(frame: Frame) -> m.BranchCommitResponse:
    assert isinstance(frame.body, m.BranchCommitRequest)
    return m.BranchCommitResponse(
        xid=frame.body.xid, branch_id=frame.body.branch_id, branch_status=BranchStatus.PhaseTwo_Committed
    )


async def answer_commits(channel: Channel, frame: Frame) -> None:
    channel.respond(frame, commit_answer(frame))


# --- request / response / oneway ---------------------------------------------------------------


async def test_requests_get_their_own_answers(loop_kind: str) -> None:
    async with channel_server(echo_name) as (port, _):
        client = await connect(port)
        names = [f"tx-{i}" for i in range(200)]
        answers = await asyncio.gather(*(client.request(m.GlobalBeginRequest(transaction_name=n)) for n in names))
        assert [a.xid for a in answers if isinstance(a, m.GlobalBeginResponse)] == names
        assert client.pending_count == 0
        client.close()


async def test_answer_copies_id_codec_and_compressor_of_the_request() -> None:
    async with channel_server(echo_name) as (port, _):
        raw = await RawConn.open(port)
        request = Frame(MessageType.REQUEST_SYNC, 4242, m.GlobalBeginRequest(transaction_name="gz"),
                        compressor=CompressorType.GZIP)  # fmt: skip
        await raw.send_frame(request)
        answer = await raw.read_frame()
        assert (answer.message_type, answer.request_id) == (MessageType.RESPONSE, 4242)
        assert (answer.codec, answer.compressor) == (request.codec, CompressorType.GZIP)
        assert answer.body == m.GlobalBeginResponse(xid="gz")
        await raw.close()


async def test_requests_this_side_starts_use_its_compressor() -> None:
    async with channel_server(echo_name) as (port, _):
        client = await connect(port, config=quick(compressor=CompressorType.GZIP))
        answer = await client.request(m.GlobalBeginRequest(transaction_name="zipped"))
        assert answer == m.GlobalBeginResponse(xid="zipped")
        client.close()


async def test_oneway_reaches_the_handler_and_nothing_comes_back(loop_kind: str) -> None:
    received: asyncio.Queue[Frame] = asyncio.Queue()

    async def keep(channel: Channel, frame: Frame) -> None:
        received.put_nowait(frame)

    async with channel_server(keep) as (port, _):
        client = await connect(port)
        frame_id = client.send_oneway(m.UndoLogDeleteRequest(BranchType.AT, "jdbc:db", 3))
        frame = await asyncio.wait_for(received.get(), 20)
        assert (frame.message_type, frame.request_id) == (MessageType.REQUEST_ONEWAY, frame_id)
        assert frame.body == m.UndoLogDeleteRequest(BranchType.AT, "jdbc:db", 3)
        client.close()

        # Seen from a raw socket: after a oneway frame the next thing that arrives is the pong
        # to a later ping, so no answer was sent.
        raw = await RawConn.open(port)
        await raw.send_frame(Frame(MessageType.REQUEST_ONEWAY, 9, m.UndoLogDeleteRequest(BranchType.AT, "r", 1)))
        await asyncio.wait_for(received.get(), 20)
        await raw.send_frame(Frame.ping(10))
        pong = await raw.read_frame()
        assert (pong.message_type, pong.request_id) == (MessageType.HEARTBEAT_RESPONSE, 10)
        await raw.close()


async def test_each_handler_runs_in_its_own_context() -> None:
    # Handlers start at once (eager first step) and may finish without a task: they must still
    # not see each other's context variables, as tasks would not.
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []

    async def handler(channel: Channel, frame: Frame) -> None:
        seen.append(var.get())
        assert isinstance(frame.body, m.GlobalBeginRequest)
        var.set(frame.body.transaction_name or "")
        if frame.body.transaction_name == "slow":
            await asyncio.sleep(0.01)  # this one moves to a task half-way
        channel.respond(frame, m.GlobalBeginResponse(xid=var.get()))

    async with channel_server(handler) as (port, _):
        client = await connect(port)
        names = ["a", "slow", "b", "c"]
        answers = await asyncio.gather(*(client.request(m.GlobalBeginRequest(transaction_name=n)) for n in names))
        assert [a.xid for a in answers if isinstance(a, m.GlobalBeginResponse)] == names
        assert seen == ["unset"] * 4
        client.close()


async def test_a_handler_ending_cancelled_in_its_first_step_does_not_hurt_the_connection() -> None:
    async def handler(channel: Channel, frame: Frame) -> None:
        assert isinstance(frame.body, m.GlobalBeginRequest)
        if frame.body.transaction_name == "cancelled":
            gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            gone.cancel()
            await gone  # raises CancelledError at once, before any task exists
        await echo_name(channel, frame)

    async with channel_server(handler) as (port, accepted):
        client = await connect(port)
        with pytest.raises(RpcTimeoutError):
            await client.request(m.GlobalBeginRequest(transaction_name="cancelled"), timeout=0.3)
        assert await client.request(m.GlobalBeginRequest(transaction_name="ok")) == m.GlobalBeginResponse(xid="ok")
        assert not accepted[0].is_closed
        client.close()


# --- timeouts and closing ----------------------------------------------------------------------


async def test_request_timeout_raises_rpc_timeout_error(loop_kind: str) -> None:
    answer_now = asyncio.Event()

    async def late(channel: Channel, frame: Frame) -> None:
        await answer_now.wait()
        await echo_name(channel, frame)

    async with channel_server(late) as (port, _):
        client = await connect(port)
        with pytest.raises(RpcTimeoutError) as caught:
            await client.request(m.GlobalBeginRequest(transaction_name="late"), timeout=0.2)
        assert isinstance(caught.value, TimeoutError)  # what a caller would catch
        assert "GlobalBeginRequest" in str(caught.value)
        assert client.pending_count == 0
        # The late answer matches nothing and is dropped; the connection goes on.
        answer_now.set()
        assert await client.request(m.GlobalBeginRequest(transaction_name="next")) == m.GlobalBeginResponse(xid="next")
        client.close()


async def test_close_fails_every_pending_request_with_one_error() -> None:
    async with channel_server(never_answer) as (port, _):
        client = await connect(port)
        futures = [client.request_nowait(m.GlobalCommitRequest(xid=XID)) for _ in range(10)]
        batched = [client.request_batched(m.BranchReportRequest(xid=XID)) for _ in range(3)]
        client.close("closing for the test")
        errors = [f.exception() for f in await _settled(futures + batched)]
        assert all(isinstance(e, ConnectionClosedError) for e in errors)
        assert len({id(e) for e in errors}) == 1, "one error object for every pending request"
        assert "closing for the test" in str(errors[0])
        with pytest.raises(ConnectionClosedError):
            await client.request(m.GlobalCommitRequest(xid=XID))


async def _settled(futures: list[asyncio.Future[Any]]) -> list[asyncio.Future[Any]]:
    await asyncio.wait(futures, timeout=20)
    assert all(f.done() for f in futures)
    return futures


async def test_a_failing_handler_is_logged_and_the_connection_stays(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(channel: Channel, frame: Frame) -> None:
        assert isinstance(frame.body, m.GlobalBeginRequest)
        if frame.body.transaction_name == "boom":
            raise ValueError("handler bug")
        await echo_name(channel, frame)

    async with channel_server(handler) as (port, _):
        client = await connect(port)
        with caplog.at_level(logging.ERROR, logger="pyseata.rpc"), pytest.raises(RpcTimeoutError):
            await client.request(m.GlobalBeginRequest(transaction_name="boom"), timeout=0.3)
        assert "handler failed" in caplog.text and "handler bug" in caplog.text
        assert await client.request(m.GlobalBeginRequest(transaction_name="ok")) == m.GlobalBeginResponse(xid="ok")
        client.close()


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="hard_backlog"):
        ChannelConfig(max_backlog=10, hard_backlog=10)
    with pytest.raises(ValueError, match="max_concurrency"):
        ChannelConfig(max_concurrency=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        ChannelConfig(idle_timeout=0)
    with pytest.raises(ValueError, match="write_batch"):
        ChannelConfig(write_batch=0)


# --- heartbeats ----------------------------------------------------------------------------------


async def _raw_listener() -> tuple[asyncio.Server, asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """A plain listener that hands over the first accepted connection."""
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not accepted.done():
            accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    return server, accepted


async def _read_frame(reader: asyncio.StreamReader, decoder: FrameDecoder, backlog: list[Frame]) -> Frame:
    while not backlog:
        data = await asyncio.wait_for(reader.read(65536), 20)
        assert data, "the channel closed the connection"
        backlog.extend(decoder.feed(data))
    return backlog.pop(0)


async def test_ping_after_write_idle_and_pong_echoes_the_id(loop_kind: str) -> None:
    server, accepted = await _raw_listener()
    port = server.sockets[0].getsockname()[1]
    client = await connect(port, config=quick(heartbeat_interval=0.1))
    reader, writer = await accepted
    decoder, backlog = FrameDecoder(), []
    try:
        # Nothing else is written, so after the interval the channel pings, each time a new id.
        first = await _read_frame(reader, decoder, backlog)
        second = await _read_frame(reader, decoder, backlog)
        assert first.message_type is MessageType.HEARTBEAT_REQUEST and first.request_id > 0
        assert second.message_type is MessageType.HEARTBEAT_REQUEST and second.request_id != first.request_id
        # A ping from the peer is answered at once, echoing its id (and codec).
        writer.write(encode_frame(Frame.ping(77)))
        while (frame := await _read_frame(reader, decoder, backlog)).message_type is MessageType.HEARTBEAT_REQUEST:
            pass
        assert (frame.message_type, frame.request_id, frame.codec) == (MessageType.HEARTBEAT_RESPONSE, 77, 1)
    finally:
        client.close()
        writer.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_peer_is_dropped_after_the_idle_timeout(
    loop_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    server, accepted = await _raw_listener()
    port = server.sockets[0].getsockname()[1]
    client = await connect(port, config=quick(idle_timeout=0.3, request_timeout=60))
    _, writer = await accepted
    try:
        with caplog.at_level(logging.WARNING, logger="pyseata.rpc"), pytest.raises(ConnectionClosedError) as caught:
            await client.request(m.GlobalCommitRequest(xid=XID))  # the peer never answers nor pings
        assert "silent" in str(caught.value)
        assert "nothing read from" in caplog.text
        assert client.is_closed
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def test_pings_keep_an_idle_connection_open() -> None:
    # The server side drops what is silent for 2 s; the client pings every 0.05 s and says
    # nothing else for 3 s. (Generous ratios: these machines stall.)
    async with channel_server(echo_name, quick(idle_timeout=2.0)) as (port, accepted):
        client = await connect(port, config=quick(heartbeat_interval=0.05))
        await asyncio.sleep(3)
        assert not client.is_closed and not accepted[0].is_closed
        assert await client.request(m.GlobalBeginRequest(transaction_name="x")) == m.GlobalBeginResponse(xid="x")
        client.close()


# --- coalesced writes ----------------------------------------------------------------------------


class _CountingTransport:
    """Wraps a transport and counts its writes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append(len(data))
        self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _CountingChannel(Channel):
    def connection_made(self, transport: Any) -> None:
        self.counter = _CountingTransport(transport)
        super().connection_made(self.counter)


async def _count_writes(port: int, frames: int, config: ChannelConfig) -> tuple[list[int], list[m.Message]]:
    loop = asyncio.get_running_loop()
    client = _CountingChannel(never_answer, config)
    await loop.create_connection(lambda: client, "127.0.0.1", port)
    # All queued in one loop iteration: nothing yields between these calls.
    futures = [client.request_nowait(m.GlobalBeginRequest(transaction_name=f"n{i}")) for i in range(frames)]
    answers = await asyncio.gather(*futures)
    client.close()
    return client.counter.writes, answers


async def test_frames_queued_in_one_iteration_leave_in_one_write(loop_kind: str) -> None:
    async with channel_server(echo_name) as (port, _):
        writes, answers = await _count_writes(port, 100, quick(write_batch=1000, eager_write=False))
        assert len(writes) == 1, writes
        assert [a.xid for a in answers if isinstance(a, m.GlobalBeginResponse)] == [f"n{i}" for i in range(100)]


async def test_write_batch_caps_the_frames_per_write(loop_kind: str) -> None:
    # The default cap lets the peer start on the first frames while the rest are encoded.
    async with channel_server(echo_name) as (port, _):
        writes, answers = await _count_writes(port, 100, quick(eager_write=False))
        assert len(writes) == 100 // ChannelConfig().write_batch
        assert len(answers) == 100


async def test_eager_write_sends_the_first_frame_at_once_and_coalesces_the_rest(loop_kind: str) -> None:
    single = len(encode_frame(Frame(MessageType.REQUEST_SYNC, 1, m.GlobalBeginRequest(transaction_name="n0"))))
    async with channel_server(echo_name) as (port, _):
        writes, answers = await _count_writes(port, 100, quick(write_batch=1000))
        assert writes[0] == single and len(writes) == 2, writes
        writes, answers = await _count_writes(port, 100, quick())
        assert writes[0] == single and len(writes) == 1 + 99 // 4 + 1, writes
        assert [a.xid for a in answers if isinstance(a, m.GlobalBeginResponse)] == [f"n{i}" for i in range(100)]


class _FakeTransport:
    """Just enough of a transport to drive a Channel by hand: records what is written."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("batch", [1000, 4])
async def test_answers_given_while_reading_leave_at_the_end_of_the_read(batch: int) -> None:
    """Handlers that answer in their first step: the answers to the requests of one read leave
    before data_received returns, coalesced in write_batch groups."""
    channel = Channel(echo_name, quick(write_batch=batch))
    transport = _FakeTransport()
    channel.connection_made(transport)  # type: ignore[arg-type]
    names = [f"n{i}" for i in range(50)]
    channel.data_received(
        b"".join(
            encode_frame(Frame(MessageType.REQUEST_SYNC, i + 1, m.GlobalBeginRequest(transaction_name=name)))
            for i, name in enumerate(names)
        )
    )
    assert len(transport.writes) == -(-50 // batch)
    answers = FrameDecoder().feed(b"".join(transport.writes))
    assert [(f.request_id, f.body) for f in answers] == [
        (i + 1, m.GlobalBeginResponse(xid=name)) for i, name in enumerate(names)
    ]
    channel.close()


async def test_eager_write_waits_for_the_end_of_the_iteration_after_a_read_of_several_frames() -> None:
    """A read of one answer: the next request leaves at once. A read of several: several callers
    will send in this iteration, so the next request waits and leaves with theirs."""
    channel = Channel(never_answer, quick())
    transport = _FakeTransport()
    channel.connection_made(transport)  # type: ignore[arg-type]

    def answer(*ids: int) -> bytes:
        return b"".join(encode_frame(Frame(MessageType.RESPONSE, i, m.GlobalBeginResponse(xid="x"))) for i in ids)

    first = channel.request_nowait(m.GlobalBeginRequest(transaction_name="a"))
    assert len(transport.writes) == 1  # nothing else waited: written at once
    channel.data_received(answer(1))
    second = channel.request_nowait(m.GlobalBeginRequest(transaction_name="b"))
    third = channel.request_nowait(m.GlobalBeginRequest(transaction_name="c"))
    assert len(transport.writes) == 2  # "b" at once after a read of one answer; "c" waits for the iteration
    await asyncio.sleep(0)
    assert len(transport.writes) == 3
    channel.data_received(answer(2, 3))
    fourth = channel.request_nowait(m.GlobalBeginRequest(transaction_name="d"))
    assert len(transport.writes) == 3  # after a read of two answers, "d" waits for the others
    await asyncio.sleep(0)
    assert len(transport.writes) == 4
    assert all(f.done() for f in (first, second, third))
    channel.close()
    with pytest.raises(ConnectionClosedError):
        await fourth


# --- the handler pool: no wedge, back-pressure, hard limit -----------------------------------------


@pytest.mark.parametrize("eager", [True, False], ids=["eager-start", "task-start"])
async def test_handler_calling_back_over_its_own_connection_never_wedges(loop_kind: str, eager: bool) -> None:
    """Every pool slot holds a handler waiting for the peer's answer to its own request, and the
    backlog is over max_backlog: the answers must still be read, and everything completes."""
    config = quick(max_concurrency=4, max_backlog=8, hard_backlog=100_000, eager_start=eager)
    observed: list[tuple[int, int]] = []  # (backlog, handlers running) as the handlers saw it

    async def calls_back(channel: Channel, frame: Frame) -> None:
        observed.append((channel.backlog_size, channel.active_handlers))
        answer = await channel.request(m.BranchCommitRequest(xid=XID, branch_id=frame.request_id))
        assert isinstance(answer, m.BranchCommitResponse) and answer.branch_id == frame.request_id
        observed.append((channel.backlog_size, channel.active_handlers))
        channel.respond(frame, m.GlobalCommitResponse(global_status=GlobalStatus.Committed))

    async with channel_server(calls_back, config) as (port, _):
        client = await connect(port, answer_commits, quick(write_batch=1000))
        futures = [client.request_nowait(m.GlobalCommitRequest(xid=XID)) for _ in range(300)]
        answers = await within(asyncio.gather(*futures), 60, "wedged: requests waiting on call-backs never finished")
        assert all(a == m.GlobalCommitResponse(global_status=GlobalStatus.Committed) for a in answers)
        # The situation really arose: the pool was full and the backlog beyond its limit.
        assert max(backlog for backlog, _ in observed) > config.max_backlog
        assert max(running for _, running in observed) == config.max_concurrency
        client.close()


@pytest.mark.parametrize("eager", [True, False], ids=["eager-start", "task-start"])
async def test_paused_reading_resumes_when_a_handler_starts_waiting_on_the_peer(loop_kind: str, eager: bool) -> None:
    """The pool fills with handlers that wait on something local, so the flood pauses reading;
    then they ask the peer something. Its answers sit behind the paused reads: asking must
    resume reading, or this would hang."""
    config = quick(max_concurrency=2, max_backlog=4, hard_backlog=100_000, eager_start=eager)
    go = asyncio.Event()

    async def waits_then_calls_back(channel: Channel, frame: Frame) -> None:
        await go.wait()
        answer = await channel.request(m.BranchCommitRequest(xid=XID, branch_id=frame.request_id))
        assert isinstance(answer, m.BranchCommitResponse)
        channel.respond(frame, m.GlobalCommitResponse(global_status=GlobalStatus.Committed))

    async with channel_server(waits_then_calls_back, config) as (port, accepted):
        client = await connect(port, answer_commits, quick(request_timeout=60))
        futures = [client.request_nowait(m.GlobalCommitRequest(xid=XID)) for _ in range(200)]
        await eventually(lambda: accepted and accepted[0].reading_paused, what="the server pauses reading")
        go.set()
        answers = await within(asyncio.gather(*futures), 60, "wedged: the call-backs' answers were never read")
        assert len(answers) == 200
        assert not accepted[0].reading_paused
        client.close()


async def test_a_flood_pauses_reading_and_resumes_as_handlers_finish(loop_kind: str) -> None:
    config = quick(max_concurrency=4, max_backlog=16, hard_backlog=10_000_000)
    go = asyncio.Event()

    async def gated(channel: Channel, frame: Frame) -> None:
        await go.wait()
        channel.respond(frame, m.GlobalBeginResponse(xid=XID))

    request = m.GlobalBeginRequest(transaction_name="n" * 200)
    frame_size = len(encode_frame(Frame(MessageType.REQUEST_SYNC, 1, request)))
    flood = 20_000  # ~4.5 MB: more than socket buffers and one read together
    async with channel_server(gated, config) as (port, accepted):
        client = await connect(port, config=quick(request_timeout=120))
        futures = [client.request_nowait(request) for _ in range(flood)]
        await eventually(lambda: accepted and accepted[0].reading_paused, what="the server pauses reading")
        server = accepted[0]
        before = server.backlog_size
        await asyncio.sleep(0.3)
        # Nothing was read while paused, and what was read is bounded by the limit plus the one
        # read that crossed it; the rest of the flood waits in socket buffers and in the client.
        assert server.backlog_size == before
        assert before <= config.max_backlog + (256 * 1024) // frame_size + 1
        assert before + server.active_handlers < flood // 2
        go.set()
        answers = await within(asyncio.gather(*futures), 80, "reading did not resume after the flood")
        assert len(answers) == flood
        assert not server.reading_paused and server.backlog_size == 0
        client.close()


async def test_a_peer_overrunning_the_hard_backlog_is_disconnected(
    loop_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The server waits for an answer of its own, so reading cannot pause: the hard limit is what
    # keeps memory bounded.
    config = quick(max_concurrency=2, max_backlog=4, hard_backlog=50)
    async with channel_server(never_answer, config) as (port, accepted):
        client = await connect(port, never_answer, quick(request_timeout=60))
        await eventually(lambda: accepted)
        server = accepted[0]
        own = server.request_nowait(m.BranchCommitRequest(xid=XID, branch_id=1))
        with caplog.at_level(logging.ERROR, logger="pyseata.rpc"):
            futures = [client.request_nowait(m.GlobalBeginRequest()) for _ in range(500)]
            await _settled(futures)
        assert all(isinstance(f.exception(), ConnectionClosedError) for f in futures)
        assert "more than this side can serve" in caplog.text and "disconnecting" in caplog.text
        assert isinstance(own.exception(), ConnectionClosedError)
        client.cancel_tasks()


async def test_task_start_runs_no_handler_code_in_the_read_callback(loop_kind: str) -> None:
    """With eager_start=False every handler step runs in a task of the pool, never inside
    data_received (where there is no current task)."""
    seen_tasks: list[asyncio.Task[object] | None] = []

    async def records_task(channel: Channel, frame: Frame) -> None:
        seen_tasks.append(asyncio.current_task())
        channel.respond(frame, m.GlobalBeginResponse(xid=XID))

    async with channel_server(records_task, quick(eager_start=False)) as (port, _):
        client = await connect(port)
        answers = await asyncio.gather(*(client.request(m.GlobalBeginRequest()) for _ in range(20)))
        assert len(answers) == 20
        assert len(seen_tasks) == 20 and all(task is not None for task in seen_tasks)
        client.close()
