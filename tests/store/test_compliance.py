"""The session-store contract (``pyseata.coordinator.store.base``), run against every store.

Each test gets an empty store from the ``store`` fixture (see conftest.py). Tests that need a
durable store skip the others. No mocks: real files, real processes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pyseata.coordinator.lockkeys import RowKey
from pyseata.coordinator.model import BranchTransaction, GlobalTransaction, LockStatus
from pyseata.coordinator.store import (
    KEEP,
    DuplicateKeyError,
    RegisterOutcome,
    SessionStore,
    StoreClosedError,
    StoreSchemaError,
    open_store,
)
from pyseata.errors import ConfigError, TransactionError
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus

S = GlobalStatus
OK = RegisterOutcome.OK
RES = "jdbc:mysql://db:3306/shop"
_ids = itertools.count(1_000)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_global(xid: str, status: GlobalStatus = S.Begin, *, begin_time: int | None = None,
               timeout: int = 60_000) -> GlobalTransaction:
    return GlobalTransaction(
        xid=xid, transaction_id=next(_ids), status=status, application_id="shop",
        transaction_service_group="default_tx_group", transaction_name=f"tx-{xid}", timeout=timeout,
        begin_time=now_ms() if begin_time is None else begin_time, application_data='{"a":1}',
    )


def new_branch(xid: str, branch_id: int | None = None, branch_type: BranchType = BranchType.AT,
               resource_id: str = RES) -> BranchTransaction:
    return BranchTransaction(
        branch_id=next(_ids) if branch_id is None else branch_id, xid=xid, transaction_id=7,
        resource_id=resource_id, branch_type=branch_type, resource_group_id="grp",
        client_id="shop:10.0.0.1:5000", application_data=None,
    )


def keys(*pks: object, table: str = "t_stock", resource_id: str = RES) -> list[str]:
    return [f"{resource_id}^^^{table}^^^{pk}" for pk in pks]


async def begin(store: SessionStore, xid: str, status: GlobalStatus = S.Begin) -> GlobalTransaction:
    g = new_global(xid, status)
    await store.insert_global(g)
    return g


async def holders(store: SessionStore, *xids: str) -> dict[str, str]:
    """row_key -> holding xid, over the locks of ``xids``."""
    return {lock.row_key: lock.xid for xid in xids for lock in await store.get_locks(xid)}


# --- globals ----------------------------------------------------------------------------------


async def test_insert_and_get_global(store: SessionStore) -> None:
    g = new_global("x1")
    before = time.time_ns() // 1000
    await store.insert_global(g)
    got = await store.get_global("x1")
    assert got is not None
    assert got.gmt_create == got.gmt_modified >= before
    assert got == replace(g, gmt_create=got.gmt_create, gmt_modified=got.gmt_modified)
    for field in ("xid", "transaction_id", "status", "application_id", "transaction_service_group",
                  "transaction_name", "timeout", "begin_time", "application_data"):
        assert getattr(got, field) == getattr(g, field), field
    assert isinstance(got.status, GlobalStatus)
    assert await store.get_global("missing") is None
    assert await store.count_globals() == 1


async def test_insert_global_keeps_nulls(store: SessionStore) -> None:
    g = GlobalTransaction("bare", 1, S.Begin)
    await store.insert_global(g)
    got = await store.get_global("bare")
    assert got is not None
    assert (got.application_id, got.transaction_name, got.application_data) == (None, None, None)


async def test_duplicate_xid_is_refused_and_changes_nothing(store: SessionStore) -> None:
    await begin(store, "x1")
    with pytest.raises(DuplicateKeyError):
        await store.insert_global(new_global("x1", S.Rollbacking))
    got = await store.get_global("x1")
    assert got is not None and got.status is S.Begin
    assert await store.count_globals() == 1


async def test_remove_global_deletes_its_branches_and_locks_only(store: SessionStore) -> None:
    for xid in ("x1", "x2"):
        await begin(store, xid)
    assert await store.register_branch(new_branch("x1"), keys(1, 2)) is OK
    assert await store.register_branch(new_branch("x2"), keys(3)) is OK
    await store.remove_global("x1")
    assert await store.get_global("x1") is None
    assert await store.get_branches("x1") == []
    assert await store.get_locks("x1") == []
    assert len(await store.get_branches("x2")) == 1
    assert await store.count_locks() == 1
    await store.remove_global("never-existed")  # not an error


# --- compare-and-set of the global status -----------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "applies"),
    [
        (None, True),
        (S.Begin, True),
        (S.Committing, False),
        (frozenset({S.Begin, S.Committing}), True),
        (frozenset({S.Rollbacking, S.Committing}), False),
        (frozenset(), False),
    ],
)
async def test_change_global_status_compare_and_set(
    store: SessionStore, expected: GlobalStatus | frozenset[GlobalStatus] | None, applies: bool
) -> None:
    await begin(store, "x1")
    old = await store.get_global("x1")
    assert old is not None
    assert await store.change_global_status("x1", S.Committing, expected=expected) is applies
    got = await store.get_global("x1")
    assert got is not None
    if applies:
        assert got.status is S.Committing
        assert got.gmt_modified > old.gmt_modified
        assert got.gmt_create == old.gmt_create
    else:
        assert got == old


async def test_change_status_of_missing_global_is_false(store: SessionStore) -> None:
    assert await store.change_global_status("missing", S.Committing) is False
    assert await store.change_global_status("missing", S.Committing, expected=S.Begin) is False
    assert await store.count_globals() == 0


async def test_commit_decision_releases_locks_atomically(store: SessionStore) -> None:
    await begin(store, "x1")
    await begin(store, "x2")
    assert await store.register_branch(new_branch("x1"), keys(1, 2)) is OK
    assert await store.register_branch(new_branch("x2"), keys(3)) is OK
    # a failed CAS must leave the locks alone
    assert not await store.change_global_status("x1", S.AsyncCommitting, expected=S.Rollbacking,
                                                release_locks=True)
    assert len(await store.get_locks("x1")) == 2
    assert await store.change_global_status("x1", S.AsyncCommitting, expected=S.Begin, release_locks=True)
    assert await store.get_locks("x1") == []
    assert len(await store.get_branches("x1")) == 1  # branches stay for phase two
    assert len(await store.get_locks("x2")) == 1


async def test_rollback_start_marks_locks_rollbacking(store: SessionStore) -> None:
    await begin(store, "x1")
    await begin(store, "x2")
    assert await store.register_branch(new_branch("x1"), keys(1, 2)) is OK
    assert await store.register_branch(new_branch("x2"), keys(3)) is OK
    assert not await store.change_global_status("x1", S.Rollbacking, expected=S.Committing,
                                                mark_locks_rollbacking=True)
    assert {lock.status for lock in await store.get_locks("x1")} == {LockStatus.Locked}
    assert await store.change_global_status("x1", S.Rollbacking, expected=S.Begin,
                                            mark_locks_rollbacking=True)
    locks = await store.get_locks("x1")
    assert [lock.status for lock in locks] == [LockStatus.Rollbacking] * 2
    assert all(isinstance(lock.status, LockStatus) for lock in locks)
    assert [lock.status for lock in await store.get_locks("x2")] == [LockStatus.Locked]


async def test_release_and_mark_together_is_refused(store: SessionStore) -> None:
    await begin(store, "x1")
    with pytest.raises(ValueError, match="exclude"):
        await store.change_global_status("x1", S.Rollbacking, release_locks=True, mark_locks_rollbacking=True)
    got = await store.get_global("x1")
    assert got is not None and got.status is S.Begin


# --- branch registration ----------------------------------------------------------------------


async def test_register_branch_takes_locks_and_stores_branch(store: SessionStore) -> None:
    await begin(store, "x1")
    b = new_branch("x1", 500)
    assert await store.register_branch(b, keys(1, 2)) is OK
    [got] = await store.get_branches("x1")
    assert got.gmt_create == got.gmt_modified > 0
    for field in ("branch_id", "xid", "transaction_id", "resource_group_id", "resource_id", "branch_type",
                  "status", "client_id", "application_data"):
        assert getattr(got, field) == getattr(b, field), field
    assert isinstance(got.branch_type, BranchType) and isinstance(got.status, BranchStatus)
    locks = await store.get_locks("x1")
    assert [(lk.row_key, lk.resource_id, lk.table_name, lk.pk) for lk in locks] == [
        (f"{RES}^^^t_stock^^^1", RES, "t_stock", "1"),
        (f"{RES}^^^t_stock^^^2", RES, "t_stock", "2"),
    ]
    assert {(lk.xid, lk.branch_id, lk.transaction_id, lk.status) for lk in locks} == {
        ("x1", 500, 7, LockStatus.Locked)
    }
    assert await store.count_locks() == 2


@pytest.mark.parametrize("branch_type", [BranchType.TCC, BranchType.SAGA, BranchType.XA])
async def test_register_non_at_branch_without_keys(store: SessionStore, branch_type: BranchType) -> None:
    await begin(store, "x1")
    assert await store.register_branch(new_branch("x1", branch_type=branch_type, resource_id="act")) is OK
    [got] = await store.get_branches("x1")
    assert got.branch_type is branch_type
    assert await store.count_locks() == 0


async def test_row_keys_as_strings_or_parsed_and_deduplicated(store: SessionStore) -> None:
    await begin(store, "x1")
    row_keys = [RowKey(RES, "t", "1"), f"{RES}^^^t^^^1", f"{RES}^^^t^^^2", RowKey(RES, "t", "2")]
    assert await store.register_branch(new_branch("x1"), row_keys) is OK
    assert [lk.pk for lk in await store.get_locks("x1")] == ["1", "2"]


async def test_malformed_row_key_fails_and_writes_nothing(store: SessionStore) -> None:
    await begin(store, "x1")
    with pytest.raises(TransactionError, match="malformed row key"):
        await store.register_branch(new_branch("x1"), [*keys(1), "no-separators"])
    assert await store.get_branches("x1") == []
    assert await store.count_locks() == 0


async def test_lock_conflict_writes_nothing(store: SessionStore) -> None:
    await begin(store, "x1")
    await begin(store, "x2")
    assert await store.register_branch(new_branch("x1"), keys(2)) is OK
    # key 1 is free, key 2 is not: the free one must not be taken either
    assert await store.register_branch(new_branch("x2"), keys(1, 2, 3)) is RegisterOutcome.LOCK_CONFLICT
    assert await store.get_branches("x2") == []
    assert await store.get_locks("x2") == []
    assert await store.count_locks() == 1


async def test_locks_are_reentrant_for_the_same_xid(store: SessionStore) -> None:
    await begin(store, "x1")
    assert await store.register_branch(new_branch("x1", 1), keys(1, 2)) is OK
    assert await store.register_branch(new_branch("x1", 2), keys(2, 3)) is OK
    owners = {lk.pk: lk.branch_id for lk in await store.get_locks("x1")}
    assert owners == {"1": 1, "2": 1, "3": 2}  # a re-entered key stays with its first branch
    assert [b.branch_id for b in await store.get_branches("x1")] == [1, 2]


@pytest.mark.parametrize(
    ("holder_rolling_back", "fail_fast", "outcome"),
    [
        (True, True, RegisterOutcome.LOCK_CONFLICT_FAIL_FAST),
        (True, False, RegisterOutcome.LOCK_CONFLICT),
        (False, True, RegisterOutcome.LOCK_CONFLICT),
    ],
)
async def test_fail_fast_on_rollbacking_holder(
    store: SessionStore, holder_rolling_back: bool, fail_fast: bool, outcome: RegisterOutcome
) -> None:
    await begin(store, "holder")
    await begin(store, "x2")
    assert await store.register_branch(new_branch("holder"), keys(1)) is OK
    if holder_rolling_back:
        assert await store.change_global_status("holder", S.Rollbacking, mark_locks_rollbacking=True)
    got = await store.register_branch(new_branch("x2"), keys(0, 1), fail_fast_on_rollbacking=fail_fast)
    assert got is outcome
    assert await store.get_branches("x2") == []
    assert await store.count_locks() == 1


async def test_fail_fast_when_any_conflicting_row_is_rolling_back(store: SessionStore) -> None:
    await begin(store, "a")
    await begin(store, "b")
    await begin(store, "x")
    assert await store.register_branch(new_branch("a"), keys(1)) is OK
    assert await store.register_branch(new_branch("b"), keys(2)) is OK
    assert await store.change_global_status("b", S.Rollbacking, mark_locks_rollbacking=True)
    got = await store.register_branch(new_branch("x"), keys(1, 2), fail_fast_on_rollbacking=True)
    assert got is RegisterOutcome.LOCK_CONFLICT_FAIL_FAST


async def test_skip_check_takes_free_keys(store: SessionStore) -> None:
    await begin(store, "x1")
    assert await store.register_branch(new_branch("x1"), keys(1, 2), skip_check=True) is OK
    assert len(await store.get_locks("x1")) == 2


async def test_skip_check_conflict_undoes_partial_inserts(store: SessionStore) -> None:
    await begin(store, "x1")
    await begin(store, "x2")
    assert await store.register_branch(new_branch("x1"), keys(9)) is OK
    assert await store.change_global_status("x1", S.Rollbacking, mark_locks_rollbacking=True)
    # free keys come first, so a store inserting in order has written some before the conflict;
    # skip_check never answers fail-fast (there is no pre-select to see the holder's status)
    got = await store.register_branch(new_branch("x2"), keys(1, 2, 9), skip_check=True,
                                      fail_fast_on_rollbacking=True)
    assert got is RegisterOutcome.LOCK_CONFLICT
    assert await store.get_locks("x2") == []
    assert await store.get_branches("x2") == []
    assert await store.count_locks() == 1


async def test_skip_check_treats_own_key_as_conflict(store: SessionStore) -> None:
    await begin(store, "x1")
    assert await store.register_branch(new_branch("x1", 1), keys(1)) is OK
    got = await store.register_branch(new_branch("x1", 2), keys(1), skip_check=True)
    assert got is RegisterOutcome.LOCK_CONFLICT
    assert [b.branch_id for b in await store.get_branches("x1")] == [1]


async def test_register_on_missing_global(store: SessionStore) -> None:
    got = await store.register_branch(new_branch("missing"), keys(1))
    assert got is RegisterOutcome.GLOBAL_NOT_FOUND
    assert await store.get_branches("missing") == []
    assert await store.count_locks() == 0


@pytest.mark.parametrize("status", [s for s in GlobalStatus if s is not S.Begin])
async def test_register_on_global_not_in_begin(store: SessionStore, status: GlobalStatus) -> None:
    await begin(store, "x1", status)
    got = await store.register_branch(new_branch("x1"), keys(1))
    assert got is RegisterOutcome.GLOBAL_NOT_ACTIVE
    assert await store.get_branches("x1") == []
    assert await store.count_locks() == 0


async def test_register_checks_global_before_locks(store: SessionStore) -> None:
    await begin(store, "x1")
    await begin(store, "x2", S.Committing)
    assert await store.register_branch(new_branch("x1"), keys(1)) is OK
    assert await store.register_branch(new_branch("x2"), keys(1)) is RegisterOutcome.GLOBAL_NOT_ACTIVE


async def test_duplicate_branch_id_is_refused_and_leaves_no_locks(store: SessionStore) -> None:
    await begin(store, "x1")
    await begin(store, "x2")
    assert await store.register_branch(new_branch("x1", 42), keys(1)) is OK
    with pytest.raises(DuplicateKeyError):
        await store.register_branch(new_branch("x2", 42), keys(2))
    assert await store.get_branches("x2") == []
    assert await store.get_locks("x2") == []


async def test_branches_come_in_registration_order(store: SessionStore) -> None:
    await begin(store, "x1")
    await begin(store, "x2")
    ids = [900, 5, 77, 300, 1]  # not sorted: order must come from registration, not from ids
    for branch_id in ids:
        assert await store.register_branch(new_branch("x1", branch_id)) is OK
        assert await store.register_branch(new_branch("x2", branch_id + 10_000)) is OK
    branches = await store.get_branches("x1")
    assert [b.branch_id for b in branches] == ids
    assert [b.gmt_create for b in branches] == sorted(b.gmt_create for b in branches)
    assert await store.get_branches("nothing") == []


# --- branch report and removal ----------------------------------------------------------------


async def test_update_branch(store: SessionStore) -> None:
    await begin(store, "x1")
    b = replace(new_branch("x1", 1), application_data="orig")
    assert await store.register_branch(b) is OK
    [before] = await store.get_branches("x1")

    assert await store.update_branch("x1", 1, BranchStatus.PhaseOne_Done)
    [got] = await store.get_branches("x1")
    assert (got.status, got.application_data) == (BranchStatus.PhaseOne_Done, "orig")
    assert got.gmt_modified > before.gmt_modified and got.gmt_create == before.gmt_create

    assert await store.update_branch("x1", 1, BranchStatus.PhaseOne_Failed, "new")
    [got] = await store.get_branches("x1")
    assert (got.status, got.application_data) == (BranchStatus.PhaseOne_Failed, "new")

    assert await store.update_branch("x1", 1, BranchStatus.PhaseOne_Failed, None)
    [got] = await store.get_branches("x1")
    assert got.application_data is None

    assert await store.update_branch("x1", 1, BranchStatus.PhaseOne_Done, KEEP)
    assert not await store.update_branch("x1", 2, BranchStatus.PhaseOne_Done)
    assert not await store.update_branch("other", 1, BranchStatus.PhaseOne_Done)


async def test_remove_branch_releases_only_its_locks(store: SessionStore) -> None:
    await begin(store, "x1")
    assert await store.register_branch(new_branch("x1", 1), keys(1, 2)) is OK
    assert await store.register_branch(new_branch("x1", 2), keys(2, 3)) is OK
    assert await store.register_branch(new_branch("x1", 3), keys(4)) is OK
    await store.remove_branch("x1", 2)
    assert [b.branch_id for b in await store.get_branches("x1")] == [1, 3]
    assert [lk.pk for lk in await store.get_locks("x1")] == ["1", "2", "4"]  # "2" belongs to branch 1
    await store.remove_branch("x1", 1, release_locks=False)
    assert [b.branch_id for b in await store.get_branches("x1")] == [3]
    assert [lk.pk for lk in await store.get_locks("x1")] == ["1", "2", "4"]
    await store.remove_branch("x1", 99)  # missing: not an error
    await store.remove_branch("other", 3)  # wrong xid: nothing happens
    assert [b.branch_id for b in await store.get_branches("x1")] == [3]


async def test_removed_branch_id_can_be_registered_again(store: SessionStore) -> None:
    await begin(store, "x1")
    assert await store.register_branch(new_branch("x1", 1), keys(1)) is OK
    await store.remove_branch("x1", 1)
    assert await store.register_branch(new_branch("x1", 1), keys(1)) is OK


# --- row locks --------------------------------------------------------------------------------


async def test_release_global_locks(store: SessionStore) -> None:
    await begin(store, "x1")
    await begin(store, "x2")
    assert await store.register_branch(new_branch("x1"), keys(1, 2)) is OK
    assert await store.register_branch(new_branch("x2"), keys(3)) is OK
    await store.release_global_locks("x1")
    assert await store.get_locks("x1") == []
    assert len(await store.get_branches("x1")) == 1
    assert await store.count_locks() == 1
    await begin(store, "x3")
    assert await store.register_branch(new_branch("x3"), keys(1, 2)) is OK  # the keys are free again


async def test_is_lockable_only_checks(store: SessionStore) -> None:
    await begin(store, "x1")
    assert await store.register_branch(new_branch("x1"), keys(1)) is OK
    assert await store.is_lockable("x2", keys(2, 3))
    assert await store.is_lockable("x1", keys(1, 2))  # own lock
    assert not await store.is_lockable("x2", keys(2, 1))
    assert await store.is_lockable("x2", [])
    assert await store.is_lockable("x2", [RowKey(RES, "t_stock", "5")])
    assert await store.count_locks() == 1


async def test_get_locks_sorted_by_row_key(store: SessionStore) -> None:
    await begin(store, "x1")
    assert await store.register_branch(new_branch("x1"), keys("b", "c", "a")) is OK
    assert [lk.pk for lk in await store.get_locks("x1")] == ["a", "b", "c"]
    assert await store.get_locks("nobody") == []


# --- recovery scans ---------------------------------------------------------------------------


async def test_find_globals_filters_orders_and_limits(store: SessionStore) -> None:
    for xid, status in [("a", S.Committing), ("b", S.Begin), ("c", S.RollbackRetrying),
                        ("d", S.Committing), ("e", S.AsyncCommitting)]:
        await begin(store, xid, status)
    # a status change moves a global to the back of the least-recently-modified order
    assert await store.change_global_status("a", S.CommitRetrying, expected=S.Committing)
    wanted = [S.Committing, S.CommitRetrying, S.RollbackRetrying]
    assert [g.xid for g in await store.find_globals(wanted, limit=10)] == ["c", "d", "a"]
    assert [g.xid for g in await store.find_globals(wanted, limit=2)] == ["c", "d"]
    assert await store.find_globals(wanted, limit=0) == []
    assert await store.find_globals([], limit=10) == []
    assert [g.xid for g in await store.find_globals({S.AsyncCommitting}, limit=10)] == ["e"]
    assert await store.find_globals([S.Rollbacked], limit=10) == []
    scanned = await store.find_globals(list(GlobalStatus), limit=100)
    assert [g.gmt_modified for g in scanned] == sorted(g.gmt_modified for g in scanned)
    assert len(scanned) == 5


async def test_find_timed_out(store: SessionStore) -> None:
    now = 1_000_000
    rows = [
        ("late", S.Begin, now - 5_000, 1_000),      # deadline now-4000
        ("later", S.Begin, now - 9_000, 8_000),     # deadline now-1000
        ("latest", S.Begin, now - 20_000, 2_000),   # deadline now-18000
        ("edge", S.Begin, now - 1_000, 1_000),      # deadline == now: not yet timed out
        ("fresh", S.Begin, now, 60_000),
        ("busy", S.Committing, now - 50_000, 1_000),  # not Begin
    ]
    for xid, status, begin_time, timeout in rows:
        await store.insert_global(new_global(xid, status, begin_time=begin_time, timeout=timeout))
    assert [g.xid for g in await store.find_timed_out(now, limit=10)] == ["latest", "late", "later"]
    assert [g.xid for g in await store.find_timed_out(now, limit=2)] == ["latest", "late"]
    assert await store.find_timed_out(now, limit=0) == []
    assert [g.xid for g in await store.find_timed_out(now + 1, limit=10)] == [
        "latest", "late", "later", "edge"
    ]
    assert await store.change_global_status("latest", S.TimeoutRollbacking, expected=S.Begin)
    assert [g.xid for g in await store.find_timed_out(now, limit=10)] == ["late", "later"]


# --- distributed task locks -------------------------------------------------------------------


@pytest.mark.parametrize("key", ["AsyncCommitting", "RetryCommitting", "RetryRollbacking",
                                 "TxTimeoutCheck", "UndologDelete"])
async def test_task_lock_lifecycle(store: SessionStore, key: str) -> None:
    t = 5_000_000
    assert await store.acquire_task_lock(key, "tc-a:8091", 10_000, t)
    assert not await store.acquire_task_lock(key, "tc-b:8091", 10_000, t + 1)
    assert not await store.acquire_task_lock(key, "tc-b:8091", 10_000, t + 10_000)  # expires at, not before
    assert await store.acquire_task_lock(key, "tc-a:8091", 10_000, t + 9_000)  # own: extended to t+19000
    assert not await store.acquire_task_lock(key, "tc-b:8091", 10_000, t + 15_000)
    assert await store.acquire_task_lock(key, "tc-b:8091", 10_000, t + 19_001)  # expired: taken over
    assert not await store.acquire_task_lock(key, "tc-a:8091", 10_000, t + 19_002)


async def test_task_lock_release(store: SessionStore) -> None:
    t = 5_000_000
    assert await store.acquire_task_lock("RetryCommitting", "a", 10_000, t)
    await store.release_task_lock("RetryCommitting", "b")  # not the owner: nothing happens
    assert not await store.acquire_task_lock("RetryCommitting", "b", 10_000, t + 1)
    await store.release_task_lock("RetryCommitting", "a")
    assert await store.acquire_task_lock("RetryCommitting", "b", 10_000, t + 2)
    await store.release_task_lock("NeverSeen", "a")  # unknown key: nothing happens
    assert await store.acquire_task_lock("NeverSeen", "a", 1, t)


async def test_task_locks_are_independent(store: SessionStore) -> None:
    assert await store.acquire_task_lock("RetryCommitting", "a", 10_000, 1_000)
    assert await store.acquire_task_lock("RetryRollbacking", "b", 10_000, 1_000)


# --- lifecycle --------------------------------------------------------------------------------


async def test_closed_store_refuses_calls(store: SessionStore) -> None:
    await begin(store, "x1")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        await store.get_global("x1")
    with pytest.raises(StoreClosedError):
        await store.insert_global(new_global("x2"))


async def test_async_with_closes(store_url: str) -> None:
    async with open_store(store_url) as store:
        await begin(store, "x1")
    with pytest.raises(StoreClosedError):
        await store.count_globals()


# --- concurrency ------------------------------------------------------------------------------


async def test_racing_registrations_one_winner_per_key(store: SessionStore) -> None:
    n, n_keys = 200, 20
    for i in range(n):
        await begin(store, f"x{i}")
    outcomes = await asyncio.gather(
        *(store.register_branch(new_branch(f"x{i}", 10_000 + i), keys(i % n_keys)) for i in range(n))
    )
    winners = [i for i, outcome in enumerate(outcomes) if outcome is OK]
    assert set(outcomes) <= {OK, RegisterOutcome.LOCK_CONFLICT}
    assert len(winners) == n_keys
    assert sorted(i % n_keys for i in winners) == list(range(n_keys))  # exactly one winner per key
    held = await holders(store, *(f"x{i}" for i in range(n)))
    assert held == {keys(i % n_keys)[0]: f"x{i}" for i in winners}
    for i, outcome in enumerate(outcomes):
        assert len(await store.get_branches(f"x{i}")) == (1 if outcome is OK else 0)
    assert await store.count_locks() == n_keys


async def test_racing_multi_key_registrations_are_serializable(store: SessionStore) -> None:
    n = 200
    wanted = {i: keys(i % 37, (i * 7 + 3) % 37, (i * 11) % 37) for i in range(n)}
    for i in range(n):
        await begin(store, f"x{i}")
    outcomes = await asyncio.gather(
        *(store.register_branch(new_branch(f"x{i}", 20_000 + i), wanted[i]) for i in range(n))
    )
    winners = [i for i, outcome in enumerate(outcomes) if outcome is OK]
    assert winners
    held = await holders(store, *(f"x{i}" for i in range(n)))
    for i in winners:  # a winner holds all its keys, so no two winners share one
        assert all(held[k] == f"x{i}" for k in wanted[i])
    assert len(held) == sum(len(set(wanted[i])) for i in winners)
    for i in set(range(n)) - set(winners):  # each loser really met a key some winner holds
        assert any(k in held for k in wanted[i])
        assert await store.get_branches(f"x{i}") == []


async def test_racing_branches_of_one_global_all_register(store: SessionStore) -> None:
    await begin(store, "x1")
    outcomes = await asyncio.gather(
        *(store.register_branch(new_branch("x1", 30_000 + i), keys(i % 5, i % 7)) for i in range(100))
    )
    assert set(outcomes) == {OK}
    assert len(await store.get_branches("x1")) == 100
    assert await store.count_locks() == 7


async def test_racing_compare_and_set_has_one_winner(store: SessionStore) -> None:
    await begin(store, "x1")
    results = await asyncio.gather(
        *(store.change_global_status("x1", S.Committing if i % 2 else S.Rollbacking, expected=S.Begin)
          for i in range(50))
    )
    assert results.count(True) == 1


async def test_one_failing_write_does_not_undo_concurrent_ones(store: SessionStore) -> None:
    await begin(store, "dup")
    results = await asyncio.gather(
        *(store.insert_global(new_global("dup" if i == 25 else f"g{i}")) for i in range(50)),
        return_exceptions=True,
    )
    failures = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failures == [25]
    assert isinstance(results[25], DuplicateKeyError)
    assert await store.count_globals() == 50


async def test_mixed_concurrent_traffic_leaves_no_leaks(store: SessionStore) -> None:
    async def one_transaction(i: int) -> None:
        xid = f"t{i}"
        await store.insert_global(new_global(xid))
        for j in range(2):
            assert await store.register_branch(new_branch(xid, 40_000 + 2 * i + j), keys(f"{i}-{j}")) is OK
        assert await store.change_global_status(xid, S.AsyncCommitting, expected=S.Begin, release_locks=True)
        for b in await store.get_branches(xid):
            await store.remove_branch(xid, b.branch_id)
        await store.remove_global(xid)

    await asyncio.gather(*(one_transaction(i) for i in range(64)))
    assert await store.count_globals() == 0
    assert await store.count_locks() == 0


# --- durability (durable stores only) ---------------------------------------------------------


async def test_state_survives_close_and_reopen(store_url: str) -> None:
    store = open_store(store_url)
    if not store.durable:
        await store.close()
        pytest.skip("store is not durable")
    await begin(store, "begun")
    await begin(store, "retrying")
    await begin(store, "gone")
    for branch_id in (30, 10, 20):
        assert await store.register_branch(new_branch("begun", branch_id), keys(branch_id)) is OK
    assert await store.register_branch(new_branch("retrying", 40, BranchType.TCC, "act")) is OK
    assert await store.change_global_status("retrying", S.CommitRetrying)
    assert await store.update_branch("begun", 10, BranchStatus.PhaseOne_Done, "ctx")
    assert await store.change_global_status("begun", S.Rollbacking, mark_locks_rollbacking=True)
    await store.remove_global("gone")
    assert await store.acquire_task_lock("RetryCommitting", "tc-a", 10_000, 1_000)
    before = (
        await store.get_global("begun"), await store.get_global("retrying"),
        await store.get_branches("begun"), await store.get_branches("retrying"),
        await store.get_locks("begun"),
    )
    await store.close()

    async with open_store(store_url) as again:
        after = (
            await again.get_global("begun"), await again.get_global("retrying"),
            await again.get_branches("begun"), await again.get_branches("retrying"),
            await again.get_locks("begun"),
        )
        assert after == before
        assert [b.branch_id for b in after[2]] == [30, 10, 20]
        assert await again.get_global("gone") is None
        assert {g.xid for g in await again.find_globals([S.Rollbacking, S.CommitRetrying], limit=10)} == {
            "begun", "retrying"
        }
        assert not await again.acquire_task_lock("RetryCommitting", "tc-b", 10_000, 2_000)
        # stamps keep growing after a restart, so registration order stays right
        assert await again.register_branch(new_branch("begun", 5)) is RegisterOutcome.GLOBAL_NOT_ACTIVE
        assert await again.change_global_status("begun", S.Begin)
        assert await again.register_branch(new_branch("begun", 5)) is OK
        assert [b.branch_id for b in await again.get_branches("begun")] == [30, 10, 20, 5]


_CRASH_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pyseata.coordinator.model import BranchTransaction, GlobalTransaction
    from pyseata.coordinator.store import open_store
    from pyseata.protocol.enums import BranchType, GlobalStatus

    freeze_after, writers = int(sys.argv[2]), int(sys.argv[3])
    acks = 0

    def ack(kind, xid):
        global acks
        print(kind, xid, flush=True)
        acks += 1
        if acks == freeze_after:
            print("FROZEN", "-", flush=True)
            time.sleep(3600)  # the loop stops here, with other writes still in flight

    async def writer(store, w):
        i = 0
        while True:
            xid = f"w{w}-{i}"
            await store.insert_global(GlobalTransaction(xid, i, GlobalStatus.Begin, begin_time=1))
            ack("G", xid)
            branch = BranchTransaction(w * 10_000_000 + i, xid, i, "res", BranchType.AT)
            assert (await store.register_branch(branch, [f"res^^^t^^^{xid}"])).name == "OK"
            ack("B", xid)
            await store.change_global_status(xid, GlobalStatus.Committing, expected=GlobalStatus.Begin)
            ack("C", xid)
            i += 1

    async def main():
        store = open_store(sys.argv[1])
        await asyncio.gather(*(writer(store, w) for w in range(writers)))

    asyncio.run(main())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["while-writing", "right-after-an-ack"])
async def test_acknowledged_writes_survive_sigkill(store_url: str, when: str) -> None:
    """A writer process is SIGKILLed; every write it was told had succeeded must be there."""
    probe = open_store(store_url)
    durable = probe.durable
    await probe.close()
    if not durable:
        pytest.skip("store is not durable")
    # "while-writing": 16 concurrent writers (big group commits) killed wherever they are.
    # "right-after-an-ack": one writer whose loop freezes just after a call returned, with nothing
    # else queued, so the kill lands exactly after an acknowledgement; a store that answered
    # before committing loses that write here.
    freeze_after, writers, wanted = (90, 1, 90) if when == "right-after-an-ack" else (0, 16, 600)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASH_WRITER, store_url, str(freeze_after), str(writers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    acked: list[list[str]] = []
    try:
        assert proc.stdout is not None
        while len(acked) < wanted:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                pytest.fail(f"writer died early: {proc.stderr.read() if proc.stderr else ''}")
            acked.append(line.split())
        if freeze_after:
            assert (await asyncio.to_thread(proc.stdout.readline)).split()[0] == "FROZEN"
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # The kill can cut the writer's last line: only whole lines (ended by a newline) are acks.
    whole = rest[: rest.rfind("\n") + 1]
    acked += [line.split() for line in whole.splitlines() if line.strip()]

    async with open_store(store_url) as store:
        for kind, xid in acked:
            g = await store.get_global(xid)
            assert g is not None, f"acknowledged global {xid} lost"
            if kind == "B":
                assert len(await store.get_branches(xid)) == 1, f"acknowledged branch of {xid} lost"
                assert len(await store.get_locks(xid)) == 1
            if kind == "C":
                assert g.status is S.Committing, f"acknowledged status change of {xid} lost"


# --- opening stores by URL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["foo://x", "no-scheme", "", "memory://extra", "sqlite://relative.db", "sqlite:///", "sqlite:///:memory:",
     "sqlite:///x.db?mode=ro", "postgresql://localhost/seata"],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    if "://" not in url or url.startswith(("foo", "postgresql")):
        assert "memory://" in str(info.value) and "sqlite:///" in str(info.value)


async def test_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_store("sqlite:///data/tc.db") as store:
        await begin(store, "x1")
    assert (tmp_path / "data" / "tc.db").is_file()


def test_new_sqlite_file_has_seata_schema(tmp_path: Path) -> None:
    path = tmp_path / "tc.db"
    asyncio.run(open_store(f"sqlite:///{path}").close())
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        seeds = conn.execute("SELECT lock_key, lock_value, expire FROM distributed_lock ORDER BY 1")
        seeds = seeds.fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert {"global_table", "branch_table", "lock_table", "distributed_lock",
            "idx_global_table_status_gmt_modified", "idx_lock_table_xid", "idx_branch_table_xid"} <= names
    assert seeds == [(k, " ", 0) for k in ("AsyncCommitting", "RetryCommitting", "RetryRollbacking",
                                             "TxTimeoutCheck")]
    assert mode == "wal"


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the tables you are looking for\n" * 200)
    with pytest.raises(ConfigError, match="not a SQLite database"):
        open_store(f"sqlite:///{path}")
    assert path.read_text().startswith("these are not")


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        open_store(f"sqlite:///{tmp_path}")


def test_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create its directory"):
        open_store(f"sqlite:///{blocker}/sub/tc.db")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError):
            open_store(f"sqlite:///{locked}/tc.db")
    finally:
        locked.chmod(0o700)


def test_foreign_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE lock_table (id INTEGER PRIMARY KEY, owner TEXT)")
    conn.close()
    with pytest.raises(StoreSchemaError, match=r"lock_table lacks column\(s\) row_key"):
        open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert names == {"lock_table"}


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tc.db"
    asyncio.run(open_store(f"sqlite:///{path}").close())
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreSchemaError, match="newer"):
        open_store(f"sqlite:///{path}")


async def test_tables_from_seata_script_are_adopted(tmp_path: Path) -> None:
    path = tmp_path / "seata.db"
    with sqlite3.connect(path) as conn:  # Seata's MySQL script, types aside
        conn.execute(
            "CREATE TABLE global_table (xid VARCHAR(128) NOT NULL PRIMARY KEY, transaction_id BIGINT, "
            "status TINYINT NOT NULL, application_id VARCHAR(32), transaction_service_group VARCHAR(32), "
            "transaction_name VARCHAR(128), timeout INT, begin_time BIGINT, application_data VARCHAR(2000), "
            "gmt_create DATETIME, gmt_modified DATETIME)"
        )
    conn.close()
    async with open_store(f"sqlite:///{path}") as store:
        await begin(store, "x1")
        assert await store.register_branch(new_branch("x1"), keys(1)) is OK
