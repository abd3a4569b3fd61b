"""Every request the TC serves, and its edge cases, as Seata's DefaultCore does them
(BEHAVIOUR.md 1.4-1.6), over real sockets to a real TC on the memory and the sqlite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from asyncsupport import eventually, within
from pyseata.coordinator.model import LockStatus
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus, ResultCode
from pyseata.protocol.enums import TransactionExceptionCode as Code
from pyseata.protocol.xid import parse_xid

from .conftest import RM, TM, running_tc, status_in_store, store_empty, until_timed_out

B = BranchStatus
G = GlobalStatus
RES = "jdbc:mysql://127.0.0.1:3306/order"
RES2 = "jdbc:mysql://127.0.0.1:3306/stock"
UNKNOWN_XID = "127.0.0.1:8091:4242"


def assert_refused(answer: m.AbstractTransactionResponse, code: Code) -> None:
    """A refusal travels as Seata does it: resultCode Failed, the exception code, the message."""
    assert answer.result_code == ResultCode.Failed, answer
    assert answer.transaction_exception_code == code, answer
    assert (answer.msg or "").startswith("TransactionException["), answer


# --- begin ---------------------------------------------------------------------------------------


async def test_begin_gives_an_xid_with_the_tc_address_and_stores_the_session(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1], app="order-svc") as tm:
        port = tc.address[1]
        xid = await tm.begin(timeout=12_345, name="place-order")
        parsed = parse_xid(xid)
        assert xid == f"127.0.0.1:{port}:{parsed.transaction_id}"  # the port actually bound, not 0
        g = await tc.store.get_global(xid)
        assert g is not None
        assert g.status == G.Begin
        assert g.transaction_id == parsed.transaction_id
        assert (g.timeout, g.transaction_name) == (12_345, "place-order")
        # applicationId and txServiceGroup come from the TM's registration
        assert (g.application_id, g.transaction_service_group) == ("order-svc", "default_tx_group")
        assert abs(g.begin_time - time.time() * 1000) < 600_000
        assert await tm.status(xid) == G.Begin

        later = await tm.begin(timeout=0)  # no timeout asked: the TC's default
        assert parse_xid(later).transaction_id > parsed.transaction_id
        g2 = await tc.store.get_global(later)
        assert g2 is not None and g2.timeout == 60_000


async def test_begin_uses_the_advertised_host() -> None:
    async with running_tc(advertise_host="10.1.2.3") as tc, TM(tc.address[1]) as tm:
        xid = await tm.begin()
        assert parse_xid(xid)[:2] == ("10.1.2.3", tc.address[1])


# --- unknown XIDs ------------------------------------------------------------------------------------


async def test_unknown_xid_answers_finished_to_commit_rollback_and_status(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm:
        for xid in (UNKNOWN_XID, "not-an-xid"):
            assert await tm.commit(xid) == G.Finished
            assert await tm.rollback(xid) == G.Finished
            assert await tm.status(xid) == G.Finished


async def test_register_on_an_unknown_xid_is_global_transaction_not_exist(store_url: str) -> None:
    async with running_tc(store_url) as tc, RM(tc.address[1], [RES]) as rm:
        for xid in (UNKNOWN_XID, "not-an-xid"):
            assert_refused(await rm.register_raw(xid, lock_key="t:1"), Code.GlobalTransactionNotExist)
        assert await tc.store.count_locks() == 0


# --- commit ----------------------------------------------------------------------------------------


async def test_commit_after_the_timeout_answers_timeout_rollbacking_and_changes_nothing(store_url: str) -> None:
    async with (running_tc(store_url, manual_recovery=True) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [RES]) as rm):
        xid = await tm.begin(timeout=50)
        branch = await rm.register(xid, lock_key="t:1")
        await until_timed_out(tc.store, xid)

        assert await tm.commit(xid) == G.TimeoutRollbacking
        # Nothing changed: still Begin, the branch and its lock as they were, no RM called.
        assert await status_in_store(tc.store, xid) == G.Begin
        assert [b.branch_id for b in await tc.store.get_branches(xid)] == [branch]
        assert [lock.status for lock in await tc.store.get_locks(xid)] == [LockStatus.Locked]
        assert rm.calls == []

        # The timeout checker rolls it back later.
        assert tc.recovery is not None
        await tc.recovery.timeout_check()
        assert rm.done_for(xid) == [("rollback", branch)]
        assert await store_empty(tc.store)
        assert await tm.status(xid) == G.Finished


async def test_an_empty_transaction_ends_with_its_commit_and_takes_no_branch_afterwards(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        xid = await tm.begin()
        assert await tm.commit(xid) == G.Committed
        assert await store_empty(tc.store)  # ended before the answer, not by phase two
        late = await rm.register_raw(xid, lock_key="t:1")
        assert (late.result_code, late.transaction_exception_code) == (
            ResultCode.Failed, Code.GlobalTransactionNotExist)
        assert await store_empty(tc.store), "no branch and no lock joined the ended transaction"
        assert await tm.commit(xid) == G.Committed


async def test_at_only_commit_answers_committed_at_once_and_phase_two_follows(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        rm.gate = asyncio.Event()  # the RM does not answer until we let it
        xid = await tm.begin()
        b1 = await rm.register(xid, lock_key="t_order:1")
        b2 = await rm.register(xid, lock_key="t_order:2")

        assert await tm.commit(xid) == G.Committed  # while no RM has answered anything
        assert rm.done == []
        assert await status_in_store(tc.store, xid) == G.AsyncCommitting
        assert await tm.status(xid) == G.AsyncCommitting
        assert await tm.commit(xid) == G.Committed  # a repeated commit: AsyncCommitting reads Committed
        assert await tm.rollback(xid) == G.AsyncCommitting  # too late to roll back: status unchanged

        rm.gate.set()
        await eventually(lambda: store_empty(tc.store), what="phase two removes the session")
        assert sorted(rm.done_for(xid)) == sorted([("commit", b1), ("commit", b2)])
        assert await tm.status(xid) == G.Finished


async def test_locks_are_released_at_the_commit_decision(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        rm.gate = asyncio.Event()
        first = await tm.begin()
        await rm.register(first, lock_key="t_stock:1")
        assert await tm.commit(first) == G.Committed
        assert await tc.store.get_locks(first) == []

        # Phase two of the first has not even been answered, yet the row is free.
        second = await tm.begin()
        await rm.register(second, lock_key="t_stock:1")
        assert await status_in_store(tc.store, first) == G.AsyncCommitting
        assert [lock.xid for lock in await tc.store.get_locks(second)] == [second]
        rm.gate.set()
        assert await tm.commit(second) == G.Committed
        await eventually(lambda: store_empty(tc.store))


async def test_tcc_commit_is_synchronous(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        rm.gate = asyncio.Event()
        xid = await tm.begin()
        branch = await rm.register(xid, branch_type=BranchType.TCC, application_data='{"actionContext":{}}')

        commit = asyncio.create_task(tm.commit(xid))
        await within(rm.arrived.wait(), 30, "the TCC branch commit reaches the RM")
        assert not commit.done()  # the TM waits for the RM's answer
        assert await status_in_store(tc.store, xid) == G.Committing
        rm.gate.set()
        assert await within(commit, 30, "commit answers") == G.Committed
        assert await store_empty(tc.store)  # done before the answer, not in the background
        assert rm.done_for(xid) == [("commit", branch)]
        assert rm.calls[0].application_data == '{"actionContext":{}}'


async def test_mixed_commit_runs_tcc_now_and_at_in_the_background(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES, RES2]) as rm:
        xid = await tm.begin()
        at = await rm.register(xid, RES, lock_key="t:1")
        tcc = await rm.register(xid, RES2, branch_type=BranchType.TCC)
        assert await tm.commit(xid) == G.Committed
        assert ("commit", tcc) in rm.done_for(xid)
        await eventually(lambda: store_empty(tc.store))
        assert sorted(rm.done_for(xid)) == sorted([("commit", at), ("commit", tcc)])


async def test_commit_of_a_retryably_failing_tcc_branch_answers_commit_retrying(store_url: str) -> None:
    async with (running_tc(store_url, manual_recovery=True) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [RES]) as rm):
        answers = [B.PhaseTwo_CommitFailed_Retryable]
        rm.script = lambda call: answers.pop(0) if answers else B.PhaseTwo_Committed
        xid = await tm.begin()
        branch = await rm.register(xid, branch_type=BranchType.TCC)
        assert await tm.commit(xid) == G.CommitRetrying
        assert await status_in_store(tc.store, xid) == G.CommitRetrying
        assert tc.recovery is not None
        await tc.recovery.retry_committing()
        assert rm.calls_for(xid) == [("commit", branch), ("commit", branch)]
        assert await store_empty(tc.store)


# --- rollback --------------------------------------------------------------------------------------


async def test_rollback_visits_branches_in_reverse_registration_order(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES, RES2]) as rm:
        xid = await tm.begin()
        b1 = await rm.register(xid, RES, lock_key="t:1")
        b2 = await rm.register(xid, RES2, branch_type=BranchType.TCC)
        b3 = await rm.register(xid, RES, lock_key="t:2")
        assert await tm.rollback(xid) == G.Rollbacked
        assert rm.calls_for(xid) == [("rollback", b3), ("rollback", b2), ("rollback", b1)]
        assert await store_empty(tc.store)
        assert await tm.rollback(xid) == G.Rollbacked, "a repeated rollback hears how it ended"


async def test_a_repeated_commit_or_rollback_hears_how_it_ended_while_the_tc_remembers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tc.db'}"
    async with running_tc(url, finished_outcomes_kept=2) as tc, TM(tc.address[1]) as tm:
        committed, rolled_back, third = await tm.begin(), await tm.begin(), await tm.begin()
        assert await tm.commit(committed) == G.Committed
        assert await tm.rollback(rolled_back) == G.Rollbacked
        # the first answer was lost, say, and the TM asks again
        assert await tm.commit(committed) == G.Committed
        assert await tm.rollback(committed) == G.Committed, "no rollback of a committed transaction"
        assert await tm.rollback(rolled_back) == G.Rollbacked
        assert await tm.commit(rolled_back) == G.Rollbacked, "no commit of a rolled back one"
        assert await tm.status(committed) == G.Finished, "status answers as Seata does"
        unknown = committed.rsplit(":", 1)[0] + ":12345"
        assert await tm.commit(unknown) == G.Finished
        assert await tm.commit(third) == G.Committed  # the oldest outcome is forgotten
        assert await tm.commit(committed) == G.Finished
        assert await tm.rollback(rolled_back) == G.Rollbacked
    async with running_tc(url) as tc, TM(tc.address[1]) as tm:
        assert await tm.rollback(rolled_back) == G.Finished, "kept in memory only: a restart forgets"


async def test_rollback_stops_at_the_first_failing_branch(store_url: str) -> None:
    async with (running_tc(store_url, manual_recovery=True) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [RES]) as rm):
        failing: set[int] = set()
        rm.script = lambda call: (B.PhaseTwo_RollbackFailed_Retryable if call.branch_id in failing
                                  else B.PhaseTwo_Rollbacked)
        xid = await tm.begin()
        b1 = await rm.register(xid, lock_key="t:1")
        b2 = await rm.register(xid, lock_key="t:2")
        b3 = await rm.register(xid, lock_key="t:3")
        failing.add(b2)

        assert await tm.rollback(xid) == G.RollbackRetrying
        assert rm.calls_for(xid) == [("rollback", b3), ("rollback", b2)]  # b1 not attempted
        assert [b.branch_id for b in await tc.store.get_branches(xid)] == [b1, b2]
        # b3's lock went with it; the others stay, marked as rolling back
        locks = await tc.store.get_locks(xid)
        assert sorted(lock.pk for lock in locks) == ["1", "2"]
        assert {lock.status for lock in locks} == {LockStatus.Rollbacking}
        assert await tm.status(xid) == G.RollbackRetrying

        failing.clear()
        assert tc.recovery is not None
        await tc.recovery.retry_rollbacking()
        assert rm.calls_for(xid)[2:] == [("rollback", b2), ("rollback", b1)]
        assert await store_empty(tc.store)


async def test_phase_one_failed_branches_are_dropped_without_calling_the_rm(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        # rollback
        xid = await tm.begin()
        b1 = await rm.register(xid, lock_key="t:1")
        b2 = await rm.register(xid, lock_key="t:2")
        b3 = await rm.register(xid, lock_key="t:3")
        assert (await rm.report(xid, b2, B.PhaseOne_Failed)).result_code == ResultCode.Success
        assert await tm.rollback(xid) == G.Rollbacked
        assert rm.calls_for(xid) == [("rollback", b3), ("rollback", b1)]
        assert await store_empty(tc.store)

        # synchronous commit (TCC)
        xid = await tm.begin()
        t1 = await rm.register(xid, branch_type=BranchType.TCC)
        t2 = await rm.register(xid, branch_type=BranchType.TCC)
        await rm.report(xid, t1, B.PhaseOne_Failed)
        assert await tm.commit(xid) == G.Committed
        assert rm.calls_for(xid) == [("commit", t2)]
        assert await store_empty(tc.store)

        # a failed TCC branch does not stop an otherwise-AT transaction from committing async
        xid = await tm.begin()
        at = await rm.register(xid, lock_key="t:9")
        failed = await rm.register(xid, branch_type=BranchType.TCC)
        await rm.report(xid, failed, B.PhaseOne_Failed)
        assert await tm.commit(xid) == G.Committed
        await eventually(lambda: store_empty(tc.store))
        assert rm.calls_for(xid) == [("commit", at)]


# --- branch register ---------------------------------------------------------------------------------


async def test_register_on_a_transaction_no_longer_in_begin_is_not_active(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        rm.gate = asyncio.Event()
        committed = await tm.begin()
        await rm.register(committed, lock_key="t:1")
        assert await tm.commit(committed) == G.Committed  # AsyncCommitting, held at the gate

        rolling_back = await tm.begin()
        await rm.register(rolling_back, lock_key="t:2")
        rollback = asyncio.create_task(tm.rollback(rolling_back))
        await eventually(lambda: any(c.xid == rolling_back for c in rm.calls))  # Rollbacking now

        for xid in (committed, rolling_back):
            assert_refused(await rm.register_raw(xid, lock_key="t:3"), Code.GlobalTransactionNotActive)
            assert_refused(await rm.register_raw(xid, branch_type=BranchType.TCC), Code.GlobalTransactionNotActive)
        assert await tc.store.get_locks(committed) == []
        rm.gate.set()
        assert await within(rollback, 30, "rollback answers") == G.Rollbacked
        await eventually(lambda: store_empty(tc.store))


async def test_lock_conflict_is_refused_and_takes_nothing(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES, RES2]) as rm:
        holder = await tm.begin()
        await rm.register(holder, lock_key="t:1,2")
        other = await tm.begin()
        assert_refused(await rm.register_raw(other, lock_key="t:2,3"), Code.LockKeyConflict)
        assert await tc.store.get_locks(other) == []
        assert await tc.store.get_branches(other) == []
        # The same table and key in another resource is another row.
        await rm.register(other, RES2, lock_key="t:2")
        # Locks are re-entrant per transaction.
        await rm.register(holder, lock_key="t:1;u:7")
        assert sorted(lock.pk for lock in await tc.store.get_locks(holder)) == ["1", "2", "7"]
        for xid in (holder, other):
            assert await tm.rollback(xid) == G.Rollbacked
        assert await store_empty(tc.store)


async def test_lock_conflict_fails_fast_for_autocommit_false_when_the_holder_rolls_back(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        holder = await tm.begin()
        await rm.register(holder, lock_key="t:1")
        waiter = await tm.begin()
        # Holder still in Begin: an ordinary conflict, even for autoCommit=false.
        assert_refused(await rm.register_raw(waiter, lock_key="t:1", application_data='{"autoCommit":false}'),
                       Code.LockKeyConflict)

        rm.gate = asyncio.Event()
        rollback = asyncio.create_task(tm.rollback(holder))
        await within(rm.arrived.wait(), 30, "the holder's rollback reaches the RM")
        assert {lock.status for lock in await tc.store.get_locks(holder)} == {LockStatus.Rollbacking}
        assert_refused(await rm.register_raw(waiter, lock_key="t:1", application_data='{"autoCommit":false}'),
                       Code.LockKeyConflictFailFast)
        # Fail-fast is only for branches that declared autoCommit=false.
        assert_refused(await rm.register_raw(waiter, lock_key="t:1"), Code.LockKeyConflict)
        assert_refused(await rm.register_raw(waiter, lock_key="t:1", application_data='{"autoCommit":true}'),
                       Code.LockKeyConflict)

        rm.gate.set()
        assert await within(rollback, 30, "rollback answers") == G.Rollbacked
        await rm.register(waiter, lock_key="t:1", application_data='{"autoCommit":false}')
        assert await tm.rollback(waiter) == G.Rollbacked


async def test_skip_check_lock_relies_on_the_row_key_alone(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        holder = await tm.begin()
        await rm.register(holder, lock_key="t:1", application_data='{"skipCheckLock":true}')
        other = await tm.begin()
        assert_refused(await rm.register_raw(other, lock_key="t:1", application_data='{"skipCheckLock":true}'),
                       Code.LockKeyConflict)
        assert await tc.store.get_branches(other) == []
        for xid in (holder, other):
            await tm.rollback(xid)


async def test_application_data_too_deep_for_json_is_not_a_hint() -> None:
    async with running_tc() as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        xid = await tm.begin()
        # json.loads raises RecursionError here; the branch registers as one without hints
        branch = await rm.register(xid, lock_key="t:1", application_data='{"a":' * 100_000)
        assert [b.branch_id for b in await tc.store.get_branches(xid)] == [branch]
        assert await tm.rollback(xid) == G.Rollbacked


async def test_malformed_lock_key_is_branch_register_failed(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        xid = await tm.begin()
        assert_refused(await rm.register_raw(xid, lock_key="t_no_colon"), Code.BranchRegisterFailed)
        assert await tc.store.get_branches(xid) == []
        # Non-AT branches carry no locks: their lock key is not looked at.
        await rm.register(xid, branch_type=BranchType.TCC, lock_key="whatever")
        assert await tc.store.count_locks() == 0


async def test_concurrent_registers_and_commit_never_lose_a_branch(store_url: str) -> None:
    """A register racing the commit decision either lands before it (and is committed) or is
    refused: the per-XID lock keeps commit's branch list and the registration apart."""
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        accepted: list[tuple[str, int]] = []

        async def register(xid: str, n: int) -> None:
            kind = BranchType.TCC if n % 2 else BranchType.AT
            answer = await rm.register_raw(xid, lock_key=f"t:{xid}-{n}" if kind == BranchType.AT else None,
                                           branch_type=kind)
            if answer.result_code == ResultCode.Success:
                accepted.append((xid, answer.branch_id))
            else:  # too late: committing (not active) or already finished (gone)
                assert answer.transaction_exception_code in (Code.GlobalTransactionNotActive,
                                                             Code.GlobalTransactionNotExist), answer

        xids = [await tm.begin() for _ in range(10)]
        await asyncio.gather(*(coro for xid in xids for coro in
                               [tm.commit(xid), *(register(xid, n) for n in range(6))]))
        await eventually(lambda: store_empty(tc.store), what="every transaction finishes")
        committed = {(c.xid, c.branch_id) for c in rm.done if c.kind == "commit"}
        assert set(accepted) <= committed
        assert not any(c.kind == "rollback" for c in rm.calls)


# --- lock query ----------------------------------------------------------------------------------------


async def test_lock_query_checks_without_locking(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        holder = await tm.begin()
        await rm.register(holder, lock_key="t:1")
        other = await tm.begin()

        async def lockable(xid: str | None, key: str) -> bool:
            answer = await rm.lock_query(xid, key)
            assert isinstance(answer, m.GlobalLockQueryResponse) and answer.result_code == ResultCode.Success
            return answer.lockable

        assert await lockable(other, "t:2") is True
        assert await lockable(other, "t:1,2") is False
        assert await lockable(None, "t:1") is False  # @GlobalLock outside a transaction
        assert await lockable(holder, "t:1;t:2") is True  # its own rows
        assert await lockable(other, "") is True
        assert await tc.store.get_locks(other) == []  # the query took nothing
        await rm.register(other, lock_key="t:2")

        bad = await rm.lock_query(other, "t_no_colon")
        assert isinstance(bad, m.GlobalLockQueryResponse)
        assert_refused(bad, Code.LockableCheckFailed)
        for xid in (holder, other):
            await tm.rollback(xid)


# --- branch report ----------------------------------------------------------------------------------------


async def test_branch_report_updates_status_and_data_and_refuses_illegal_changes(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        xid = await tm.begin()
        branch = await rm.register(xid, lock_key="t:1", application_data='{"a":1}')
        ok = await rm.report(xid, branch, B.PhaseOne_Done, application_data='{"a":2}')
        assert ok.result_code == ResultCode.Success
        (stored,) = await tc.store.get_branches(xid)
        assert (stored.status, stored.application_data) == (B.PhaseOne_Done, '{"a":2}')

        await rm.report(xid, branch, B.PhaseOne_Failed)
        # Back from PhaseOne_Failed, or a phase-two outcome reported by the RM: refused.
        for status in (B.PhaseOne_Done, B.Registered, B.PhaseTwo_Committed, B.PhaseTwo_Rollbacked):
            assert_refused(await rm.report(xid, branch, status), Code.BranchReportFailed)
        (stored,) = await tc.store.get_branches(xid)
        assert stored.status == B.PhaseOne_Failed

        assert_refused(await rm.report(xid, branch + 1000, B.PhaseOne_Done), Code.BranchTransactionNotExist)
        assert_refused(await rm.report(UNKNOWN_XID, branch, B.PhaseOne_Done), Code.GlobalTransactionNotExist)
        await tm.rollback(xid)
        assert rm.calls == []  # the failed branch was dropped without a call


# --- global status and report ------------------------------------------------------------------------------


async def test_global_status_follows_the_transaction(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        rm.gate = asyncio.Event()
        xid = await tm.begin()
        await rm.register(xid, lock_key="t:1")
        assert await tm.status(xid) == G.Begin
        rollback = asyncio.create_task(tm.rollback(xid))
        await within(rm.arrived.wait(), 30, "rollback reaches the RM")
        assert await tm.status(xid) == G.Rollbacking
        assert await tm.rollback(xid) == G.Rollbacking  # a second rollback changes nothing
        assert await tm.commit(xid) == G.Rollbacking
        rm.gate.set()
        assert await rollback == G.Rollbacked
        assert await tm.status(xid) == G.Finished


async def test_global_report_from_a_saga_engine(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm:
        xid = await tm.begin()
        answer = await tm.client.request(m.GlobalReportRequest(xid=xid, global_status=G.Committed))
        assert isinstance(answer, m.GlobalReportResponse) and answer.global_status == G.Committed
        assert await tc.store.get_global(xid) is None
        answer = await tm.client.request(m.GlobalReportRequest(xid=UNKNOWN_XID, global_status=G.Committed))
        assert isinstance(answer, m.GlobalReportResponse) and answer.global_status == G.Finished
        # A status that needs the TC to drive the saga's recovery is refused by name.
        xid = await tm.begin()
        answer = await tm.client.request(m.GlobalReportRequest(xid=xid, global_status=G.RollbackRetrying))
        assert isinstance(answer, m.GlobalReportResponse)
        assert_refused(answer, Code.GlobalTransactionStatusInvalid)
        assert "SAGA" in (answer.msg or "")
        assert await status_in_store(tc.store, xid) == G.Begin


# --- the per-XID lock ----------------------------------------------------------------------------------


async def test_the_per_xid_lock_stays_exclusive_while_it_is_handed_over() -> None:
    """Between a release and the wake-up of the next waiter the lock reads as unlocked. Dropping
    the entry then (as the first version did) gave a third caller a fresh lock beside the waiter."""
    from pyseata.coordinator.core import _XidLocks

    locks = _XidLocks()
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    gates = {name: asyncio.Event() for name in ("first", "second", "third")}

    async def user(name: str) -> None:
        async with locks.hold("xid"):
            inside.append(name)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
            await gates[name].wait()
            inside.remove(name)

    first = asyncio.create_task(user("first"))
    await eventually(lambda: inside == ["first"])
    second = asyncio.create_task(user("second"))
    await asyncio.sleep(0)  # second now waits for the lock
    gates["first"].set()  # the hand-over: first releases, second is woken
    await eventually(lambda: inside == ["second"])
    third = asyncio.create_task(user("third"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside == ["second"]  # third queues behind second
    gates["second"].set()
    gates["third"].set()
    await asyncio.gather(first, second, third)
    assert overlaps == []
    assert len(locks) == 0  # nothing kept once nobody holds or waits


# --- phase two keeps pace ------------------------------------------------------------------------------


async def test_commit_answers_wait_when_phase_two_falls_behind() -> None:
    """Back-pressure: beyond the async-commit backlog a TM hears Committed only once phase two
    has room again (the decision itself is durable before that), and never later than the cap."""
    from dataclasses import replace

    async with running_tc() as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [RES]) as rm:
        coordinator = tc.coordinator
        assert coordinator is not None
        coordinator.config = replace(coordinator.config, async_commit_backlog=2)
        rm.gate = asyncio.Event()  # phase two stalls at the RM
        xids = [await tm.begin() for _ in range(4)]
        for n, xid in enumerate(xids):
            await rm.register(xid, lock_key=f"t:{n}")
        commits = [asyncio.create_task(tm.commit(xid)) for xid in xids]
        await eventually(lambda: coordinator.held_commits == 2, what="two answers are held back")
        assert sum(task.done() for task in commits) == 2
        for xid in xids:  # every decision was made and is durable
            assert await status_in_store(tc.store, xid) == G.AsyncCommitting
        rm.gate.set()
        assert await within(asyncio.gather(*commits), 30, "the held answers follow") == [G.Committed] * 4
        await eventually(lambda: store_empty(tc.store))

        # An RM that hangs delays the answers at most async_commit_backlog_wait.
        coordinator.config = replace(coordinator.config, async_commit_backlog=0, async_commit_backlog_wait=0.2)
        rm.gate = asyncio.Event()
        xid = await tm.begin()
        await rm.register(xid, lock_key="t:9")
        assert await within(tm.commit(xid), 30, "the capped wait ends") == G.Committed
        rm.gate.set()
        await eventually(lambda: store_empty(tc.store))
