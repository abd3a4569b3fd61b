"""The contract every session store keeps: one async interface, each operation atomic.

A store holds what Seata keeps in ``global_table``, ``branch_table``, ``lock_table`` and
``distributed_lock`` (BEHAVIOUR.md 2.2-2.5). The coordinator never reads a record, decides and
writes it back in two calls where a race matters: every decision that must not interleave with
another caller (compare-and-set of a global status, "global in Begin + row locks free + insert
branch") is one call here, and the store makes it atomic. ``tests/store/test_compliance.py``
is the executable form of this contract; a new store is done when it passes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from enum import Enum
from types import TracebackType
from typing import ClassVar, Final, Literal, Self, TypeAlias

from pyseata.coordinator.lockkeys import RowKey, normalize_row_keys
from pyseata.coordinator.model import BranchTransaction, GlobalTransaction, RowLock
from pyseata.errors import PyseataError
from pyseata.protocol.enums import BranchStatus, GlobalStatus

__all__ = [
    "FREE_TASK_LOCK_VALUE",
    "KEEP",
    "SEEDED_TASK_LOCKS",
    "DuplicateKeyError",
    "ExpectedStatus",
    "KeepType",
    "LockChange",
    "MicroClock",
    "RegisterOutcome",
    "SessionStore",
    "StoreClosedError",
    "StoreError",
    "StoreSchemaError",
    "check_lock_flags",
    "expected_statuses",
]


# --- errors -----------------------------------------------------------------------------------


class StoreError(PyseataError):
    """The session store failed; the message says which operation and why."""


class StoreClosedError(StoreError):
    """An operation was called on a store after ``close()``."""


class DuplicateKeyError(StoreError):
    """An insert would reuse a primary key (an xid or a branch id), which ids never should."""


class StoreSchemaError(StoreError):
    """The database holds tables this version cannot use; nothing was changed."""


# --- values -----------------------------------------------------------------------------------


class RegisterOutcome(Enum):
    """What ``register_branch`` did. Anything but OK means nothing was written."""

    OK = "ok"
    GLOBAL_NOT_FOUND = "global-not-found"
    GLOBAL_NOT_ACTIVE = "global-not-active"
    LOCK_CONFLICT = "lock-conflict"
    LOCK_CONFLICT_FAIL_FAST = "lock-conflict-fail-fast"


class KeepType(Enum):
    """Type of :data:`KEEP`, the "leave this column as it is" argument value."""

    KEEP = "keep"


KEEP: Final = KeepType.KEEP

ExpectedStatus = GlobalStatus | frozenset[GlobalStatus] | None

#: What a successful ``change_global_status`` does to the xid's row locks.
LockChange: TypeAlias = Literal["keep", "release", "mark"]

# distributed_lock rows Seata's scripts insert up front; other task keys appear on first use.
SEEDED_TASK_LOCKS: Final = ("AsyncCommitting", "RetryCommitting", "RetryRollbacking", "TxTimeoutCheck")
# The lock_value of a free task lock, as Seata writes it.
FREE_TASK_LOCK_VALUE: Final = " "


def expected_statuses(expected: ExpectedStatus) -> frozenset[GlobalStatus] | None:
    """``expected`` as a set (None: any status will do)."""
    if expected is None or isinstance(expected, frozenset):
        return expected
    return frozenset((expected,))


def check_lock_flags(release_locks: bool, mark_locks_rollbacking: bool) -> None:
    """Refuse asking ``change_global_status`` to both delete and mark the same locks."""
    if release_locks and mark_locks_rollbacking:
        raise ValueError("release_locks and mark_locks_rollbacking exclude each other")


class MicroClock:
    """Epoch microseconds that strictly increase across calls, even if the wall clock steps back.

    Stores stamp ``gmt_create``/``gmt_modified`` with it, so ordering by those columns is exactly
    the order in which the store applied the writes (branch registration order, recovery scans).
    One instance per writing thread: it takes no lock.
    """

    __slots__ = ("_last",)

    def __init__(self, floor: int = 0) -> None:
        self._last = floor

    def __call__(self) -> int:
        now = time.time_ns() // 1000
        if now <= self._last:
            now = self._last + 1
        self._last = now
        return now


# --- the interface ----------------------------------------------------------------------------


class SessionStore(ABC):
    """The TC's persistent state behind one async interface. Every method is atomic.

    Where a method first checks or converts its arguments the same way in every store
    (``change_global_status``, ``register_branch``), it does so here and a store implements the
    underscored method it then calls."""

    #: Whether acknowledged writes survive a crash of the process (and a reopen of the URL).
    durable: ClassVar[bool] = False

    # globals

    @abstractmethod
    async def insert_global(self, g: GlobalTransaction) -> None:
        """Store a new global transaction, stamping gmt_create and gmt_modified.

        Raises DuplicateKeyError when the xid exists.
        """

    @abstractmethod
    async def get_global(self, xid: str) -> GlobalTransaction | None:
        """The global transaction, or None."""

    async def change_global_status(
        self,
        xid: str,
        new: GlobalStatus,
        *,
        expected: ExpectedStatus = None,
        release_locks: bool = False,
        mark_locks_rollbacking: bool = False,
    ) -> bool:
        """Compare-and-set the status; False (and nothing written) when the row is missing or its
        status is not ``expected`` (one status or a set; None accepts any).

        On success, in the same atomic step: ``release_locks`` deletes every row lock of the xid
        (the commit decision); ``mark_locks_rollbacking`` sets them to status 1 (rollback start).
        """
        check_lock_flags(release_locks, mark_locks_rollbacking)
        locks: LockChange = "release" if release_locks else "mark" if mark_locks_rollbacking else "keep"
        return await self._set_global_status(xid, new, expected, locks)

    @abstractmethod
    async def _set_global_status(
        self, xid: str, new: GlobalStatus, expected: ExpectedStatus, locks: LockChange
    ) -> bool:
        """:meth:`change_global_status`, its lock flags checked and made one value."""

    @abstractmethod
    async def remove_global(self, xid: str) -> None:
        """Delete the global, its branches and its row locks (a finished transaction's end)."""

    @abstractmethod
    async def find_globals(
        self, statuses: Collection[GlobalStatus], *, limit: int
    ) -> list[GlobalTransaction]:
        """Up to ``limit`` globals in any of ``statuses``, least recently modified first."""

    @abstractmethod
    async def find_timed_out(self, now_ms: int, *, limit: int) -> list[GlobalTransaction]:
        """Up to ``limit`` globals in Begin with ``begin_time + timeout < now_ms``, earliest
        deadline first."""

    @abstractmethod
    async def count_globals(self) -> int:
        """How many global transactions the store holds."""

    # branches

    async def register_branch(
        self,
        branch: BranchTransaction,
        row_keys: Sequence[str | RowKey] = (),
        *,
        skip_check: bool = False,
        fail_fast_on_rollbacking: bool = False,
    ) -> RegisterOutcome:
        """In one atomic step: check the global is in Begin, take the branch's row locks, insert
        the branch (stamping its times). Anything but OK writes nothing.

        Locks are re-entrant per xid: a key the same xid holds already is skipped and keeps its
        original branch. A key held by another xid is LOCK_CONFLICT, or LOCK_CONFLICT_FAIL_FAST
        when ``fail_fast_on_rollbacking`` and any conflicting row is rolling back (status 1).
        With ``skip_check`` the store does no pre-check and relies on the row key's uniqueness,
        as Seata does: any existing row, even the same xid's, is LOCK_CONFLICT, never fail-fast.
        Raises DuplicateKeyError when the branch id exists.
        """
        keys = normalize_row_keys(row_keys)  # malformed keys fail here, before anything is done
        return await self._register_branch_keys(branch, keys, skip_check, fail_fast_on_rollbacking)

    @abstractmethod
    async def _register_branch_keys(
        self, branch: BranchTransaction, keys: list[RowKey], skip_check: bool, fail_fast: bool
    ) -> RegisterOutcome:
        """:meth:`register_branch`, its row keys parsed and without duplicates."""

    @abstractmethod
    async def get_branches(self, xid: str) -> list[BranchTransaction]:
        """The branches of ``xid`` in registration order (gmt_create, then branch_id)."""

    @abstractmethod
    async def update_branch(
        self,
        xid: str,
        branch_id: int,
        status: BranchStatus,
        application_data: str | Literal[KeepType.KEEP] | None = KEEP,
    ) -> bool:
        """Set the branch status (and application data unless KEEP); False when it is missing."""

    @abstractmethod
    async def remove_branch(self, xid: str, branch_id: int, *, release_locks: bool = True) -> None:
        """Delete the branch (phase two done for it) and, unless told otherwise, its row locks."""

    # row locks

    @abstractmethod
    async def release_global_locks(self, xid: str) -> None:
        """Delete every row lock of ``xid``."""

    @abstractmethod
    async def is_lockable(self, xid: str, row_keys: Sequence[str | RowKey]) -> bool:
        """True when no key is held by another xid. Only checks; locks nothing."""

    @abstractmethod
    async def get_locks(self, xid: str) -> list[RowLock]:
        """The row locks of ``xid``, ordered by row key."""

    @abstractmethod
    async def count_locks(self) -> int:
        """How many row locks the store holds (leak checks)."""

    # distributed task locks

    @abstractmethod
    async def acquire_task_lock(self, key: str, owner: str, ttl_ms: int, now_ms: int) -> bool:
        """Take the task lock ``key`` until ``now_ms + ttl_ms`` when it is free, expired, or
        already ``owner``'s (which extends it). False when another owner holds it unexpired."""

    @abstractmethod
    async def release_task_lock(self, key: str, owner: str) -> None:
        """Free the task lock if ``owner`` holds it; otherwise do nothing."""

    # lifecycle

    @abstractmethod
    async def close(self) -> None:
        """Finish queued work and release resources. Idempotent; later calls raise
        StoreClosedError."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
