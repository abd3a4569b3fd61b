"""A TCP proxy that breaks the network on command, for reconnect, heartbeat and failover tests.

    async with FaultProxy(target_port) as proxy:     # listens on 127.0.0.1, port chosen by the OS
        channel = await connect(proxy.port)          # talks to the target through the proxy
        proxy.delay(0.2)                             # every chunk arrives 0.2 s late
        proxy.drop("s2c")                            # answers vanish (black hole); the link stays up
        proxy.heal()                                 # back to plain forwarding
        proxy.cut()                                  # every open connection closes at once
        proxy.refuse_new = True                      # new connections are closed on arrival

Directions are "c2s" (client to target), "s2c" (target to client) or "both". A fault applies to
data read after it is set, on every connection, open or future. ``chunks`` keeps the size of
every read per direction, so tests can see how the bytes were written.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["FaultProxy"]

DIRECTIONS = ("c2s", "s2c")


def _directions(direction: str) -> tuple[str, ...]:
    if direction == "both":
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'c2s', 's2c' or 'both', not {direction!r}")
    return (direction,)


@dataclass(eq=False)  # identity semantics: links live in a set
class _Link:
    """One proxied connection: the client's leg and the target's leg."""

    client: asyncio.StreamWriter
    target: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    finished: int = 0  # directions that reached their end

    def abort(self) -> None:
        for writer in (self.client, self.target):
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()

    def close(self) -> None:
        for writer in (self.client, self.target):
            writer.close()


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.refuse_new = False
        self.connections = 0  # accepted and connected to the target, in total
        self.chunks: dict[str, list[int]] = {d: [] for d in DIRECTIONS}
        self._drop = dict.fromkeys(DIRECTIONS, False)
        self._delay = dict.fromkeys(DIRECTIONS, 0.0)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- faults -----------------------------------------------------------------------------------

    def drop(self, direction: str = "both") -> None:
        """Black hole: data is read and thrown away; the connections stay open."""
        for d in _directions(direction):
            self._drop[d] = True

    def delay(self, seconds: float, direction: str = "both") -> None:
        """Each chunk is passed on ``seconds`` after it was read (order is kept)."""
        for d in _directions(direction):
            self._delay[d] = seconds

    def heal(self) -> None:
        """Plain forwarding again (for data read from now on)."""
        self._drop = dict.fromkeys(DIRECTIONS, False)
        self._delay = dict.fromkeys(DIRECTIONS, 0.0)

    def cut(self) -> None:
        """Closes every open connection, both legs, at once (unsent data is lost)."""
        links, self._links = self._links, set()
        for link in links:
            link.abort()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # --- plumbing ---------------------------------------------------------------------------------

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refuse_new:
            client_writer.transport.abort()
            return
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link(client_writer, target_writer)
        self._links.add(link)
        self.connections += 1
        link.tasks = [
            asyncio.create_task(self._pump("c2s", client_reader, target_writer, link)),
            asyncio.create_task(self._pump("s2c", target_reader, client_writer, link)),
        ]

    async def _pump(
        self, direction: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        # Reading and sending are split so that a delay never holds up reading; the queue keeps
        # the order.
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer))
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except ConnectionError:
                    break
                if not data:
                    break
                self.chunks[direction].append(len(data))
                if self._drop[direction]:
                    continue
                queue.put_nowait((time.monotonic() + self._delay[direction], data))
            queue.put_nowait(None)
            await sender
        finally:
            sender.cancel()
            link.finished += 1
            if link.finished == len(DIRECTIONS) and link in self._links:
                self._links.discard(link)
                link.close()

    @staticmethod
    async def _send(queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter) -> None:
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # the sender finished: pass the half-close on
        except ConnectionError:
            writer.transport.abort()
