"""One TCP connection speaking Seata protocol v1, for either side.

What a channel guarantees:

* Frames queued in one loop iteration are coalesced into few writes (getty's batched writes):
  one ``transport.write`` per ``write_batch`` frames, the remainder at the end of the iteration.
  Answers given while a read is handled leave at the end of that read. With ``eager_write`` a
  frame that finds nothing else waiting to leave is written at once (the next ones coalesce).
* Responses are matched to pending requests by id; every pending request has a deadline.
* **The read loop never waits on a handler.** Inbound requests go to a bounded pool of tasks. By
  default a handler's first synchronous step runs at once, as asyncio's eager tasks do, and the
  handler joins the pool at its first wait (``eager_start``; set it False and no handler code at
  all runs in the read callback). When the pool is full, requests wait in a backlog and
  reading pauses (back-pressure), *unless* this side is itself waiting for a response on this
  connection: then reading goes on, so a handler that waits on a request it sent back over the
  same connection always gets its answer.
  A peer that overruns a hard backlog limit is disconnected rather than let memory grow.
* Heartbeats: a PING after ``heartbeat_interval`` without writes, and the connection is closed
  after ``idle_timeout`` without reads (Seata's 5 s / 15 s). Pings are answered at once.
* Closing fails every pending request with one :class:`ConnectionClosedError`. Handlers already
  running are left to finish (a TC handler may be half-way through a store write); their answers
  are dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pyseata.errors import ConnectionClosedError, ProtocolError, RpcTimeoutError
from pyseata.protocol.enums import CompressorType, ExceptionCodeTable, MessageType, SerializerType
from pyseata.protocol.frame import MAX_FRAME_LENGTH, Frame, FrameDecoder, encode_message, encode_plain
from pyseata.protocol.messages import BatchResultMessage, MergedWarpMessage, MergeResultMessage, Message

__all__ = ["Channel", "ChannelConfig", "RequestHandler"]

log = logging.getLogger("pyseata.rpc")

RequestHandler = Callable[["Channel", Frame], Awaitable[None]]
"""Called in a pool task for every inbound request or oneway frame; it answers with
``channel.respond``. Exceptions are logged and the connection stays open (as in Seata's
``processMessage``); the peer's request then runs into its own timeout."""

_RESPONSE = MessageType.RESPONSE
_REQUEST_SYNC = MessageType.REQUEST_SYNC
_REQUEST_ONEWAY = MessageType.REQUEST_ONEWAY
_PING = MessageType.HEARTBEAT_REQUEST
_PONG = MessageType.HEARTBEAT_RESPONSE
_SEATA = SerializerType.SEATA
_NO_COMPRESSION = CompressorType.NONE

# Deadlines of pending requests are kept in buckets of this many seconds, one timer per bucket
# instead of one per request: a timer per request cost more than the rest of the bookkeeping.
# A request therefore fails at most this much after its deadline.
_DEADLINE_RESOLUTION = 0.01


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Timings and limits of one connection. Defaults are Seata's."""

    request_timeout: float = 30.0
    heartbeat_interval: float | None = 5.0  # PING after this long without writes; None: never
    idle_timeout: float | None = 15.0  # close after this long without reads; None: never
    max_concurrency: int = 128  # inbound requests handled at once
    max_backlog: int = 1024  # inbound requests queued beyond that before reading pauses
    hard_backlog: int = 65536  # beyond this even while we wait for responses: disconnect
    max_frame_length: int = MAX_FRAME_LENGTH
    compressor: CompressorType = CompressorType.NONE  # for requests this side starts
    # Frames queued in one loop iteration are coalesced into one write, but at most this many:
    # the rest follow in further writes, so that the peer starts on the first ones while this
    # side is still encoding. (Coalescing whole iterations halved round trips per second at 16
    # and 64 concurrent callers in bench/rpc.py, because the two sides never worked at once.)
    write_batch: int = 4
    # A frame queued when nothing else waits to leave (and nothing was written early since this
    # side last read) is written at once instead of at the end of the loop iteration; frames
    # queued after it in the same iteration coalesce as above. At low concurrency this saves a
    # loop iteration on every round trip. False: every frame waits for the end of its iteration.
    eager_write: bool = True
    # A handler's first synchronous step runs as soon as its frame is decoded, like asyncio's
    # eager tasks; at its first real wait it moves to a pool task, so a waiting handler never
    # holds up reading (tests prove it). It saves a task per request that never waits (a fifth
    # of a round trip). False: every request starts as a task, and no handler code at all runs
    # in the read callback; use it for handlers that do CPU work before their first await.
    eager_start: bool = True

    def __post_init__(self) -> None:
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, not {self.request_timeout}")
        for name in ("heartbeat_interval", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, not {value}")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {self.max_concurrency}")
        if self.write_batch < 1:
            raise ValueError(f"write_batch must be at least 1, not {self.write_batch}")
        if self.max_backlog < 0:
            raise ValueError(f"max_backlog must not be negative, not {self.max_backlog}")
        # Reading only pauses between reads, so the frames of the read that crossed max_backlog
        # still join the backlog: hard_backlog must leave room for them.
        if self.hard_backlog <= self.max_backlog:
            raise ValueError(f"hard_backlog ({self.hard_backlog}) must exceed max_backlog ({self.max_backlog})")


class Channel(asyncio.Protocol):
    """An asyncio protocol object bound to one connection."""

    def __init__(
        self,
        handler: RequestHandler,
        config: ChannelConfig | None = None,
        *,
        on_close: Callable[[Channel], None] | None = None,
        name: str = "channel",
    ) -> None:
        self.config = config or ChannelConfig()
        self.name = name
        self._handler = handler
        self._on_close = on_close
        self._decoder = FrameDecoder(self.config.max_frame_length)
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._write_batch = self.config.write_batch
        self._eager_write = self.config.eager_write
        self._eager_start = self.config.eager_start
        self._reading = False  # inside data_received: answers leave at the end of the read
        self._wrote_early = False  # a frame went out at once since the last read or flush
        self._next_id = 0
        # request id -> (future, deadline bucket, request body for the timeout message)
        self._pending: dict[int, tuple[asyncio.Future[Message], int, Message]] = {}
        self._buckets: dict[int, set[int]] = {}
        # Batched sending (MergedWarpMessage): requests queued this iteration; for every merged
        # frame sent, the ids of the requests inside it in order; and the reverse map, so that
        # an expired request can let go of its merged frame.
        self._batch: list[tuple[int, Message]] = []
        self._merged: dict[int, tuple[int, ...]] = {}
        self._merged_of: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._backlog: deque[Frame] = deque()
        self._feeding = False
        self._reading_paused = False
        self._write_paused: asyncio.Future[None] | None = None
        self._closed_exc: ConnectionClosedError | None = None
        self._closed: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        # Reads and writes only raise a flag; the timer turns flags into times (cheaper per frame).
        self._read_seen = self._write_seen = False
        self._last_read = self._last_write = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.peer: tuple[str, int] = ("?", 0)
        self.local: tuple[str, int] = ("?", 0)
        self.state: dict[str, Any] = {}  # what the layer above knows of this peer (registration...)

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports do not derive from asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._loop = loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self._lost = loop.create_future()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
        if isinstance(local, tuple):
            self.local = (str(local[0]), int(local[1]))
        self._last_read = self._last_write = loop.time()
        self._schedule_timer()

    def data_received(self, data: bytes) -> None:
        self._read_seen = True
        try:
            frames = self._decoder.feed_lean(data)
        except ProtocolError as exc:
            log.warning("%s: closing connection from %s: %s", self.name, self.peer_text, exc)
            self._close(ConnectionClosedError(f"protocol error from {self.peer_text}: {exc}"))
            return
        # A new loop iteration: the next frame may leave at once again, unless this read brought
        # several frames (several callers will send this iteration: better they leave together).
        self._wrote_early = len(frames) > 1
        # Answers given by handlers that finish in their first step are queued, and leave
        # together when the read is handled: no loop iteration between a request and its answer.
        self._reading = True
        pending = self._pending
        try:
            for frame in frames:
                if frame.__class__ is tuple:  # an ordinary response: (request id, body)
                    request_id, body = frame
                    entry = pending.pop(request_id, None)
                    if entry is None:
                        self._unmatched(request_id, body)
                    else:  # complete(), inline: this is the path of every answer
                        future = entry[0]
                        ids = self._buckets.get(entry[1])
                        if ids is not None:
                            ids.discard(request_id)
                        if not future.done():
                            future.set_result(body)
                elif frame.message_type == _RESPONSE:  # type: ignore[union-attr]
                    self.complete(frame.request_id, frame.body)  # type: ignore[union-attr]
                else:
                    self._dispatch(frame)  # type: ignore[arg-type]
                if self._closed_exc is not None:  # a frame closed the connection: drop the rest
                    return
        finally:
            self._reading = False
        if self._out:
            self._flush()

    def eof_received(self) -> bool | None:
        # The peer will send nothing more: close our side too (its answers could not be matched
        # to anything we would still read).
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection to {self.peer_text} lost" + (f": {exc}" if exc else "")
        self._close(ConnectionClosedError(reason), transport_gone=True)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        if self._write_paused is None and self._loop is not None:
            self._write_paused = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._write_paused is not None:
            if not self._write_paused.done():
                self._write_paused.set_result(None)
            self._write_paused = None

    # --- properties -------------------------------------------------------------------------------

    @property
    def peer_text(self) -> str:
        return f"{self.peer[0]}:{self.peer[1]}"

    @property
    def is_closed(self) -> bool:
        return self._closed_exc is not None

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def backlog_size(self) -> int:
        """Inbound requests waiting for a free handler slot."""
        return len(self._backlog)

    @property
    def active_handlers(self) -> int:
        return len(self._tasks)

    @property
    def reading_paused(self) -> bool:
        """True while back-pressure keeps this side from reading."""
        return self._reading_paused

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """The handler tasks in flight."""
        return frozenset(self._tasks)

    @property
    def codes(self) -> ExceptionCodeTable:
        """The exception-code table of the peer's Seata version (2.x until registration says)."""
        return self._decoder.codes

    @codes.setter
    def codes(self, table: ExceptionCodeTable) -> None:
        self._decoder.codes = table

    async def wait_closed(self) -> None:
        """Returns once the channel is closed (pending requests failed); the socket itself may
        still be flushing, see :meth:`wait_lost`."""
        if self._closed is not None:
            await asyncio.shield(self._closed)

    async def wait_lost(self, timeout: float | None = None) -> bool:
        """Waits until the transport reports the connection gone; False on timeout."""
        if self._lost is None:
            return True
        done, _ = await asyncio.wait([self._lost], timeout=timeout)
        return bool(done)

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "open"
        return f"<Channel {self.name} {self.peer_text} {state} pending={len(self._pending)}>"

    # --- sending ----------------------------------------------------------------------------------

    def _new_id(self) -> int:
        # Seata's PositiveAtomicCounter: positive 31-bit ids starting at 1.
        self._next_id = (self._next_id + 1) & 0x7FFFFFFF or 1
        return self._next_id

    def send_frame(self, frame: Frame) -> None:
        """Queues a frame; it leaves with the others of this loop iteration (see ``write_batch``)."""
        self._queue(
            encode_message(
                frame.message_type,
                frame.request_id,
                frame.body,
                frame.codec,
                frame.compressor,
                frame.head_map,
                self.codes,
            )
        )

    def _queue(self, data: bytes) -> None:
        if self._closed_exc is not None:
            raise self._closed_exc
        out = self._out
        if not (out or self._reading or self._flush_scheduled or self._wrote_early) and self._eager_write:
            # Nothing else waits to leave: write now rather than a loop iteration later. The
            # frames queued after this one, until the next read or flush, coalesce as usual.
            self._wrote_early = True
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.write(data)
                self._write_seen = True
            return
        out.append(data)
        if len(out) >= self._write_batch:
            self._flush()
        elif not (self._flush_scheduled or self._reading):  # the rest of the iteration's frames
            self._flush_scheduled = True  # leave together (a read flushes at its end)
            assert self._loop is not None
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = self._wrote_early = False
        self._flush()

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        self._write_seen = True

    async def request(self, body: Message, *, timeout: float | None = None) -> Message:
        """Sends a sync request and returns the response body."""
        future = self._send(body, timeout, _REQUEST_SYNC)
        if self._write_paused is not None:
            # The peer reads slower than we write: hold the caller back. The request is already
            # pending, so reading goes on meanwhile (see _track).
            await asyncio.shield(self._write_paused)
        return await future

    def request_nowait(
        self, body: Message, *, timeout: float | None = None, message_type: MessageType = _REQUEST_SYNC
    ) -> asyncio.Future[Message]:
        """Sends a request now; the returned future completes with its response body."""
        return self._send(body, timeout, message_type)

    def _send(self, body: Message, timeout: float | None, message_type: MessageType) -> asyncio.Future[Message]:
        if self._closed_exc is not None:
            raise self._closed_exc
        # _new_id, inline: this is the path of every request.
        self._next_id = request_id = (self._next_id + 1) & 0x7FFFFFFF or 1
        future = self._track(request_id, body, timeout)
        try:
            compressor = self.config.compressor
            self._queue(
                encode_plain(message_type, request_id, body, self._decoder.codes)
                if compressor == _NO_COMPRESSION
                else encode_message(message_type, request_id, body, _SEATA, compressor, None, self._decoder.codes)
            )
        except BaseException:
            self._untrack(request_id)
            raise
        return future

    def request_batched(self, body: Message, *, timeout: float | None = None) -> asyncio.Future[Message]:
        """Like :meth:`request_nowait`, but the request travels inside a MergedWarpMessage with
        the other requests queued in the same loop iteration (Seata's client batch sending)."""
        if self._closed_exc is not None:
            raise self._closed_exc
        assert self._loop is not None
        request_id = self._new_id()
        future = self._track(request_id, body, timeout)
        if not self._batch:
            self._loop.call_soon(self._send_batch)
        self._batch.append((request_id, body))
        return future

    def _track(self, request_id: int, body: Message, timeout: float | None) -> asyncio.Future[Message]:
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[Message] = loop.create_future()
        deadline = loop.time() + (self.config.request_timeout if timeout is None else timeout)
        bucket = int(deadline / _DEADLINE_RESOLUTION) + 1
        ids = self._buckets.get(bucket)
        if ids is None:
            ids = self._buckets[bucket] = set()
            loop.call_at(bucket * _DEADLINE_RESOLUTION, self._expire_bucket, bucket)
        ids.add(request_id)
        self._pending[request_id] = (future, bucket, body)
        if self._reading_paused:
            # We now wait for an answer: reading must go on, or a handler waiting on this very
            # request could never see its response (the wedge the module docstring describes).
            self._resume_reading()
        return future

    def _untrack(self, request_id: int) -> tuple[asyncio.Future[Message], int, Message] | None:
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            ids = self._buckets.get(entry[1])
            if ids is not None:
                ids.discard(request_id)
        frame_id = self._merged_of.pop(request_id, None)
        if frame_id is not None:
            ids_in_frame = self._merged.get(frame_id, ())
            if not any(i in self._pending for i in ids_in_frame):
                self._merged.pop(frame_id, None)
        return entry

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        batch = [(i, b) for i, b in batch if i in self._pending]  # some may have expired already
        if not batch or self._closed_exc is not None:
            return
        ids = tuple(i for i, _ in batch)
        frame_id = self.send_oneway(MergedWarpMessage(tuple(b for _, b in batch), ids))
        self._merged[frame_id] = ids
        for request_id in ids:
            self._merged_of[request_id] = frame_id

    def send_oneway(self, body: Message) -> int:
        """Sends a oneway frame; returns its request id."""
        request_id = self._new_id()
        compressor = self.config.compressor
        self._queue(
            encode_plain(_REQUEST_ONEWAY, request_id, body, self._decoder.codes)
            if compressor == _NO_COMPRESSION
            else encode_message(_REQUEST_ONEWAY, request_id, body, _SEATA, compressor, None, self._decoder.codes)
        )
        return request_id

    def respond(self, request: Frame, body: Message, head_map: Mapping[str | None, str | None] | None = None) -> None:
        """Answers ``request`` with its id, codec and compressor, as Seata's buildResponseMessage."""
        if self._closed_exc is not None:
            log.debug("%s: dropping answer to request %d: connection closed", self.name, request.request_id)
            return
        if head_map is None and request.compressor == _NO_COMPRESSION and request.codec == _SEATA:
            self._queue(encode_plain(_RESPONSE, request.request_id, body, self._decoder.codes))
        else:
            self._queue(
                encode_message(
                    _RESPONSE, request.request_id, body, request.codec, request.compressor, head_map, self.codes
                )
            )

    def _expire_bucket(self, bucket: int) -> None:
        ids = self._buckets.pop(bucket, None)
        for request_id in ids or ():
            entry = self._untrack(request_id)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(
                    RpcTimeoutError(f"no response to {type(entry[2]).__name__} from {self.peer_text} in time")
                )

    # --- receiving --------------------------------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        message_type = frame.message_type
        if message_type == _PING:
            # The pong echoes the ping's id, codec and compressor (ServerHeartbeatProcessor).
            self._queue(encode_message(_PONG, frame.request_id, frame.body, frame.codec, frame.compressor))
        elif message_type == _PONG:
            pass  # the read itself already counts against the idle timeout
        elif len(self._tasks) < self.config.max_concurrency:
            self._spawn(frame)
        else:
            backlog = self._backlog
            backlog.append(frame)
            if len(backlog) > self.config.hard_backlog:
                log.error(
                    "%s: %s sent %d requests more than this side can serve (max_concurrency %d, "
                    "hard_backlog %d); disconnecting it",
                    self.name,
                    self.peer_text,
                    len(backlog),
                    self.config.max_concurrency,
                    self.config.hard_backlog,
                )
                self._close(ConnectionClosedError(f"{self.peer_text} overran the request backlog"))
            elif len(backlog) > self.config.max_backlog and not self._pending:
                self._pause_reading()

    def complete(self, request_id: int, body: Message) -> bool:
        """Completes the pending request ``request_id``; False if nothing waits for it."""
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return self._unmatched(request_id, body)
        future, bucket, _ = entry
        ids = self._buckets.get(bucket)
        if ids is not None:
            ids.discard(request_id)
        if not future.done():
            future.set_result(body)
        return True

    def _unmatched(self, request_id: int, body: Message) -> bool:
        if isinstance(body, MergeResultMessage | BatchResultMessage):
            return self._complete_merged(request_id, body)
        log.debug("%s: response %d from %s matches no pending request", self.name, request_id, self.peer_text)
        return False

    def _complete_merged(self, frame_id: int, body: MergeResultMessage | BatchResultMessage) -> bool:
        if isinstance(body, MergeResultMessage):
            # Results match the requests of the merged frame with this id, by position.
            ids = self._merged.pop(frame_id, ())
            for i in ids:
                self._merged_of.pop(i, None)
            return all([self.complete(i, r) for i, r in zip(ids, body.msgs, strict=False)]) and bool(ids)
        # Results carry the ids of the requests inside the merged frame; one merged frame may be
        # answered by several batch frames.
        done = [self.complete(i, r) for i, r in zip(body.msg_ids, body.result_messages, strict=False)]
        for i in body.msg_ids:
            self._merged_of.pop(i, None)
        in_frame = self._merged.get(frame_id)
        if in_frame is not None and not any(i in self._pending for i in in_frame):
            del self._merged[frame_id]
        return all(done)

    def _spawn(self, frame: Frame) -> None:
        # The handler's first step runs now, as Python 3.12's eager tasks do: most TC answers
        # never wait, and a task for each cost a fifth of a round trip. At its first real
        # suspension the handler moves to a task, so a handler that waits never holds up
        # reading. Each handler gets its own copy of the context, as a task would.
        loop = self._loop
        assert loop is not None
        if not self._eager_start:
            self._tasks.add(loop.create_task(self._run(self._handler(self, frame), frame)))
            return
        context = contextvars.copy_context()
        step = self._handler(self, frame)
        coro = step if step.__class__ is _COROUTINE else _awaited(step)
        try:
            waiting_on = context.run(coro.send, None)
        except (StopIteration, asyncio.CancelledError, ConnectionClosedError):
            # Finished, or cancelled itself (awaited a cancelled future): as a task would have
            # ended quietly, not an error of the connection.
            pass
        except Exception:
            log.exception("%s: handler failed on %r from %s", self.name, frame, self.peer_text)
        else:
            resumed = _Resumed(coro, waiting_on)
            self._tasks.add(loop.create_task(self._run(resumed, frame), context=context))
            return
        if self._backlog or self._reading_paused:
            self._next_from_backlog()

    async def _run(self, handler: Awaitable[None], frame: Frame) -> None:
        """A handler in a task of the pool: from its start, or from where its first step waited."""
        try:
            await handler
        except ConnectionClosedError:
            pass
        except Exception:
            log.exception("%s: handler failed on %r from %s", self.name, frame, self.peer_text)
        finally:
            # Bookkeeping here rather than in a done callback: one loop callback less per request.
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(cast("asyncio.Task[None]", task))
            if self._backlog or self._reading_paused:
                self._next_from_backlog()

    def _next_from_backlog(self) -> None:
        if self._feeding:
            return  # a handler started below finished at once; the loop below goes on
        self._feeding = True
        backlog = self._backlog
        try:
            while backlog and self._closed_exc is None and len(self._tasks) < self.config.max_concurrency:
                self._spawn(backlog.popleft())
        finally:
            self._feeding = False
        # Resume at half the limit, not at the limit, so that reading does not flap per request.
        if self._reading_paused and len(backlog) <= self.config.max_backlog // 2:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            log.debug(
                "%s: %d requests waiting; pausing reads from %s",
                self.name,
                len(self._backlog),
                self.peer_text,
            )
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._transport.is_closing():
            self._reading_paused = False
            # The silence while paused was ours, not the peer's: restart the idle clock.
            self._read_seen = True
            self._transport.resume_reading()

    # --- timers -----------------------------------------------------------------------------------

    def _schedule_timer(self) -> None:
        intervals = [t for t in (self.config.heartbeat_interval, self.config.idle_timeout) if t]
        if intervals and self._loop is not None and self._closed_exc is None:
            self._timer = self._loop.call_later(min(intervals) / 4, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if self._read_seen or self._reading_paused:
            self._read_seen = False
            self._last_read = now
        if self._write_seen:
            self._write_seen = False
            self._last_write = now
        idle = self.config.idle_timeout
        if idle and now - self._last_read > idle:
            log.warning(
                "%s: nothing read from %s for %.1f s; closing",
                self.name,
                self.peer_text,
                now - self._last_read,
            )
            self._close(ConnectionClosedError(f"{self.peer_text} silent for more than {idle:g} s"))
            return
        beat = self.config.heartbeat_interval
        if beat and now - self._last_write >= beat:
            self._queue(encode_message(_PING, self._new_id(), None))
            self._last_write = now  # one ping per interval even though the flush comes later
        self._schedule_timer()

    # --- closing ----------------------------------------------------------------------------------

    def close(self, reason: str = "closed locally") -> None:
        """Closes after flushing what is queued; pending requests fail at once."""
        self._close(ConnectionClosedError(reason))

    def abort(self, reason: str = "aborted locally") -> None:
        """Closes at once, discarding unsent data."""
        self._out.clear()
        if self._transport is not None:
            self._transport.abort()
        self._close(ConnectionClosedError(reason))

    def _close(self, exc: ConnectionClosedError, *, transport_gone: bool = False) -> None:
        if self._closed_exc is not None:
            return
        self._closed_exc = exc
        if self._timer is not None:
            self._timer.cancel()
        self._batch.clear()
        self._merged.clear()
        self._merged_of.clear()
        self._buckets.clear()  # their timers find nothing to do
        pending, self._pending = self._pending, {}
        for future, _, _ in pending.values():
            if not future.done():
                future.set_exception(exc)
        self._backlog.clear()
        if self._write_paused is not None and not self._write_paused.done():
            # Not an exception: whoever waits here goes on to await its request, which fails
            # with ``exc``; an exception here would also be reported as never retrieved.
            self._write_paused.set_result(None)
        if self._transport is not None and not transport_gone:
            self._flush()
            self._transport.close()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._on_close is not None:
            self._on_close(self)

    async def drain_tasks(self, timeout: float) -> bool:
        """Waits up to ``timeout`` for the handlers in flight (and those the backlog still
        feeds); True when all finished."""
        assert self._loop is not None or not self._tasks
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    def cancel_tasks(self) -> None:
        """Cancels the handlers in flight; the backlog is dropped, not started."""
        self._backlog.clear()
        for task in list(self._tasks):
            task.cancel()


_COROUTINE = types.CoroutineType


def _awaited(awaitable: Awaitable[None]) -> Coroutine[Any, Any, None]:
    """A coroutine, for a handler that returned some other awaitable."""

    async def wait() -> None:
        await awaitable

    return awaitable if isinstance(awaitable, Coroutine) else wait()


class _Resumed:
    """Carries on a handler coroutine whose first step already ran (see ``Channel._spawn``): the
    task first waits for what that step yielded, then drives the coroutine as it would have."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, None]:
        coro, yielded = self._coro, self._first
        while True:
            try:
                value = yield yielded
            except BaseException as exc:  # thrown in by the task (cancellation)
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = coro.send(value)
                except StopIteration:
                    return

