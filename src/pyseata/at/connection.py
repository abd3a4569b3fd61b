"""What one AT connection remembers about its current local transaction.

Seata's ``ConnectionContext``: the XID the local transaction works for (or the global-lock flag
of :func:`pyseata.at.global_lock`), the undo items of every statement it ran, the images whose
rows need a global lock, and the savepoints between them, so that ``ROLLBACK TO SAVEPOINT``
forgets exactly the items recorded after that savepoint. Nothing here does I/O: the flows in
:mod:`pyseata.at.executor` read and fill it, the connection proxies own one each.

A statement that failed *after* the database ran it (an image that no longer matches what the
statement changed, say) leaves a change no undo item covers. The context is then *broken*: the
only ways out are a rollback, or a rollback to a savepoint taken before that statement. Commit
refuses, so such a change can never become durable without its undo log.

:class:`LockRetry` is Seata's lock-retry policy (``client.rm.lock.retryInterval`` 10 ms,
``retryTimes`` 30); :func:`lock_retry` overrides it for a block of code, as
``@GlobalTransactional(lockRetryInterval=..., lockRetryTimes=...)`` does.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyseata.at.errors import ATError
from pyseata.at.images import TableRecords
from pyseata.at.lockkeys import build_lock_key
from pyseata.at.undo import SQLUndoLog

__all__ = [
    "ConnectionContext",
    "LockRetry",
    "Savepoint",
    "SavepointCommand",
    "TransactionBrokenError",
    "current_lock_retry",
    "lock_retry",
    "savepoint_command",
]


@dataclass(frozen=True, slots=True)
class LockRetry:
    """How long a local transaction waits for global row locks: ``times`` more attempts after the
    first, ``interval`` seconds apart (Seata: 10 ms x 30)."""

    interval: float = 0.01
    times: int = 30

    def __post_init__(self) -> None:
        if self.interval < 0 or self.times < 0:
            raise ValueError(f"lock retry interval and times must be >= 0, not {self.interval}, {self.times}")

    @property
    def attempts(self) -> int:
        return self.times + 1


_lock_retry: contextvars.ContextVar[LockRetry | None] = contextvars.ContextVar("pyseata_at_lock_retry", default=None)


def current_lock_retry(default: LockRetry) -> LockRetry:
    """The policy :func:`lock_retry` set for this block of code, else ``default`` (the data source's)."""
    policy = _lock_retry.get()
    return default if policy is None else policy


@contextmanager
def lock_retry(interval: float = 0.01, times: int = 30) -> Iterator[LockRetry]:
    """Global-lock waits in this block use ``interval`` and ``times`` (Seata's per-transaction
    ``lockRetryInterval`` / ``lockRetryTimes``)."""
    policy = LockRetry(interval, times)
    token = _lock_retry.set(policy)
    try:
        yield policy
    finally:
        _lock_retry.reset(token)


class TransactionBrokenError(ATError):
    """The local transaction holds a change no undo log covers; roll it back (commit refuses)."""


@dataclass(frozen=True, slots=True)
class Savepoint:
    name: str
    undo_mark: int
    lock_mark: int
    broken: str | None  # the context's state when the savepoint was taken


@dataclass
class ConnectionContext:
    """The current local transaction of one connection (empty between transactions)."""

    xid: str | None = None
    global_lock: bool = False
    undo_items: list[SQLUndoLog] = field(default_factory=list)
    lock_images: list[TableRecords] = field(default_factory=list)
    savepoints: list[Savepoint] = field(default_factory=list)
    broken: str | None = None
    auto_increment_step: int | None = None  # MySQL @@auto_increment_increment; per connection, kept

    # --- binding ----------------------------------------------------------------------------------

    def bind(self, xid: str | None, global_lock: bool) -> None:
        """Ties the local transaction to ``xid`` (or the global-lock mode) at its first covered statement.

        One local transaction belongs to one global transaction: its undo log and its branch name
        one XID, so a statement under another XID is refused until the transaction ends.
        """
        if xid is not None and self.xid is not None and xid != self.xid:
            raise ATError(f"this local transaction works for global transaction {self.xid}, but a statement "
                          f"runs under {xid}; commit or roll back the local transaction first")
        if xid is not None:
            self.xid = xid
        self.global_lock = self.global_lock or global_lock

    @property
    def active(self) -> bool:
        """Whether commit has anything to do beyond the database's own commit."""
        return bool(self.xid or self.lock_images or self.broken or self.global_lock)

    # --- recording --------------------------------------------------------------------------------

    def add(self, item: SQLUndoLog | None, lock_image: TableRecords | None) -> None:
        if item is not None:
            self.undo_items.append(item)
        if lock_image is not None and lock_image.rows:
            self.lock_images.append(lock_image)

    def lock_key(self) -> str:
        return build_lock_key(self.lock_images)

    def break_(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason

    def reset(self) -> None:
        """Forget the local transaction (after commit or rollback)."""
        self.xid = None
        self.global_lock = False
        self.undo_items.clear()
        self.lock_images.clear()
        self.savepoints.clear()
        self.broken = None

    # --- savepoints -------------------------------------------------------------------------------

    def savepoint(self, name: str) -> None:
        # A name used again moves the savepoint (SQL: the newer one hides the older until released).
        self.savepoints.append(Savepoint(name, len(self.undo_items), len(self.lock_images), self.broken))

    def rollback_to(self, name: str) -> None:
        """Forgets what was recorded after savepoint ``name``; the savepoint itself stays."""
        at = self._find(name)
        if at is None:
            return  # not ours (taken before the first covered statement): nothing recorded after it here
        point = self.savepoints[at]
        del self.undo_items[point.undo_mark :]
        del self.lock_images[point.lock_mark :]
        del self.savepoints[at + 1 :]
        self.broken = point.broken

    def release(self, name: str) -> None:
        at = self._find(name)
        if at is not None:
            del self.savepoints[at:]

    def _find(self, name: str) -> int | None:
        for i in range(len(self.savepoints) - 1, -1, -1):
            if self.savepoints[i].name == name:
                return i
        return None

    def apply(self, command: SavepointCommand) -> None:
        _SAVEPOINT_ACTIONS[command.action](self, command.name)


# --- savepoint statements ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SavepointCommand:
    action: str  # "savepoint", "rollback_to", "release"
    name: str


_SAVEPOINT_SQL = re.compile(
    r"""^\s*(?:
        (?P<savepoint>SAVEPOINT)
      | (?P<rollback_to>ROLLBACK(?:\s+(?:WORK|TRANSACTION))?\s+TO(?:\s+SAVEPOINT)?)
      | (?P<release>RELEASE(?:\s+SAVEPOINT)?)
    )\s+(?P<name>"(?:[^"]|"")+"|`(?:[^`]|``)+`|\[[^\]]+\]|[^\s;]+)\s*;?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_SAVEPOINT_ACTIONS = {
    "savepoint": ConnectionContext.savepoint,
    "rollback_to": ConnectionContext.rollback_to,
    "release": ConnectionContext.release,
}


def savepoint_command(sql: str) -> SavepointCommand | None:
    """The savepoint statement ``sql`` is (SAVEPOINT, ROLLBACK TO, RELEASE), or None."""
    m = _SAVEPOINT_SQL.match(sql)
    if m is None:
        return None
    action = next(a for a in _SAVEPOINT_ACTIONS if m.group(a) is not None)
    name = m.group("name")
    if name[0] in "\"`[":
        name = name[1:-1]
    return SavepointCommand(action, name)
