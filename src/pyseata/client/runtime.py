"""One client runtime per process: the TC connections, on an event loop of their own.

::

    import pyseata.client as seata

    seata.init(application_id="shop", grouplist="10.0.0.5:8091")   # once, at start-up
    ...
    seata.shutdown()                                                # or let atexit do it

The runtime owns a :class:`~pyseata.rpc.loop_thread.LoopThread` (one event loop on a daemon thread),
the :class:`~pyseata.rpc.client.RpcClient` living on it, and the process's
:class:`~pyseata.client.rm.ResourceManager` (``runtime.rm``), which registers the declared
resources (TCC actions, data sources) with the TC and answers its phase-two requests. All TC work is written once, as
coroutines, and runs on that loop:

* synchronous callers block on it with :meth:`ClientRuntime.run` (any number of threads at once);
* asyncio callers ``await`` :meth:`ClientRuntime.arun`: on another loop (the usual case: the
  application's own) the coroutine is handed over with ``run_coroutine_threadsafe`` and awaited
  through ``asyncio.wrap_future``, so the caller's loop never blocks; on the runtime's own loop it
  is simply awaited.

An application's loop can come and go (``asyncio.run`` in tests, several loops in several
threads): the connections do not belong to any of them, so they survive all of them.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from pyseata.client.config import ClientConfig, load_config
from pyseata.client.errors import ClientNotStartedError
from pyseata.client.rm import ResourceManager
from pyseata.rpc.client import RpcClient
from pyseata.rpc.loop_thread import LoopThread

__all__ = ["ClientRuntime", "ainit", "ashutdown", "get_resource_manager", "get_runtime", "init", "shutdown"]

log = logging.getLogger("pyseata.client")

T = TypeVar("T")


class ClientRuntime:
    """The TC connections of this process and the loop they run on."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.loop_thread = LoopThread(name=f"pyseata-client-{config.application_id}")
        self.client = RpcClient(config.transport())
        self.rm = ResourceManager(self)
        self._started = False

    def start(self) -> None:
        """Starts the loop and connects (one attempt per TC; reconnects go on in the background)."""
        if self._started:
            raise RuntimeError("ClientRuntime.start() was already called")
        self._started = True
        self.loop_thread.start()
        try:
            # Resources first: the RM connections are opened (and registered) with them at start.
            self.loop_thread.run(self.rm.attach())
            self.loop_thread.run(self.client.start())
        except BaseException:
            self.rm.close()
            self.loop_thread.stop()
            raise

    def close(self) -> None:
        """Closes the connections and ends the loop thread; idempotent."""
        if self.loop_thread.is_running:
            try:
                self.loop_thread.run(self.client.close())  # lets phase-two work in flight answer
            finally:
                self.rm.close()
                self.loop_thread.stop()

    @property
    def closed(self) -> bool:
        return self.client.closed or not self.loop_thread.is_running

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs ``coro`` on the runtime's loop and blocks until it is done (synchronous callers)."""
        if self.closed:
            coro.close()
            raise ClientNotStartedError("the pyseata client runtime is shut down; call pyseata.client.init()")
        return self.loop_thread.run(coro)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs ``coro`` on the runtime's loop and awaits it without blocking the caller's loop."""
        if self.closed:
            coro.close()
            raise ClientNotStartedError("the pyseata client runtime is shut down; call pyseata.client.init()")
        loop = self.loop_thread.loop
        if asyncio.get_running_loop() is loop:
            return await coro
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop closed between the check and now
            coro.close()
            raise ClientNotStartedError("the pyseata client runtime is shut down; call pyseata.client.init()") from None
        # Cancelling the awaiting task cancels the coroutine on the runtime loop too.
        return await asyncio.wrap_future(future)


# --- the process-wide runtime -------------------------------------------------------------------

_lock = threading.Lock()
_runtime: ClientRuntime | None = None
_atexit_registered = False


def init(config: ClientConfig | None = None, **settings: Any) -> ClientRuntime:
    """Starts the process's client runtime, from ``config`` or from :func:`load_config` (``settings``,
    ``PYSEATA_*`` variables, ``$PYSEATA_CONFIG_FILE``). Blocks until each TC was tried once."""
    global _runtime, _atexit_registered
    if config is not None and settings:
        raise TypeError("pass either a ClientConfig or settings for load_config(), not both")
    config = config if config is not None else load_config(**settings)
    with _lock:
        if _runtime is not None:
            raise RuntimeError("pyseata.client.init() was already called; call pyseata.client.shutdown() first")
        runtime = ClientRuntime(config)
        runtime.start()
        _runtime = runtime
        if not _atexit_registered:
            atexit.register(shutdown)  # close the connections in order rather than dropping them
            _atexit_registered = True
    log.info(
        "pyseata client %r started (group %s, TCs %s)",
        config.application_id,
        config.tx_service_group,
        ", ".join(str(a) for a in runtime.client.config.tc_addresses()),
    )
    return runtime


def get_runtime() -> ClientRuntime:
    """The runtime :func:`init` started; raises :class:`ClientNotStartedError` before that."""
    runtime = _runtime
    if runtime is None:
        raise ClientNotStartedError(
            "the pyseata client is not started: call pyseata.client.init(application_id=..., grouplist=...) first"
        )
    return runtime


def get_resource_manager() -> ResourceManager:
    """The resource manager of the runtime :func:`init` started."""
    return get_runtime().rm


def shutdown() -> None:
    """Closes the process's runtime (if any); :func:`init` may be called again afterwards."""
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()


async def ainit(config: ClientConfig | None = None, **settings: Any) -> ClientRuntime:
    """:func:`init` for asyncio programs: the blocking part runs in a worker thread."""
    return await asyncio.to_thread(init, config, **settings)


async def ashutdown() -> None:
    await asyncio.to_thread(shutdown)
