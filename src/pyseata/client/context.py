"""The current global transaction of this thread or task: Seata's ``RootContext`` on contextvars.

The XID (and the branch type, and the "global lock" flag) live in :class:`contextvars.ContextVar`
objects, which gives the right scoping for free:

* a new thread starts with no XID;
* an asyncio task starts with a *copy* of its creator's context: it sees the XID bound when it was
  created (``asyncio.TaskGroup`` children included), and nothing it binds leaks out to its parent
  or its siblings;
* a thread-pool worker does **not** see the submitter's context, and a binding a job forgets to
  undo stays on that worker for its next job. Submit through :class:`ContextExecutor` (or wrap the
  function with :func:`with_context`) so each job runs in a copy of the submitter's context::

      with bound(xid), ContextExecutor(ThreadPoolExecutor(4)) as pool:
          pool.submit(charge_card, order)       # sees xid; leaves nothing behind on the worker

Binding::

    token = bind(xid)          # Seata: RootContext.bind
    try:
        ...
    finally:
        unbind(token)          # restores exactly what was bound before

    with bound(xid):           # the same, as a block; bound(None) runs a block outside any XID
        ...

    held = suspend()           # propagation REQUIRES_NEW / NOT_SUPPORTED: put the XID aside
    ...
    resume(held)

For logs, :class:`XidLogFilter` puts the current XID on every record as ``record.xid``.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from pyseata.protocol.enums import BranchType

__all__ = [
    "ContextExecutor",
    "Suspended",
    "XidLogFilter",
    "bind",
    "bind_branch_type",
    "bound",
    "get_branch_type",
    "get_xid",
    "global_lock",
    "in_global_transaction",
    "requires_global_lock",
    "resume",
    "suspend",
    "unbind",
    "unbind_branch_type",
    "with_context",
]

P = ParamSpec("P")
R = TypeVar("R")

# Seata's RootContext keys, as the names of the variables (BEHAVIOUR.md 7.3).
_xid: contextvars.ContextVar[str | None] = contextvars.ContextVar("TX_XID", default=None)
_branch_type: contextvars.ContextVar[BranchType | None] = contextvars.ContextVar("TX_BRANCH_TYPE", default=None)
_global_lock: contextvars.ContextVar[bool] = contextvars.ContextVar("TX_LOCK", default=False)


# --- the XID ------------------------------------------------------------------------------------


def get_xid() -> str | None:
    """The XID of the global transaction this code runs in, or None."""
    return _xid.get()


def in_global_transaction() -> bool:
    return _xid.get() is not None


def bind(xid: str) -> contextvars.Token[str | None]:
    """Makes ``xid`` current; give the token to :func:`unbind` to restore what was there before."""
    if not isinstance(xid, str) or not xid:
        raise ValueError(f"an XID must be a non-empty string, not {xid!r}")
    return _xid.set(xid)


def unbind(token: contextvars.Token[str | None] | None = None) -> str | None:
    """Undoes a :func:`bind` and returns the XID that was current.

    With the token from :func:`bind`, restores the previous value exactly (an outer XID comes
    back); without one, simply leaves no XID bound (Seata's ``RootContext.unbind()``).
    """
    previous = _xid.get()
    if token is None:
        _xid.set(None)
    else:
        _xid.reset(token)
    return previous


@contextmanager
def bound(xid: str | None) -> Iterator[str | None]:
    """Runs the block with ``xid`` current (None: with no XID), restoring the previous one after,
    whatever happens inside. Handy where an XID arrives from outside (an HTTP header, a message)."""
    token = _xid.set(xid) if xid is None else bind(xid)
    try:
        yield xid
    finally:
        _xid.reset(token)


# --- branch type and global lock (used by the RM side) -----------------------------------------


def get_branch_type() -> BranchType | None:
    return _branch_type.get()


def bind_branch_type(branch_type: BranchType) -> contextvars.Token[BranchType | None]:
    return _branch_type.set(BranchType(branch_type))


def unbind_branch_type(token: contextvars.Token[BranchType | None]) -> None:
    _branch_type.reset(token)


def requires_global_lock() -> bool:
    """True inside :func:`global_lock`: local writes must check the TC's row locks (Seata's @GlobalLock)."""
    return _global_lock.get()


@contextmanager
def global_lock() -> Iterator[None]:
    token = _global_lock.set(True)
    try:
        yield
    finally:
        _global_lock.reset(token)


# --- suspend / resume -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suspended:
    """What :func:`suspend` put aside (Seata's SuspendedResourcesHolder)."""

    xid: str | None
    branch_type: BranchType | None


def suspend() -> Suspended:
    """Unbinds the XID and the branch type and returns them for :func:`resume`."""
    held = Suspended(_xid.get(), _branch_type.get())
    _xid.set(None)
    _branch_type.set(None)
    return held


def resume(held: Suspended) -> None:
    """Binds again what :func:`suspend` returned.

    Sets values rather than resetting tokens, so it also works when suspend and resume run in
    different contexts (a callback, another task), where a token could not be used.
    """
    _xid.set(held.xid)
    _branch_type.set(held.branch_type)


# --- carrying the context into other threads ---------------------------------------------------


def with_context(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to the caller's current context: each call runs in a fresh copy of it.

    A fresh copy per call, because one Context cannot be entered by two threads at once, and so
    that whatever a call binds is dropped when it returns.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


class ContextExecutor(Executor):
    """Wraps an executor so that every job runs in a copy of the submitting caller's context.

    The job sees the caller's XID; what it binds (or forgets to unbind) dies with the copy, so the
    next job on the same worker starts clean. Usable as a context manager like any executor; it
    shuts the wrapped one down.
    """

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        context = contextvars.copy_context()

        def job() -> R:
            return context.run(fn, *args, **kwargs)

        return self.inner.submit(job)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


# --- logging ----------------------------------------------------------------------------------


class XidLogFilter(logging.Filter):
    """Adds ``record.xid`` (the current XID, or ``"-"``) so a format can show it:

    ``handler.addFilter(XidLogFilter()); Formatter("%(asctime)s [%(xid)s] %(message)s")``
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "xid"):
            record.xid = _xid.get() or "-"
        return True
