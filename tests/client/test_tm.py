"""The TM against a real TC: begin/commit/rollback in every shape, propagation, rollback rules,
the TC's other decisions, an unreachable TC, and the XID across threads and tasks.

Every outcome is checked where it happens: the scripted RM's branch saw BranchCommit or
BranchRollback, and the TC answers Finished for the XID afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.client import (
    ClientRuntime,
    CommitFailedError,
    CommitHeuristicError,
    ContextExecutor,
    GlobalTransaction,
    Propagation,
    PropagationError,
    RollbackedByTcError,
    RollbackRules,
    TcUnreachableError,
    TimeoutRollbackedError,
    TxRole,
    get_xid,
    global_transaction,
)
from pyseata.errors import PyseataError, TransactionError
from pyseata.protocol.enums import BranchStatus, GlobalStatus

from .conftest import RunningTc, ScriptedRm, client_config

pytestmark = pytest.mark.usefixtures("runtime")

G = GlobalStatus


class BusinessError(Exception):
    pass


def status_of(xid: str) -> GlobalStatus:
    return seata.reload(xid).status()


def wait_for_status(xid: str, expected: GlobalStatus, timeout: float = 10.0) -> None:
    """For phase two the TC runs in the background: the RM answering is not the TC being done."""
    deadline = time.monotonic() + timeout
    while (status := status_of(xid)) != expected:
        assert time.monotonic() < deadline, f"{xid} is {status.name}, not {expected.name}, after {timeout} s"
        time.sleep(0.01)


def assert_ended(rm: ScriptedRm, xid: str, outcome: str) -> None:
    assert rm.outcomes(xid) == [outcome]
    assert status_of(xid) == G.Finished
    assert get_xid() is None


# --- the four shapes, commit and rollback --------------------------------------------------------------


def run_sync(shape: str, body: Callable[[], None], **options: Any) -> None:
    if shape == "decorator":
        global_transaction(**options)(body)()
    else:
        with global_transaction(**options):
            body()


async def run_async(shape: str, body: Callable[[], Any], **options: Any) -> None:
    if shape == "decorator":

        async def work() -> None:
            await body()

        await global_transaction(**options)(work)()
    else:
        async with global_transaction(**options):
            await body()


@pytest.mark.parametrize("shape", ["decorator", "with"])
@pytest.mark.parametrize("fails", [False, True], ids=["commit", "rollback"])
def test_sync_shapes_commit_or_roll_back(rm: ScriptedRm, shape: str, fails: bool) -> None:
    xids: list[str] = []

    def body() -> None:
        xid = get_xid()
        assert xid is not None
        xids.append(xid)
        rm.register(xid)
        if fails:
            raise BusinessError("business failure")

    if fails:
        with pytest.raises(BusinessError, match="business failure"):
            run_sync(shape, body)
    else:
        run_sync(shape, body)
    assert_ended(rm, xids[0], "rollback" if fails else "commit")


@pytest.mark.parametrize("shape", ["decorator", "with"])
@pytest.mark.parametrize("fails", [False, True], ids=["commit", "rollback"])
async def test_async_shapes_commit_or_roll_back(rm: ScriptedRm, shape: str, fails: bool) -> None:
    xids: list[str] = []

    async def body() -> None:
        xid = get_xid()
        assert xid is not None
        xids.append(xid)
        await rm.aregister(xid)
        await asyncio.sleep(0)
        assert get_xid() == xid
        if fails:
            raise BusinessError("business failure")

    if fails:
        with pytest.raises(BusinessError, match="business failure"):
            await run_async(shape, body)
    else:
        await run_async(shape, body)
    assert rm.outcomes(xids[0]) == ["rollback" if fails else "commit"]
    assert await seata.reload(xids[0]).astatus() == G.Finished
    assert get_xid() is None


def test_decorator_without_parentheses_keeps_the_function(rm: ScriptedRm) -> None:
    @global_transaction
    def purchase(order: int) -> tuple[int, str | None]:
        """Buys."""
        rm.register(get_xid())
        return order, get_xid()

    order, xid = purchase(7)
    assert order == 7 and xid is not None
    assert purchase.__name__ == "purchase" and purchase.__doc__ == "Buys."
    assert_ended(rm, xid, "commit")


def test_the_block_yields_the_launchers_handle(rm: ScriptedRm) -> None:
    with global_transaction(name="order", timeout=20) as tx:
        assert tx is not None
        assert (tx.role, tx.name, tx.timeout, tx.xid) == (TxRole.LAUNCHER, "order", 20, get_xid())
        assert tx.status() == G.Begin
    assert status_of(tx.xid) == G.Finished


def test_base_exceptions_roll_back_too(rm: ScriptedRm) -> None:
    with pytest.raises(KeyboardInterrupt), global_transaction() as tx:
        assert tx is not None
        rm.register(tx.xid)
        raise KeyboardInterrupt
    assert_ended(rm, tx.xid, "rollback")


async def test_a_cancelled_task_rolls_back(rm: ScriptedRm) -> None:
    registered = asyncio.Event()
    xids: list[str] = []

    async def work() -> None:
        async with global_transaction() as tx:
            assert tx is not None
            xids.append(tx.xid)
            await rm.aregister(tx.xid)
            registered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await registered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rm.outcomes(xids[0]) == ["rollback"]


# --- propagation ------------------------------------------------------------------------------------------


def test_required_inside_a_transaction_joins_and_never_ends_it(rm: ScriptedRm) -> None:
    with global_transaction() as outer:
        assert outer is not None
        rm.register(outer.xid)
        with global_transaction(propagation=Propagation.REQUIRED) as inner:
            assert inner is not None
            assert (inner.role, inner.xid) == (TxRole.PARTICIPANT, outer.xid)
        with pytest.raises(BusinessError), global_transaction():
            raise BusinessError  # a participant's exception propagates; the participant does not roll back
        assert outer.status() == G.Begin
        assert rm.outcomes(outer.xid) == []
    assert_ended(rm, outer.xid, "commit")


def test_a_participants_exception_rolls_back_the_launcher(rm: ScriptedRm) -> None:
    @global_transaction
    def inner() -> None:
        rm.register(get_xid())
        raise BusinessError

    with pytest.raises(BusinessError), global_transaction() as outer:
        assert outer is not None
        inner()
    assert_ended(rm, outer.xid, "rollback")


def test_a_participant_cannot_end_the_transaction(rm: ScriptedRm) -> None:
    with global_transaction() as outer, global_transaction() as inner:
        assert outer is not None and inner is not None
        with pytest.raises(PropagationError, match="participant") as caught:
            inner.commit()
        assert caught.value.xid == outer.xid
        assert outer.status() == G.Begin


def test_requires_new_suspends_the_outer_transaction_and_resumes_it(rm: ScriptedRm) -> None:
    with pytest.raises(BusinessError), global_transaction() as outer:
        assert outer is not None
        rm.register(outer.xid)
        with global_transaction(propagation="REQUIRES_NEW") as inner:
            assert inner is not None
            assert inner.role is TxRole.LAUNCHER and inner.xid != outer.xid
            assert get_xid() == inner.xid
            rm.register(inner.xid)
        assert get_xid() == outer.xid
        assert_inner_committed_while_outer_open = (status_of(inner.xid), outer.status())
        assert assert_inner_committed_while_outer_open == (G.Finished, G.Begin)
        raise BusinessError  # the outer one rolls back; the inner one stays committed
    assert rm.outcomes(inner.xid) == ["commit"]
    assert_ended(rm, outer.xid, "rollback")


def test_requires_new_failure_rolls_back_only_the_inner_transaction(rm: ScriptedRm) -> None:
    with global_transaction() as outer:
        assert outer is not None
        rm.register(outer.xid)
        with pytest.raises(BusinessError), global_transaction(propagation=Propagation.REQUIRES_NEW) as inner:
            assert inner is not None
            rm.register(inner.xid)
            raise BusinessError
        assert get_xid() == outer.xid
    assert rm.outcomes(inner.xid) == ["rollback"]
    assert_ended(rm, outer.xid, "commit")


def test_requires_new_without_a_transaction_begins_one(rm: ScriptedRm) -> None:
    with global_transaction(propagation=Propagation.REQUIRES_NEW) as tx:
        assert tx is not None and tx.role is TxRole.LAUNCHER
    assert status_of(tx.xid) == G.Finished


def test_not_supported_runs_outside_and_resumes(rm: ScriptedRm) -> None:
    with global_transaction() as outer:
        assert outer is not None
        with global_transaction(propagation=Propagation.NOT_SUPPORTED) as none:
            assert none is None and get_xid() is None
        assert get_xid() == outer.xid
        with pytest.raises(BusinessError), global_transaction(propagation=Propagation.NOT_SUPPORTED):
            raise BusinessError
        assert get_xid() == outer.xid
        assert outer.status() == G.Begin


def test_supports_joins_when_there_is_a_transaction(rm: ScriptedRm) -> None:
    with global_transaction() as outer, global_transaction(propagation=Propagation.SUPPORTS) as inner:
        assert outer is not None and inner is not None
        assert (inner.role, inner.xid) == (TxRole.PARTICIPANT, outer.xid)


def test_never_refuses_inside_a_transaction_and_leaves_it_intact(rm: ScriptedRm) -> None:
    with global_transaction() as outer:
        assert outer is not None
        rm.register(outer.xid)
        with pytest.raises(PropagationError, match="NEVER") as caught, global_transaction(propagation="NEVER"):
            pytest.fail("the block must not run")
        assert caught.value.xid == outer.xid
        assert get_xid() == outer.xid
    assert_ended(rm, outer.xid, "commit")


def test_mandatory_joins_inside_and_refuses_outside(rm: ScriptedRm) -> None:
    with global_transaction() as outer, global_transaction(propagation=Propagation.MANDATORY) as inner:
        assert outer is not None and inner is not None and inner.xid == outer.xid
    with pytest.raises(PropagationError, match="MANDATORY"), global_transaction(propagation="MANDATORY"):
        pytest.fail("the block must not run")


@pytest.mark.parametrize("kind", [Propagation.NOT_SUPPORTED, Propagation.SUPPORTS, Propagation.NEVER])
def test_kinds_that_run_without_a_transaction_need_no_tc(kind: Propagation) -> None:
    seata.shutdown()  # nothing is begun, so no runtime is needed at all
    with global_transaction(propagation=kind) as tx:
        assert tx is None and get_xid() is None


async def test_async_requires_new_suspends_and_resumes(rm: ScriptedRm) -> None:
    async with global_transaction() as outer:
        assert outer is not None
        async with global_transaction(propagation=Propagation.REQUIRES_NEW) as inner:
            assert inner is not None and get_xid() == inner.xid != outer.xid
        assert get_xid() == outer.xid
        assert await inner.astatus() == G.Finished
    assert get_xid() is None


def test_propagation_names_are_checked() -> None:
    with pytest.raises(ValueError, match="REQUIRES_NEW"):
        global_transaction(propagation="REQUIRED_NEW")


# --- rollback rules ------------------------------------------------------------------------------------

RULE_CASES = [
    # rollback_for, no_rollback_for, raised, rolls back?
    ((), (), KeyError, True),
    (ValueError, (), KeyError, True),  # matches no rule: rolls back (Seata would commit)
    ((), ValueError, KeyError, True),
    ((), KeyError, KeyError, False),
    ((), LookupError, KeyError, False),  # a base class matches
    (Exception, LookupError, KeyError, False),  # the closest class in the MRO wins
    (LookupError, Exception, KeyError, True),
    ((ValueError, KeyError), (), KeyError, True),
    ((), Exception, KeyboardInterrupt, True),  # not an Exception: no rule matches
]


@pytest.mark.parametrize(("rollback_for", "no_rollback_for", "raised", "expected"), RULE_CASES)
def test_rule_decisions(rollback_for: Any, no_rollback_for: Any, raised: type[BaseException], expected: bool) -> None:
    assert RollbackRules.of(rollback_for, no_rollback_for).rolls_back(raised()) is expected


def test_rules_refuse_a_class_in_both_lists_and_non_classes() -> None:
    with pytest.raises(ValueError, match="both"):
        RollbackRules.of(KeyError, (KeyError, ValueError))
    with pytest.raises(TypeError, match="exception classes"):
        global_transaction(rollback_for="KeyError")  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("options", "outcome"),
    [
        ({"rollback_for": ValueError}, "rollback"),  # unmatched
        ({"no_rollback_for": LookupError}, "commit"),
        ({"rollback_for": Exception, "no_rollback_for": KeyError}, "commit"),
        ({"rollback_for": KeyError, "no_rollback_for": Exception}, "rollback"),
    ],
)
def test_rules_decide_what_the_tc_is_told(rm: ScriptedRm, options: dict[str, Any], outcome: str) -> None:
    xids: list[str] = []

    @global_transaction(**options)
    def work() -> None:
        xid = get_xid()
        assert xid is not None
        xids.append(xid)
        rm.register(xid)
        raise KeyError("business")

    with pytest.raises(KeyError, match="business"):  # re-raised after commit or rollback alike
        work()
    assert_ended(rm, xids[0], outcome)


# --- what the TC decided -----------------------------------------------------------------------------------


def test_client_detects_the_timeout_before_commit_and_rolls_back(rm: ScriptedRm) -> None:
    with pytest.raises(TimeoutRollbackedError, match="timeout") as caught, global_transaction(timeout=0.3) as tx:
        assert tx is not None
        rm.register(tx.xid)
        time.sleep(0.45)
    assert caught.value.xid == tx.xid
    assert isinstance(caught.value, RollbackedByTcError)
    rm.wait_for(tx.xid, "rollback")
    assert rm.outcomes(tx.xid) == ["rollback"]
    wait_for_status(tx.xid, G.Finished)
    assert get_xid() is None


def test_tc_answering_timeout_rollbacking_raises_the_timeout_error(rm: ScriptedRm) -> None:
    tx = seata.begin("short", timeout=0.2)
    rm.register(tx.xid)
    rm.gate.clear()  # hold the TC's rollback mid-way, so commit arrives while it runs
    rm.wait_for(tx.xid, "rollback", arrived=True)  # the TC's timeout checker started it
    with pytest.raises(TimeoutRollbackedError) as caught:
        seata.reload(tx.xid).commit()  # a reloaded handle: no client-side timeout check
    assert caught.value.status == G.TimeoutRollbacking
    rm.gate.set()
    rm.wait_for(tx.xid, "rollback")
    assert rm.outcomes(tx.xid) == ["rollback"]
    wait_for_status(tx.xid, G.Finished)


def test_commit_after_someone_else_rolled_back_raises(rm: ScriptedRm) -> None:
    rm.gate.clear()
    with pytest.raises(RollbackedByTcError, match="instead of committing") as caught, global_transaction() as tx:
        assert tx is not None
        rm.register(tx.xid)
        other = threading.Thread(target=seata.reload(tx.xid).rollback)  # an operator, say
        other.start()
        rm.wait_for(tx.xid, "rollback", arrived=True)
    assert (caught.value.xid, caught.value.status) == (tx.xid, G.Rollbacking)
    assert not isinstance(caught.value, TimeoutRollbackedError)
    rm.gate.set()
    other.join()
    assert_ended(rm, tx.xid, "rollback")


def test_commit_repeated_after_a_lost_answer_hears_committed(rm: ScriptedRm) -> None:
    with global_transaction() as tx:
        assert tx is not None
        rm.register(tx.xid)
    assert_ended(rm, tx.xid, "commit")
    again = seata.reload(tx.xid)
    again.commit()  # the TC remembers how it ended: no heuristic error
    assert again.status() == G.Finished


def test_commit_of_a_transaction_the_tc_no_longer_knows_is_heuristic(rm: ScriptedRm) -> None:
    with global_transaction() as tx:
        assert tx is not None
    unknown = tx.xid.rsplit(":", 1)[0] + ":12345"  # ended long ago, or before a TC restart
    with pytest.raises(CommitHeuristicError, match="no longer knows") as caught:
        seata.reload(unknown).commit()
    assert (caught.value.xid, caught.value.status) == (unknown, G.Finished)
    assert isinstance(caught.value, TransactionError) and isinstance(caught.value, PyseataError)


def test_a_branch_that_cannot_commit_gives_commit_failed(rm: ScriptedRm) -> None:
    with pytest.raises(CommitFailedError, match="operator") as caught, global_transaction() as tx:
        assert tx is not None
        rm.register(tx.xid)
        rm.answers[("commit", tx.xid)] = BranchStatus.PhaseTwo_CommitFailed_Unretryable
    assert (caught.value.xid, caught.value.status) == (tx.xid, G.CommitFailed)
    assert status_of(tx.xid) == G.CommitFailed  # kept for an operator
    assert get_xid() is None


def test_a_failed_rollback_rides_on_the_business_exception(rm: ScriptedRm) -> None:
    with pytest.raises(BusinessError) as caught, global_transaction() as tx:
        assert tx is not None
        rm.register(tx.xid)
        rm.answers[("rollback", tx.xid)] = BranchStatus.PhaseTwo_RollbackFailed_Unretryable
        raise BusinessError
    notes = getattr(caught.value, "__notes__", [])
    assert any(tx.xid in note and "RollbackFailed" in note for note in notes), notes
    assert status_of(tx.xid) == G.RollbackFailed


# --- the explicit API ------------------------------------------------------------------------------------


def test_explicit_begin_commit_status(rm: ScriptedRm) -> None:
    tx = seata.begin("explicit", timeout=10)
    assert get_xid() is None  # begin does not bind
    with seata.bound(tx.xid):
        rm.register(get_xid())
    assert tx.status() == G.Begin
    assert tx.commit() == G.Committed
    assert tx.status() == G.Finished
    assert rm.outcomes(tx.xid) == ["commit"]


async def test_explicit_async_begin_rollback_status(rm: ScriptedRm) -> None:
    tx = await seata.abegin("explicit")
    assert isinstance(tx, GlobalTransaction) and tx.timeout == 60.0  # the configured default
    await rm.aregister(tx.xid)
    assert await tx.astatus() == G.Begin
    assert await tx.arollback() == G.Rollbacked
    assert await tx.astatus() == G.Finished
    assert rm.outcomes(tx.xid) == ["rollback"]


def test_an_explicit_rollback_inside_a_block_ends_it(rm: ScriptedRm) -> None:
    with global_transaction() as tx:
        assert tx is not None
        rm.register(tx.xid)
        tx.rollback()  # the block sees it ended and does not commit
    assert_ended(rm, tx.xid, "rollback")


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        global_transaction(timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        seata.begin(timeout=-1)


def test_generators_cannot_be_decorated() -> None:
    def produce() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        global_transaction(produce)


def test_logs_carry_the_xid(rm: ScriptedRm, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pyseata.client.tm"), global_transaction() as tx:
        assert tx is not None
    lines = [r.getMessage() for r in caplog.records if r.name == "pyseata.client.tm"]
    assert len(lines) >= 2 and all(f"xid={tx.xid}" in line for line in lines), lines


# --- an unreachable TC -------------------------------------------------------------------------------------


@pytest.fixture
def lonely_tc() -> Any:
    """A TC of its own, and a runtime on it with short timeouts, for tests that stop the TC."""
    tc = RunningTc()
    address = tc.start()
    runtime = ClientRuntime(client_config(address, tm_request_timeout=0.3, commit_retry_count=3,
                                          rollback_retry_count=2, retry_interval=0.05))  # fmt: skip
    runtime.start()
    yield tc, runtime
    runtime.close()
    tc.stop()


def test_commit_with_the_tc_gone_raises_tc_unreachable_after_the_retries(lonely_tc: Any) -> None:
    tc, runtime = lonely_tc
    started = time.monotonic()
    with pytest.raises(TcUnreachableError, match="3 attempt") as caught, global_transaction(runtime=runtime) as tx:
        assert tx is not None
        tc.stop()
        started = time.monotonic()
    elapsed = time.monotonic() - started
    assert caught.value.xid == tx.xid
    assert "grouplist" in str(caught.value)
    assert elapsed >= 3 * 0.3  # three attempts, each waiting for a connection
    assert get_xid() is None


def test_rollback_with_the_tc_gone_still_raises_the_business_exception(lonely_tc: Any) -> None:
    tc, runtime = lonely_tc
    with pytest.raises(BusinessError) as caught, global_transaction(runtime=runtime) as tx:
        assert tx is not None
        tc.stop()
        raise BusinessError
    assert any("2 attempt" in note for note in getattr(caught.value, "__notes__", []))
    assert get_xid() is None


async def test_begin_with_no_tc_raises_tc_unreachable(lonely_tc: Any) -> None:
    tc, runtime = lonely_tc
    tc.stop()
    with pytest.raises(TcUnreachableError, match="Nothing ran"):
        async with global_transaction(runtime=runtime):
            pytest.fail("the block must not run")
    assert get_xid() is None


def test_without_init_the_error_says_what_to_do() -> None:
    seata.shutdown()
    with pytest.raises(seata.ClientNotStartedError, match=r"init\("), global_transaction():
        pytest.fail("the block must not run")
    assert get_xid() is None


# --- many at once --------------------------------------------------------------------------------------------


async def test_concurrent_async_transactions_keep_their_own_xids(rm: ScriptedRm) -> None:
    async def one(i: int) -> tuple[str, str]:
        xids: list[str] = []
        try:
            async with global_transaction(name=f"order-{i}") as tx:
                assert tx is not None
                xids.append(tx.xid)
                for _ in range(3):
                    await asyncio.sleep(0)  # interleave with the others
                    assert get_xid() == tx.xid
                await rm.aregister(tx.xid)
                if i % 3 == 0:
                    raise BusinessError
        except BusinessError:
            return xids[0], "rollback"
        return xids[0], "commit"

    results = await asyncio.gather(*(one(i) for i in range(12)))
    assert len({xid for xid, _ in results}) == 12
    for xid, outcome in results:
        assert rm.outcomes(xid) == [outcome]
    assert get_xid() is None


async def test_task_group_children_work_inside_the_transaction(rm: ScriptedRm) -> None:
    async with global_transaction() as tx:
        assert tx is not None
        async with asyncio.TaskGroup() as group:
            branches = [group.create_task(rm.aregister(get_xid())) for _ in range(3)]
    assert len({task.result() for task in branches}) == 3
    assert rm.outcomes(tx.xid) == ["commit"] * 3
    assert get_xid() is None


def test_threads_run_transactions_side_by_side(rm: ScriptedRm) -> None:
    @global_transaction
    def work(i: int) -> str:
        xid = get_xid()
        assert xid is not None
        rm.register(xid)
        time.sleep(0.01)
        assert get_xid() == xid
        return xid

    with ContextExecutor(ThreadPoolExecutor(4)) as pool:
        xids = list(pool.map(work, range(8)))
        assert pool.submit(get_xid).result() is None  # nothing left on the workers
    assert len(set(xids)) == 8
    for xid in xids:
        assert rm.outcomes(xid) == ["commit"]


def test_a_pool_job_joins_the_callers_transaction(rm: ScriptedRm) -> None:
    with global_transaction() as tx, ContextExecutor(ThreadPoolExecutor(2)) as pool:
        assert tx is not None
        joined = pool.submit(global_transaction(propagation=Propagation.MANDATORY)(lambda: rm.register(get_xid())))
        joined.result()
    assert_ended(rm, tx.xid, "commit")


# --- the runtime ----------------------------------------------------------------------------------------------


def test_the_async_api_also_works_on_the_runtimes_own_loop(runtime: ClientRuntime, rm: ScriptedRm) -> None:
    async def on_the_runtime_loop() -> tuple[str, GlobalStatus]:
        tx = await seata.abegin("on-loop")
        return tx.xid, await tx.acommit()

    xid, status = runtime.run(on_the_runtime_loop())
    assert status == G.Committed
    assert status_of(xid) == G.Finished


def test_init_twice_is_refused_and_shutdown_is_idempotent(runtime: ClientRuntime, tc_address: str) -> None:
    with pytest.raises(RuntimeError, match="already called"):
        seata.init(client_config(tc_address))
    assert seata.get_runtime() is runtime
    seata.shutdown()
    seata.shutdown()
    with pytest.raises(seata.ClientNotStartedError):
        seata.get_runtime()
    with pytest.raises(TypeError, match="not both"):
        seata.init(client_config(tc_address), application_id="x")


async def test_ainit_and_ashutdown_from_asyncio(tc_address: str, rm: ScriptedRm) -> None:
    seata.shutdown()  # the fixture's runtime: this test starts its own
    await seata.ainit(client_config(tc_address, application_id="async-app"))
    try:
        async with global_transaction() as tx:
            await rm.aregister(tx.xid)
        assert rm.outcomes(tx.xid) == ["commit"]
    finally:
        await seata.ashutdown()
    with pytest.raises(seata.ClientNotStartedError, match="init"):
        await seata.abegin()


def test_a_block_object_runs_one_block_at_a_time(rm: ScriptedRm) -> None:
    block = global_transaction()
    with block as first, pytest.raises(RuntimeError, match="already running"), block:
        pass
    with block as second:  # once ended, it can run again
        assert second.xid != first.xid
    assert status_of(second.xid) == G.Finished
