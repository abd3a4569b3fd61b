"""``memory://``: the session store in plain dicts, for tests and benchmarks. Not durable.

Every operation runs to completion without an ``await`` inside, so on one event loop no two
operations interleave: that is what makes each of them atomic. Secondary indexes keep the hot
paths (register, status change, lock release, recovery scans) proportional to the data they
touch rather than to the whole store.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import replace
from itertools import islice
from operator import attrgetter
from typing import Literal

from pyseata.coordinator.lockkeys import RowKey, normalize_row_keys
from pyseata.coordinator.model import BranchTransaction, GlobalTransaction, LockStatus, RowLock
from pyseata.coordinator.store.base import (
    FREE_TASK_LOCK_VALUE,
    KEEP,
    SEEDED_TASK_LOCKS,
    DuplicateKeyError,
    ExpectedStatus,
    KeepType,
    LockChange,
    MicroClock,
    RegisterOutcome,
    SessionStore,
    StoreClosedError,
    expected_statuses,
)
from pyseata.protocol.enums import BranchStatus, GlobalStatus

__all__ = ["MemoryStore"]

_by_modified = attrgetter("gmt_modified")
_by_deadline = attrgetter("deadline")


class MemoryStore(SessionStore):
    """Dict-backed :class:`SessionStore`; safe for any number of tasks on one event loop."""

    durable = False

    def __init__(self) -> None:
        self._clock = MicroClock()
        self._closed = False
        self._globals: dict[str, GlobalTransaction] = {}
        # xids per status in gmt_modified order: every status change re-stamps gmt_modified and
        # re-inserts at the end, so a recovery scan is a merge of sorted runs, never a sort.
        self._by_status: dict[GlobalStatus, dict[str, None]] = {s: {} for s in GlobalStatus}
        # branches per xid in insertion (= registration) order
        self._branches: dict[str, dict[int, BranchTransaction]] = {}
        self._branch_xid: dict[int, str] = {}  # branch_id is the table's primary key
        self._locks: dict[str, RowLock] = {}
        self._xid_locks: dict[str, dict[str, None]] = {}
        self._task_locks: dict[str, tuple[str, int]] = {
            key: (FREE_TASK_LOCK_VALUE, 0) for key in SEEDED_TASK_LOCKS
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._globals)} globals, {len(self._locks)} locks"
        return f"<MemoryStore {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the memory:// session store is closed")

    # globals

    async def insert_global(self, g: GlobalTransaction) -> None:
        self._check_open()
        if g.xid in self._globals:
            raise DuplicateKeyError(f"global transaction {g.xid!r} exists already")
        stamp = self._clock()
        self._globals[g.xid] = replace(g, gmt_create=stamp, gmt_modified=stamp)
        self._by_status[g.status][g.xid] = None

    async def get_global(self, xid: str) -> GlobalTransaction | None:
        self._check_open()
        return self._globals.get(xid)

    async def _set_global_status(
        self, xid: str, new: GlobalStatus, expected: ExpectedStatus, locks: LockChange
    ) -> bool:
        self._check_open()
        g = self._globals.get(xid)
        allowed = expected_statuses(expected)
        if g is None or (allowed is not None and g.status not in allowed):
            return False
        stamp = self._clock()
        del self._by_status[g.status][xid]
        self._by_status[new][xid] = None
        self._globals[xid] = replace(g, status=new, gmt_modified=stamp)
        if locks == "release":
            self._drop_locks(xid)
        elif locks == "mark":
            held = self._locks
            for key in self._xid_locks.get(xid, ()):
                held[key] = replace(held[key], status=LockStatus.Rollbacking, gmt_modified=stamp)
        return True

    async def remove_global(self, xid: str) -> None:
        self._check_open()
        g = self._globals.pop(xid, None)
        if g is not None:
            del self._by_status[g.status][xid]
        for branch_id in self._branches.pop(xid, {}):
            del self._branch_xid[branch_id]
        self._drop_locks(xid)

    async def find_globals(
        self, statuses: Collection[GlobalStatus], *, limit: int
    ) -> list[GlobalTransaction]:
        self._check_open()
        runs = [map(self._globals.__getitem__, self._by_status[s]) for s in set(statuses)]
        return list(islice(heapq.merge(*runs, key=_by_modified), max(limit, 0)))

    async def find_timed_out(self, now_ms: int, *, limit: int) -> list[GlobalTransaction]:
        self._check_open()
        begun = map(self._globals.__getitem__, self._by_status[GlobalStatus.Begin])
        expired = [g for g in begun if g.begin_time + g.timeout < now_ms]
        return heapq.nsmallest(max(limit, 0), expired, key=_by_deadline)

    async def count_globals(self) -> int:
        self._check_open()
        return len(self._globals)

    # branches

    async def _register_branch_keys(
        self, branch: BranchTransaction, keys: list[RowKey], skip_check: bool, fail_fast: bool
    ) -> RegisterOutcome:
        self._check_open()
        xid = branch.xid
        g = self._globals.get(xid)
        if g is None:
            return RegisterOutcome.GLOBAL_NOT_FOUND
        if g.status is not GlobalStatus.Begin:
            return RegisterOutcome.GLOBAL_NOT_ACTIVE
        if skip_check:
            to_take = keys
            if any(k.key in self._locks for k in keys):
                return RegisterOutcome.LOCK_CONFLICT
        else:
            to_take, outcome = self._check_locks(xid, keys, fail_fast)
            if outcome is not RegisterOutcome.OK:
                return outcome
        if branch.branch_id in self._branch_xid:
            raise DuplicateKeyError(f"branch {branch.branch_id} exists already")

        stamp = self._clock()
        held = self._xid_locks.setdefault(xid, {})
        for k in to_take:
            row_key = k.key
            held[row_key] = None
            self._locks[row_key] = RowLock(
                row_key, xid, branch.transaction_id, branch.branch_id, k.resource_id, k.table_name,
                k.pk, LockStatus.Locked, stamp, stamp,
            )
        self._branches.setdefault(xid, {})[branch.branch_id] = replace(
            branch, gmt_create=stamp, gmt_modified=stamp
        )
        self._branch_xid[branch.branch_id] = xid
        return RegisterOutcome.OK

    def _check_locks(
        self, xid: str, keys: list[RowKey], fail_fast: bool
    ) -> tuple[list[RowKey], RegisterOutcome]:
        """The keys still to take, or the conflict that stops the registration."""
        to_take: list[RowKey] = []
        conflict = rollbacking = False
        for k in keys:
            lock = self._locks.get(k.key)
            if lock is None:
                to_take.append(k)
            elif lock.xid != xid:
                conflict = True
                rollbacking = rollbacking or lock.status is LockStatus.Rollbacking
        if not conflict:
            return to_take, RegisterOutcome.OK
        if fail_fast and rollbacking:
            return [], RegisterOutcome.LOCK_CONFLICT_FAIL_FAST
        return [], RegisterOutcome.LOCK_CONFLICT

    async def get_branches(self, xid: str) -> list[BranchTransaction]:
        self._check_open()
        return list(self._branches.get(xid, {}).values())

    async def update_branch(
        self,
        xid: str,
        branch_id: int,
        status: BranchStatus,
        application_data: str | Literal[KeepType.KEEP] | None = KEEP,
    ) -> bool:
        self._check_open()
        branches = self._branches.get(xid)
        b = branches.get(branch_id) if branches else None
        if branches is None or b is None:
            return False
        data = b.application_data if application_data is KEEP else application_data
        branches[branch_id] = replace(b, status=status, application_data=data, gmt_modified=self._clock())
        return True

    async def remove_branch(self, xid: str, branch_id: int, *, release_locks: bool = True) -> None:
        self._check_open()
        branches = self._branches.get(xid)
        if branches is not None and branches.pop(branch_id, None) is not None:
            del self._branch_xid[branch_id]
        if not release_locks:
            return
        held = self._xid_locks.get(xid)
        if held:
            mine = [key for key in held if self._locks[key].branch_id == branch_id]
            for key in mine:
                del held[key]
                del self._locks[key]

    # row locks

    def _drop_locks(self, xid: str) -> None:
        for key in self._xid_locks.pop(xid, ()):
            del self._locks[key]

    async def release_global_locks(self, xid: str) -> None:
        self._check_open()
        self._drop_locks(xid)

    async def is_lockable(self, xid: str, row_keys: Sequence[str | RowKey]) -> bool:
        self._check_open()
        for k in normalize_row_keys(row_keys):
            lock = self._locks.get(k.key)
            if lock is not None and lock.xid != xid:
                return False
        return True

    async def get_locks(self, xid: str) -> list[RowLock]:
        self._check_open()
        return [self._locks[key] for key in sorted(self._xid_locks.get(xid, ()))]

    async def count_locks(self) -> int:
        self._check_open()
        return len(self._locks)

    # distributed task locks

    async def acquire_task_lock(self, key: str, owner: str, ttl_ms: int, now_ms: int) -> bool:
        self._check_open()
        value, expire = self._task_locks.get(key, (FREE_TASK_LOCK_VALUE, 0))
        if value not in (owner, FREE_TASK_LOCK_VALUE) and expire >= now_ms:
            return False
        self._task_locks[key] = (owner, now_ms + ttl_ms)
        return True

    async def release_task_lock(self, key: str, owner: str) -> None:
        self._check_open()
        if self._task_locks.get(key, (FREE_TASK_LOCK_VALUE, 0))[0] == owner:
            self._task_locks[key] = (FREE_TASK_LOCK_VALUE, 0)

    async def close(self) -> None:
        self._closed = True
