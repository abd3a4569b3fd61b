"""``global_lock``: local transactions that respect AT global locks without joining a global transaction.

Seata's ``@GlobalLock``. A local transaction that writes rows an unfinished global transaction
changed in phase one would be overwritten by that transaction's rollback, or would make the
rollback stop as a dirty write. Inside :func:`global_lock`, on an AT connection:

- INSERT / UPDATE / DELETE build their images as in a global transaction (no undo log is
  written), and **commit first asks the TC** whether a global transaction holds any of the rows;
  if so it waits and asks again (:class:`~pyseata.at.connection.LockRetry`), and finally rolls
  back and raises :class:`~pyseata.at.executor.LockWaitTimeoutError`. On an autocommit
  connection each statement is its own transaction, retried whole after a local rollback.
- ``SELECT ... FOR UPDATE`` locks its rows, then asks the TC, and on a conflict releases them
  (rollback to a savepoint) and tries again: it reads only rows no global transaction holds.

::

    @global_lock
    def adjust(conn, account, amount): ...

    with global_lock(retry_interval=0.05, retry_times=100):
        ...

    async with global_lock(): ...
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from pyseata.at.connection import lock_retry
from pyseata.client import context

__all__ = ["GlobalLock", "global_lock"]

P = ParamSpec("P")
R = TypeVar("R")


class GlobalLock:
    """The block (or each call of the decorated function) runs under the global-lock check."""

    def __init__(self, retry_interval: float | None = None, retry_times: int | None = None) -> None:
        self.retry_interval = retry_interval
        self.retry_times = retry_times
        self._stack: list[contextlib.ExitStack] = []

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            stack.enter_context(context.global_lock())
            if self.retry_interval is not None or self.retry_times is not None:
                stack.enter_context(lock_retry(0.01 if self.retry_interval is None else self.retry_interval,
                                               30 if self.retry_times is None else self.retry_times))
            yield

    def __enter__(self) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(self._scope())
        self._stack.append(stack)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.pop().__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def arun(*args: Any, **kwargs: Any) -> Any:
                with self._scope():
                    return await fn(*args, **kwargs)

            return arun  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._scope():
                return fn(*args, **kwargs)

        return run


@overload
def global_lock(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def global_lock(*, retry_interval: float | None = None, retry_times: int | None = None) -> GlobalLock: ...


def global_lock(fn: Callable[P, R] | None = None, /, *, retry_interval: float | None = None,
                retry_times: int | None = None) -> Callable[P, R] | GlobalLock:
    """As a decorator (``@global_lock`` or ``@global_lock(retry_times=...)``) or a block
    (``with global_lock():``): see the module doc."""
    guard = GlobalLock(retry_interval, retry_times)
    return guard if fn is None else guard(fn)
