"""The recovery loops (BEHAVIOUR.md 1.7, with our improvements): timeout check, retry with
exponential backoff, maximum retry time ending in *RetryTimeout with an alert, dead sessions, and
carrying on after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

from asyncsupport import eventually, within
from pyseata.coordinator.model import BranchTransaction, GlobalTransaction
from pyseata.coordinator.store.memory import MemoryStore
from pyseata.coordinator.store.sqlite import SqliteStore
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus
from pyseata.protocol.xid import format_xid

from .conftest import RM, TM, LogRecords, has_status, running_tc, status_in_store, store_empty, until_timed_out

B = BranchStatus
G = GlobalStatus
RES = "jdbc:mysql://127.0.0.1:3306/order"


def always(status: BranchStatus) -> object:
    return lambda call: status


# --- timeout check --------------------------------------------------------------------------------


async def test_the_timeout_checker_rolls_back_a_forgotten_transaction(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        xid = await tm.begin(timeout=1000)  # long enough to register first
        b1 = await rm.register(xid, lock_key="t:1")
        b2 = await rm.register(xid, lock_key="t:2")
        # the TM never commits
        await eventually(lambda: store_empty(tc.store), what="the timed-out transaction is rolled back")
        assert rm.done_for(xid) == [("rollback", b2), ("rollback", b1)]
        assert await tm.commit(xid) == G.TimeoutRollbacked  # the TM comes back too late


async def test_the_timeout_check_takes_only_timed_out_begin_transactions() -> None:
    async with (running_tc(manual_recovery=True) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [RES]) as rm):
        assert tc.recovery is not None
        patient = await tm.begin(timeout=600_000)
        await rm.register(patient, lock_key="t:1")
        hasty = await tm.begin(timeout=20)
        await rm.register(hasty, lock_key="t:2")
        await until_timed_out(tc.store, hasty)
        await tc.recovery.timeout_check()
        assert await status_in_store(tc.store, hasty) is None
        assert rm.calls_for(hasty) and not rm.calls_for(patient)
        assert await status_in_store(tc.store, patient) == G.Begin
        assert len(await tc.store.get_locks(patient)) == 1


async def test_a_timeout_rollback_that_fails_retries_as_timeout_rollback_retrying() -> None:
    async with (running_tc(manual_recovery=True) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [RES]) as rm):
        assert tc.recovery is not None
        rm.script = always(B.PhaseTwo_RollbackFailed_Retryable)
        xid = await tm.begin(timeout=20)
        await rm.register(xid, lock_key="t:1")
        await until_timed_out(tc.store, xid)
        await tc.recovery.timeout_check()
        assert await status_in_store(tc.store, xid) == G.TimeoutRollbackRetrying
        rm.script = None
        tc.recovery.clock = lambda: time.monotonic() + 3600  # past any backoff
        await tc.recovery.retry_rollbacking()
        assert await store_empty(tc.store)


# --- backoff ----------------------------------------------------------------------------------------


async def test_retries_back_off_exponentially_up_to_the_cap() -> None:
    """retry_period 1 s, cap 5 s: the waits after attempts 1, 2, 3, 4 are 2, 4, 5, 5 s. The
    recovery clock is stepped by hand, so the schedule is checked without waiting for it."""
    async with (running_tc(manual_recovery=True, retry_period=1.0, retry_backoff_max=5.0) as tc,
                TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm):
        recovery = tc.recovery
        assert recovery is not None
        now = [1000.0]
        recovery.clock = lambda: now[0]
        rm.script = always(B.PhaseTwo_RollbackFailed_Retryable)
        xid = await tm.begin()
        await rm.register(xid, lock_key="t:1")
        assert await tm.rollback(xid) == G.RollbackRetrying
        assert len(rm.calls) == 1  # the TM's own rollback

        for attempt, wait in enumerate([2.0, 4.0, 5.0, 5.0], start=1):
            await recovery.retry_rollbacking()
            assert len(rm.calls) == 1 + attempt
            assert recovery.backoff_of(xid) == (attempt, wait)
            now[0] += wait - 0.01
            await recovery.retry_rollbacking()  # not due yet: the RM is not called
            assert len(rm.calls) == 1 + attempt
            now[0] += 0.01

        rm.script = None
        await recovery.retry_rollbacking()
        assert await store_empty(tc.store)
        assert recovery.backoff_of(xid) is None


async def test_backoff_entries_of_transactions_finished_elsewhere_are_dropped() -> None:
    async with (running_tc(manual_recovery=True) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [RES]) as rm):
        recovery, coordinator = tc.recovery, tc.coordinator
        assert recovery is not None and coordinator is not None
        rm.script = always(B.PhaseTwo_CommitFailed_Retryable)
        xid = await tm.begin()
        await rm.register(xid, lock_key="t:1")
        assert await tm.commit(xid) == G.Committed
        await eventually(lambda: not coordinator.busy(xid), what="the async worker's attempt ends")
        await recovery.async_committing()
        backoff = recovery.backoff_of(xid)
        assert backoff is not None and backoff[0] == 1

        rm.script = None
        coordinator.schedule_async_commit(xid)  # finished by a worker, not by recovery
        await eventually(lambda: store_empty(tc.store))
        await recovery.async_committing()  # a complete scan that no longer sees the transaction
        assert recovery.backoff_of(xid) is None


async def test_recovery_leaves_a_transaction_alone_while_a_worker_drives_it() -> None:
    async with (running_tc(manual_recovery=True) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [RES]) as rm):
        recovery = tc.recovery
        assert recovery is not None
        rm.gate = asyncio.Event()
        xid = await tm.begin()
        await rm.register(xid, lock_key="t:1")
        assert await tm.commit(xid) == G.Committed
        await within(rm.arrived.wait(), 30, "the worker's branch commit reaches the RM")
        await recovery.async_committing()
        assert len(rm.calls) == 1  # no second delivery beside the worker's
        assert recovery.backoff_of(xid) is None  # and not counted as a failed attempt
        rm.gate.set()
        await eventually(lambda: store_empty(tc.store))


# --- maximum retry time -----------------------------------------------------------------------------


async def test_rollback_retry_gives_up_after_the_maximum_with_an_alert() -> None:
    with LogRecords("pyseata.tc.alert") as alerts:
        async with (running_tc(max_rollback_retry_ms=300) as tc, TM(tc.address[1]) as tm,
                    RM(tc.address[1], [RES]) as rm):
            rm.script = always(B.PhaseTwo_RollbackFailed_Retryable)
            xid = await tm.begin()
            await rm.register(xid, lock_key="t:1")
            assert await tm.rollback(xid) == G.RollbackRetrying
            await eventually(lambda: has_status(tc.store, xid, G.RollbackRetryTimeout))
            assert await tm.status(xid) == G.RollbackRetryTimeout
            assert len(await tc.store.get_locks(xid)) == 1  # kept: the rows may be dirty
            calls = len(rm.calls)
            await asyncio.sleep(0.3)  # a few more ticks: nothing is retried any more
            assert len(rm.calls) == calls
    errors = [r for r in alerts.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and xid in errors[0].getMessage() and "RollbackRetryTimeout" in errors[0].getMessage()


async def test_rollback_retry_timeout_can_release_the_locks() -> None:
    async with (running_tc(max_rollback_retry_ms=200, rollback_retry_timeout_unlock=True) as tc,
                TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm):
        rm.script = always(B.PhaseTwo_RollbackFailed_Retryable)
        xid = await tm.begin()
        await rm.register(xid, lock_key="t:1")
        await tm.rollback(xid)
        await eventually(lambda: has_status(tc.store, xid, G.RollbackRetryTimeout))
        assert await tc.store.get_locks(xid) == []


async def test_commit_retry_gives_up_after_the_maximum_sync_and_async() -> None:
    with LogRecords("pyseata.tc.alert") as alerts:
        async with (running_tc(max_commit_retry_ms=300) as tc, TM(tc.address[1]) as tm,
                    RM(tc.address[1], [RES]) as rm):
            rm.script = always(B.PhaseTwo_CommitFailed_Retryable)
            tcc = await tm.begin()
            await rm.register(tcc, branch_type=BranchType.TCC)
            assert await tm.commit(tcc) == G.CommitRetrying
            at = await tm.begin()
            await rm.register(at, lock_key="t:1")
            assert await tm.commit(at) == G.Committed
            for xid in (tcc, at):
                await eventually(lambda x=xid: has_status(tc.store, x, G.CommitRetryTimeout))  # type: ignore[misc]
    messages = [r.getMessage() for r in alerts.records if r.levelno == logging.ERROR]
    for xid in (tcc, at):
        assert any(xid in text and "CommitRetryTimeout" in text for text in messages)


async def test_a_timed_out_rollback_that_keeps_failing_ends_in_rollback_retry_timeout() -> None:
    async with (running_tc(max_rollback_retry_ms=1300) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [RES]) as rm):
        rm.script = always(B.PhaseTwo_RollbackFailed_Retryable)
        xid = await tm.begin(timeout=1000)
        await rm.register(xid, lock_key="t:1")
        await eventually(lambda: has_status(tc.store, xid, G.RollbackRetryTimeout))


# --- dead sessions and restarts --------------------------------------------------------------------------


async def _seed(store: MemoryStore, n: int, status: GlobalStatus, branch_type: BranchType,
                lock_key: str | None) -> GlobalTransaction:
    """A session as a crashed TC would have left it."""
    xid = format_xid("127.0.0.1", 8091, 1000 + n)
    g = GlobalTransaction(xid=xid, transaction_id=1000 + n, status=G.Begin, timeout=600_000,
                          begin_time=int(time.time() * 1000), transaction_name=status.name)
    await store.insert_global(g)
    branch = BranchTransaction(branch_id=5000 + n, xid=xid, transaction_id=1000 + n, resource_id=RES,
                               branch_type=branch_type, client_id="rm-app:127.0.0.1:1")
    keys = [f"{RES}^^^t^^^{lock_key}"] if lock_key else []
    await store.register_branch(branch, keys)
    if status != G.Begin:
        await store.change_global_status(xid, status, mark_locks_rollbacking=status in (
            G.Rollbacking, G.TimeoutRollbacking))
    stored = await store.get_global(xid)
    assert stored is not None
    return stored


async def test_a_restarted_tc_carries_on_with_what_the_last_run_left() -> None:
    store = MemoryStore()
    committing = await _seed(store, 1, G.Committing, BranchType.TCC, None)
    async_committing = await _seed(store, 2, G.AsyncCommitting, BranchType.AT, None)
    rollbacking = await _seed(store, 3, G.Rollbacking, BranchType.AT, "3")
    timeout_rollbacking = await _seed(store, 4, G.TimeoutRollbacking, BranchType.AT, "4")
    begin = await _seed(store, 5, G.Begin, BranchType.AT, "5")
    # The RM's old connection is gone; a new RM process of the same application comes up after
    # the TC: the first attempts fail (no RM), the retries reach it.
    async with running_tc(given_store=store, dead_session_ms=600_000) as tc, RM(tc.address[1], [RES]) as rm:
        async def only_begin_left() -> bool:
            return await store.count_globals() == 1

        await eventually(only_begin_left, what="everything but the Begin session ends")
        assert await status_in_store(store, begin.xid) == G.Begin
        assert [lock.pk for lock in await store.get_locks(begin.xid)] == ["5"]
        assert await store.count_locks() == 1
        assert rm.done_for(committing.xid) == [("commit", 5001)]
        assert rm.done_for(async_committing.xid) == [("commit", 5002)]
        assert rm.done_for(rollbacking.xid) == [("rollback", 5003)]
        assert rm.done_for(timeout_rollbacking.xid) == [("rollback", 5004)]


async def test_a_dead_session_is_re_driven_only_once_it_looks_abandoned() -> None:
    """Committing/Rollbacking are normally driven by the request that set them; recovery takes
    them only when untouched for dead_session_ms (another TC died in the middle) or after a
    restart."""
    store = MemoryStore()
    async with (running_tc(given_store=store, manual_recovery=True, dead_session_ms=600_000) as tc,
                RM(tc.address[1], [RES]) as rm):
        recovery = tc.recovery
        assert recovery is not None
        fresh = await _seed(store, 1, G.Rollbacking, BranchType.AT, "1")
        await recovery.retry_rollbacking()
        assert rm.calls == []
        await recovery.retry_rollbacking(after_restart=True)
        assert rm.done_for(fresh.xid) == [("rollback", 5001)]

    store = MemoryStore()
    async with (running_tc(given_store=store, manual_recovery=True, dead_session_ms=0) as tc,
                RM(tc.address[1], [RES]) as rm):
        recovery = tc.recovery
        assert recovery is not None
        stale = await _seed(store, 2, G.Committing, BranchType.TCC, None)
        await eventually(lambda: time.time_ns() // 1000 > stale.gmt_modified)
        await recovery.retry_committing()
        assert rm.done_for(stale.xid) == [("commit", 5002)]
        assert await store_empty(store)


async def test_a_stopping_tc_frees_its_task_locks_for_another_tc(tmp_path: Path) -> None:
    """With several TCs on one store each loop runs on whichever holds its task lock; one that
    stops hands its loops over at once instead of after the locks' TTL."""
    db = tmp_path / "tc.db"
    loops = ("TxTimeoutCheck", "RetryRollbacking", "RetryCommitting", "AsyncCommitting")

    def holders() -> dict[str, str]:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
            return dict(conn.execute("SELECT lock_key, lock_value FROM distributed_lock").fetchall())

    async with running_tc(f"sqlite:///{db}") as tc:
        assert tc.recovery is not None
        owner = tc.recovery.owner
        await eventually(lambda: all(holders().get(name) == owner for name in loops),
                         what="the TC's loops hold their task locks")
    assert all(holders().get(name) == " " for name in loops), holders()  # Seata's free value
    async with SqliteStore(db) as store:
        now = int(time.time() * 1000)
        for name in loops:
            assert await store.acquire_task_lock(name, "another-tc", 10_000, now), name
