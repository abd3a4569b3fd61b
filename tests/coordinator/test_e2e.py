"""Whole global transactions, end to end over real sockets: a TM, scripted RMs of different
applications, a real TC with its recovery loops running. Commit, rollback, timeout, RMs that
fail (retryably, unretryably, by raising, by hanging), RMs that go away and come back."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from asyncsupport import eventually, within
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus

from .conftest import RM, TM, Call, LogRecords, has_status, running_tc, status_in_store, store_empty

B = BranchStatus
G = GlobalStatus
ORDERS = "jdbc:mysql://127.0.0.1:3306/orders"
STOCK = "jdbc:mysql://127.0.0.1:3306/stock"
PAYMENT = "payment-tcc-action"


class Webhook:
    """A tiny HTTP server that records the JSON documents POSTed to it."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        self.received = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.documents.append(json.loads(body))
                self.send_response(204)
                self.end_headers()
                outer.received.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[Webhook]:
        hook = cls()
        hook.thread.start()
        try:
            yield hook
        finally:
            hook.server.shutdown()
            hook.server.server_close()


def failing(times: int, failure: BranchStatus | BaseException) -> Any:
    """A script that answers ``failure`` to the first ``times`` requests, then succeeds."""
    left = [times]

    def script(call: Call) -> BranchStatus | BaseException:
        if left[0] > 0:
            left[0] -= 1
            return failure
        return B.PhaseTwo_Committed if call.kind == "commit" else B.PhaseTwo_Rollbacked

    return script


# --- the happy paths -------------------------------------------------------------------------------------


async def test_commit_across_applications(store_url: str) -> None:
    async with (running_tc(store_url) as tc, TM(tc.address[1], app="shop") as tm,
                RM(tc.address[1], [ORDERS], app="order-svc") as orders,
                RM(tc.address[1], [STOCK], app="stock-svc") as stock,
                RM(tc.address[1], [PAYMENT], app="pay-svc") as payment):
        xid = await tm.begin(name="purchase")
        o = await orders.register(xid, lock_key="t_order:1001")
        s = await stock.register(xid, lock_key="t_stock:7;t_stock_log:99")
        p = await payment.register(xid, branch_type=BranchType.TCC, application_data='{"amount":5}')
        assert await tm.commit(xid) == G.Committed
        await eventually(lambda: store_empty(tc.store))
        assert orders.done_for(xid) == [("commit", o)]
        assert stock.done_for(xid) == [("commit", s)]
        assert payment.done_for(xid) == [("commit", p)]
        assert not any(c.kind == "rollback" for rm in (orders, stock, payment) for c in rm.calls)


async def test_rollback_across_applications(store_url: str) -> None:
    async with (running_tc(store_url) as tc, TM(tc.address[1], app="shop") as tm,
                RM(tc.address[1], [ORDERS], app="order-svc") as orders,
                RM(tc.address[1], [STOCK], app="stock-svc") as stock):
        xid = await tm.begin()
        o = await orders.register(xid, lock_key="t_order:1001")
        s = await stock.register(xid, lock_key="t_stock:7")
        assert await tm.rollback(xid) == G.Rollbacked
        assert await store_empty(tc.store)
        assert orders.done_for(xid) == [("rollback", o)]
        assert stock.done_for(xid) == [("rollback", s)]


async def test_a_timed_out_transaction_is_rolled_back_and_the_late_commit_hears_so(store_url: str) -> None:
    async with (running_tc(store_url) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [ORDERS]) as rm):
        xid = await tm.begin(timeout=1000)  # long enough to register first
        branch = await rm.register(xid, lock_key="t_order:1")
        await eventually(lambda: rm.done_for(xid) == [("rollback", branch)], what="the timeout rollback")
        await eventually(lambda: store_empty(tc.store))
        # Seata would answer Finished (gone, outcome unknown); this TC still knows how it ended
        assert await tm.commit(xid) == G.TimeoutRollbacked


# --- RMs that fail -----------------------------------------------------------------------------------------


async def test_rm_failing_retryably_then_succeeding(store_url: str) -> None:
    async with (running_tc(store_url) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [ORDERS]) as rm):
        # rollback: the TM hears RollbackRetrying, recovery finishes it
        rm.script = failing(2, B.PhaseTwo_RollbackFailed_Retryable)
        xid = await tm.begin()
        branch = await rm.register(xid, lock_key="t:1")
        assert await tm.rollback(xid) == G.RollbackRetrying
        await eventually(lambda: store_empty(tc.store))
        assert rm.calls_for(xid) == [("rollback", branch)] * 3

        # synchronous commit (TCC): CommitRetrying, then committed
        rm.script = failing(2, B.PhaseTwo_CommitFailed_Retryable)
        xid = await tm.begin()
        branch = await rm.register(xid, branch_type=BranchType.TCC)
        assert await tm.commit(xid) == G.CommitRetrying
        await eventually(lambda: store_empty(tc.store))
        assert rm.calls_for(xid) == [("commit", branch)] * 3

        # asynchronous commit (AT): the TM heard Committed long before
        rm.script = failing(2, B.PhaseTwo_CommitFailed_Retryable)
        xid = await tm.begin()
        branch = await rm.register(xid, lock_key="t:1")
        assert await tm.commit(xid) == G.Committed
        await eventually(lambda: store_empty(tc.store))
        assert rm.calls_for(xid) == [("commit", branch)] * 3


async def test_rm_handler_raising_or_hanging_is_retried() -> None:
    async with (running_tc(branch_request_timeout=0.3) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [ORDERS]) as rm):
        # an exception in the RM becomes a failed answer: retryable
        rm.script = failing(1, RuntimeError("database is down"))
        xid = await tm.begin()
        await rm.register(xid, lock_key="t:1")
        assert await tm.rollback(xid) == G.RollbackRetrying
        await eventually(lambda: store_empty(tc.store))

        # an RM that does not answer in time: the TC gives up on that attempt and retries
        hang = asyncio.Event()
        answers = [hang]

        async def slow_then_fine(call: Call) -> BranchStatus:
            if answers:
                await answers.pop().wait()  # never set: this request times out at the TC
            return B.PhaseTwo_Rollbacked

        rm.script = slow_then_fine
        xid = await tm.begin()
        await rm.register(xid, lock_key="t:2")
        assert await tm.rollback(xid) == G.RollbackRetrying
        await eventually(lambda: store_empty(tc.store))
        hang.set()


async def test_unretryable_failures_stop_for_an_operator_with_an_alert_and_a_webhook(store_url: str) -> None:
    with Webhook.running() as hook, LogRecords("pyseata.tc.alert") as alerts:
        async with (running_tc(store_url, alert_webhook=hook.url) as tc, TM(tc.address[1]) as tm,
                    RM(tc.address[1], [ORDERS]) as rm):
            # AT rollback: the data changed since phase one (dirty write)
            rm.script = lambda call: B.PhaseTwo_RollbackFailed_Unretryable
            dirty = await tm.begin()
            await rm.register(dirty, lock_key="t:1")
            assert await tm.rollback(dirty) == G.RollbackFailed
            assert await status_in_store(tc.store, dirty) == G.RollbackFailed
            assert len(await tc.store.get_locks(dirty)) == 1  # kept: the row is in doubt

            # TCC commit: the confirm cannot be done
            rm.script = lambda call: B.PhaseTwo_CommitFailed_Unretryable
            broken = await tm.begin()
            await rm.register(broken, branch_type=BranchType.TCC)
            assert await tm.commit(broken) == G.CommitFailed
            assert await status_in_store(tc.store, broken) == G.CommitFailed

            calls = len(rm.calls)
            await eventually(lambda: len(hook.documents) == 2, what="both webhooks arrive")
            assert len(rm.calls) == calls  # nothing retried a final state meanwhile

    errors = [r.getMessage() for r in alerts.records if r.levelno == logging.ERROR]
    assert any(dirty in text and "RollbackFailed" in text for text in errors), errors
    assert any(broken in text and "CommitFailed" in text for text in errors), errors
    by_xid = {doc["xid"]: doc for doc in hook.documents}
    assert by_xid[dirty]["status"] == "RollbackFailed"
    assert by_xid[broken]["status"] == "CommitFailed"
    assert all(doc["reason"] and doc["time_ms"] > 0 for doc in hook.documents)


async def test_a_timed_out_transaction_with_a_dirty_branch_ends_timeout_rollback_failed() -> None:
    async with running_tc() as tc, TM(tc.address[1]) as tm, RM(tc.address[1], [ORDERS]) as rm:
        rm.script = lambda call: B.PhaseTwo_RollbackFailed_Unretryable
        xid = await tm.begin(timeout=1000)
        await rm.register(xid, lock_key="t:1")
        await eventually(lambda: has_status(tc.store, xid, G.TimeoutRollbackFailed))


async def test_a_failing_webhook_does_not_disturb_the_tc() -> None:
    with LogRecords("pyseata.tc.alert") as alerts:
        async with (running_tc(alert_webhook="http://127.0.0.1:9/nothing-listens-here") as tc,
                    TM(tc.address[1]) as tm, RM(tc.address[1], [ORDERS]) as rm):
            rm.script = lambda call: B.PhaseTwo_RollbackFailed_Unretryable
            xid = await tm.begin()
            await rm.register(xid, lock_key="t:1")
            assert await tm.rollback(xid) == G.RollbackFailed
            await eventually(lambda: any(r.levelno == logging.WARNING for r in alerts.records))
            assert await tm.status(xid) == G.RollbackFailed


# --- RMs that go away ---------------------------------------------------------------------------------------


async def test_phase_two_waits_for_an_rm_that_is_down_and_completes_when_it_is_back(store_url: str) -> None:
    async with running_tc(store_url) as tc, TM(tc.address[1]) as tm:
        first_life = RM(tc.address[1], [ORDERS], app="order-svc")
        async with first_life:
            rolled = await tm.begin()
            r_branch = await first_life.register(rolled, lock_key="t:1")
            committed = await tm.begin()
            c_branch = await first_life.register(committed, lock_key="t:2")
            tcc = await tm.begin()
            t_branch = await first_life.register(tcc, branch_type=BranchType.TCC)
        # The RM process is gone. The TM decides anyway.
        assert await tm.rollback(rolled) == G.RollbackRetrying
        assert await tm.commit(committed) == G.Committed
        assert await tm.commit(tcc) == G.CommitRetrying
        assert await tc.store.count_globals() == 3

        # The RM comes back (a new process: new connection, new port, same application).
        async with RM(tc.address[1], [ORDERS], app="order-svc") as second_life:
            await eventually(lambda: store_empty(tc.store), what="phase two completes on the new connection")
            assert second_life.done_for(rolled) == [("rollback", r_branch)]
            assert second_life.done_for(committed) == [("commit", c_branch)]
            assert second_life.done_for(tcc) == [("commit", t_branch)]


async def test_an_at_branch_may_be_finished_by_another_application_with_the_same_resource() -> None:
    """Seata's channel choice: for AT any application that registered the resource will do."""
    async with running_tc() as tc, TM(tc.address[1]) as tm:
        async with RM(tc.address[1], [ORDERS], app="order-svc") as gone:
            xid = await tm.begin()
            branch = await gone.register(xid, lock_key="t:1")
        async with RM(tc.address[1], [ORDERS], app="order-admin") as other:
            assert await tm.rollback(xid) == G.Rollbacked
            assert other.done_for(xid) == [("rollback", branch)]


async def test_many_concurrent_transactions_end_consistently(store_url: str) -> None:
    async with (running_tc(store_url) as tc, TM(tc.address[1]) as tm,
                RM(tc.address[1], [ORDERS], app="order-svc") as orders,
                RM(tc.address[1], [STOCK], app="stock-svc") as stock):
        outcome: dict[str, str] = {}

        async def one(n: int) -> None:
            xid = await tm.begin()
            await orders.register(xid, lock_key=f"t_order:{n}")
            await stock.register(xid, lock_key=f"t_stock:{n}")
            if n % 3:
                assert await tm.commit(xid) == G.Committed
                outcome[xid] = "commit"
            else:
                assert await tm.rollback(xid) == G.Rollbacked
                outcome[xid] = "rollback"

        await within(asyncio.gather(*(one(n) for n in range(60))), 60, "60 transactions finish")
        await eventually(lambda: store_empty(tc.store))
        for xid, kind in outcome.items():
            assert [k for k, _ in orders.done_for(xid)] == [kind]
            assert [k for k, _ in stock.done_for(xid)] == [kind]
