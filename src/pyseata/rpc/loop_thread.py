"""One asyncio event loop on a daemon thread, so synchronous programs can use the async runtime.

Synchronous code hands coroutines to the loop with :meth:`LoopThread.run` and blocks on a
thread-safe future (``asyncio.run_coroutine_threadsafe``): the logic exists once, in async form,
and any number of threads may call at the same time. The loop runs inside ``asyncio.Runner``, so
:meth:`LoopThread.stop` cancels and awaits whatever is left, closes async generators and the
default executor, and joins the thread: nothing keeps running and no task is destroyed pending.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

log = logging.getLogger("pyseata.rpc.loop")

T = TypeVar("T")


class LoopThread:
    """Runs one event loop on a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        name: str = "pyseata-loop",
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self.name = name
        self._loop_factory = loop_factory
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} was already started")
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f"{self.name}: the event loop did not start") from self._error

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ends the loop (cancelling what is still running on it) and joins the thread."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if thread is None or not thread.is_alive():
            return
        if threading.current_thread() is thread:
            raise RuntimeError(f"{self.name}: stop() called from the loop's own thread")
        if loop is not None and stop is not None:
            # The loop may be closing already; then there is nothing left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_finish, stop)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{self.name}: the loop thread did not end within {timeout} s")

    def __enter__(self) -> LoopThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or not self.is_running:
            raise RuntimeError(f"{self.name} is not running (call start() first)")
        return self._loop

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._loop is not None

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    # --- calls from other threads -----------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Runs ``coro`` on the loop and blocks until it returns (or raises)."""
        if self.in_loop_thread():
            coro.close()
            # Blocking the loop's own thread on the loop would wait forever.
            raise RuntimeError(f"{self.name}: blocking call from the loop thread; await the coroutine there")
        try:
            loop = self.loop
        except RuntimeError:
            coro.close()  # never scheduled: close it so Python does not warn it was never awaited
            raise
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{self.name}: no result within {timeout} s") from None

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a plain function on the loop thread (for state only the loop may touch)."""

        async def call() -> T:
            return fn(*args)

        return self.run(call())

    # --- the thread -------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self._serve())
        except BaseException as exc:
            if self._ready.is_set():
                log.exception("%s: the event loop ended with an error", self.name)
            self._error = exc  # start() reports it when the loop never came up
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        self._ready.set()
        await self._stop


def _finish(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)
