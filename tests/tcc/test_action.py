"""TCC actions through a real TC (in this process): the three ways to declare one, the context
that reaches confirm and cancel, the fence in the business transaction on every database, TC
retries, suspension, and the try outside a global transaction."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from contextlib import nullcontext
from typing import Any

import pytest

import pyseata.client as seata
from pyseata import tcc
from pyseata.client.rm import BranchRequest
from pyseata.protocol.enums import BranchType, GlobalStatus
from pyseata.tcc import BusinessActionContext, FenceStatus, TryRefusedError
from services import wait_until

from .conftest import Bank, Database, InsufficientFundsError, Knobs, account_action

pytestmark = pytest.mark.usefixtures("runtime")
S = FenceStatus


class ChangedMindError(Exception):
    pass


def wait_finished(xid: str) -> None:
    wait_until(lambda: seata.reload(xid).status() == GlobalStatus.Finished, f"{xid} ends")


# --- commit and rollback with the fence, on every database ------------------------------------------


def test_commit_confirms_once_in_the_business_transaction(db: Database) -> None:
    bank, knobs = Bank(db), Knobs()
    bank.open("alice", 100)
    action = account_action("pay-commit", bank, db.fence(), knobs)
    with seata.global_transaction(name="pay") as tx:
        action("alice", 30)
        assert bank.state("alice") == (70, 30)  # the try's local transaction committed
    assert (bank.state("alice"), dict(bank.events(tx.xid))) == ((70, 0), {"try": 1, "confirm": 1})
    ctx = knobs.contexts[0]
    assert (ctx.xid, ctx.action_name, ctx["account"], ctx["amount"]) == (tx.xid, "pay-commit", "alice", 30)
    assert db.fence().status(tx.xid, ctx.branch_id or 0) is S.COMMITTED
    # The TC asks again (its answer was lost): the fence answers without running the confirm.
    request = BranchRequest(tx.xid, ctx.branch_id or 0, "pay-commit", BranchType.TCC, ctx.application_data())
    assert action.branch_commit(request) is True
    assert (bank.state("alice"), knobs.started["confirm"]) == ((70, 0), 1)


def test_rollback_cancels_once(db: Database) -> None:
    bank, knobs = Bank(db), Knobs()
    bank.open("bob", 100)
    action = account_action("pay-rollback", bank, db.fence(), knobs)
    with pytest.raises(ChangedMindError), seata.global_transaction(name="pay") as tx:
        action("bob", 40)
        raise ChangedMindError
    assert (bank.state("bob"), dict(bank.events(tx.xid))) == ((100, 0), {"try": 1, "cancel": 1})
    ctx = knobs.contexts[0]
    request = BranchRequest(tx.xid, ctx.branch_id or 0, "pay-rollback", BranchType.TCC, ctx.application_data())
    assert action.branch_rollback(request) is True  # duplicate cancel
    assert (bank.state("bob"), knobs.started["cancel"]) == ((100, 0), 1)


def test_a_failing_try_is_rolled_back_as_an_empty_rollback(db: Database) -> None:
    bank, knobs = Bank(db), Knobs()
    bank.open("carol", 10)
    action = account_action("pay-short", bank, db.fence(), knobs)
    with pytest.raises(InsufficientFundsError), seata.global_transaction(name="pay") as tx:
        action("carol", 50)  # registers its branch, then fails: nothing of it is kept
    wait_finished(tx.xid)
    assert (bank.state("carol"), dict(bank.events(tx.xid)), knobs.started["cancel"]) == ((10, 0), {}, 0)
    rows = db.run(f"SELECT status FROM tcc_fence_log WHERE xid = {db.p}", (tx.xid,))
    assert [int(r[0]) for r in rows] == [S.SUSPENDED]


@pytest.mark.parametrize("phase", ["confirm", "cancel"])
def test_a_failing_phase_two_is_retried_by_the_tc_and_runs_once(db: Database, phase: str) -> None:
    bank, knobs = Bank(db), Knobs()
    knobs.failures[phase] = 2
    bank.open("dave", 100)
    action = account_action(f"pay-retry-{phase}", bank, db.fence(), knobs)
    with pytest.raises(ChangedMindError) if phase == "cancel" else nullcontext(), seata.global_transaction() as tx:
        action("dave", 25)
        if phase == "cancel":
            raise ChangedMindError
    wait_finished(tx.xid)
    assert knobs.started[phase] == 3  # two failures, then the one that counts
    assert dict(bank.events(tx.xid)) == {"try": 1, phase: 1}
    assert bank.state("dave") == ((75, 0) if phase == "confirm" else (100, 0))


def test_a_try_after_its_cancel_is_refused(make_db: Any) -> None:
    """Suspension through the TC: the rollback overtakes a try between its register and its work."""
    db: Database = make_db("sqlite")
    bank, knobs = Bank(db), Knobs()
    bank.open("erin", 100)
    at_fence, go = threading.Event(), threading.Event()

    class LateFence(tcc.Fence):
        def prepare(self, *args: Any, **kwargs: Any) -> Any:
            at_fence.set()
            go.wait(10)
            return super().prepare(*args, **kwargs)

    action = account_action("pay-late", bank, LateFence(db.connect, "sqlite", clean_period=0), knobs)
    tx = seata.begin(name="late")
    outcome: list[BaseException | None] = []

    def late_try() -> None:
        with seata.bound(tx.xid):
            try:
                action("erin", 60)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

    trying = threading.Thread(target=late_try)
    trying.start()
    assert at_fence.wait(10)
    assert tx.rollback() == GlobalStatus.Rollbacked  # the branch's cancel: an empty rollback
    go.set()
    trying.join(10)
    assert isinstance(outcome[0], TryRefusedError), outcome
    assert (bank.state("erin"), dict(bank.events(tx.xid)), knobs.started["cancel"]) == ((100, 0), {}, 0)


# --- the action context ------------------------------------------------------------------------------


def test_the_context_carries_arguments_additions_and_seatas_keys(make_db: Any) -> None:
    db: Database = make_db("sqlite")
    bank, knobs = Bank(db), Knobs()
    bank.open("frank", 100)
    action = account_action("pay-context", bank, db.fence(), knobs)
    with seata.global_transaction():
        action("frank", 5)
    ctx = knobs.contexts[0]
    start = ctx.action_context.pop("action-start-time")
    assert isinstance(start, int) and start > 1_600_000_000_000
    assert ctx.action_context == {
        "account": "frank", "amount": 5, "frozen_by": "pay-context",
        "sys::prepare": "reserve", "sys::commit": "confirm", "sys::rollback": "cancel",
        "actionName": "pay-context", "useTCCFence": True, "host-name": socket.gethostname(),
    }  # fmt: skip
    assert (ctx.branch_type, ctx.connection) == (BranchType.TCC, None)  # the connection never outlives the call


def test_a_java_shaped_context_is_read() -> None:
    data = json.dumps({"actionContext": {"actionName": "orderTcc", "orderId": 7, "sys::commit": "commit",
                                         "useTCCFence": False}})  # fmt: skip
    ctx = BusinessActionContext.from_application_data(data, action_name="fallback", xid="127.0.0.1:8091:1", branch_id=2)
    assert (ctx.action_name, ctx["orderId"], ctx.get("missing"), ctx.xid, ctx.branch_id) == (
        "orderTcc", 7, None, "127.0.0.1:8091:1", 2,
    )  # fmt: skip
    assert BusinessActionContext.from_application_data(None, action_name="x").action_context == {}
    with pytest.raises(ValueError, match="not JSON"):
        BusinessActionContext.from_application_data("{", action_name="x")
    with pytest.raises(ValueError, match="actionContext"):
        BusinessActionContext.from_application_data('{"actionContext": 3}', action_name="x")
    with pytest.raises(ValueError, match="nested too deeply"):  # was a RecursionError from json
        BusinessActionContext.from_application_data("[" * 100_000, action_name="x")


def test_context_additions_must_be_json_and_not_seatas_keys() -> None:
    ctx = BusinessActionContext("a")
    ctx.add(n=1)
    assert ctx.is_updated and ctx["n"] == 1
    with pytest.raises(ValueError, match="reserved"):
        ctx.add({"actionName": "other"})
    with pytest.raises(TypeError, match="JSON"):
        ctx.add(when=object())
    with pytest.raises(LookupError):
        tcc.action_context()


# --- declaring actions --------------------------------------------------------------------------------


class Ledger:
    """A no-fence business: phase two functions that record what they were given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def record(self, phase: str, ctx: BusinessActionContext) -> None:
        self.calls.append((phase, {k: ctx[k] for k in ("order", "note") if k in ctx}))


def test_the_decorator_with_confirm_and_cancel_registration() -> None:
    ledger = Ledger()

    @tcc.action
    def book(order: int) -> str:
        tcc.action_context().add(note=f"booked {order}")
        return f"try {order}"

    @book.confirm
    def _(ctx: BusinessActionContext) -> None:
        ledger.record("confirm", ctx)

    @book.cancel
    def _(ctx: BusinessActionContext) -> None:
        ledger.record("cancel", ctx)

    assert book.resource_id.endswith("book") and book.__wrapped__.__name__ == "book"
    with seata.global_transaction():
        assert book(1) == "try 1"
    with pytest.raises(ChangedMindError), seata.global_transaction():
        book(2)
        raise ChangedMindError
    assert ledger.calls == [("confirm", {"order": 1, "note": "booked 1"}), ("cancel", {"order": 2, "note": "booked 2"})]


def test_tcc_action_with_confirm_and_cancel_arguments() -> None:
    ledger = Ledger()
    book = tcc.tcc_action(name="book-args", confirm=lambda ctx: ledger.record("confirm", ctx),
                          cancel=lambda ctx: ledger.record("cancel", ctx))(lambda order: order * 2)  # fmt: skip
    with seata.global_transaction():
        assert book(order=21) == 42
    assert ledger.calls == [("confirm", {"order": 21})]


def test_the_class_form(make_db: Any) -> None:
    db: Database = make_db("sqlite")
    bank = Bank(db)
    bank.open("gina", 100)

    class Payment(tcc.LocalTcc):
        name = "pay-class"

        def prepare(self, account: str, amount: int) -> str:
            ctx = tcc.action_context()
            bank.freeze(ctx.connection, ctx.xid or "", ctx.branch_id or 0, account, amount)
            return "frozen"

        def confirm(self, ctx: BusinessActionContext) -> None:
            bank.spend(ctx.connection, ctx.xid or "", ctx.branch_id or 0, ctx["account"], ctx["amount"])

        def cancel(self, ctx: BusinessActionContext) -> None:
            bank.release(ctx.connection, ctx.xid or "", ctx.branch_id or 0, ctx["account"], ctx["amount"])

    payment = Payment(fence=db.fence())
    with seata.global_transaction() as committed:
        assert payment.prepare("gina", 10) == "frozen"
    with pytest.raises(ChangedMindError), seata.global_transaction() as rolled_back:
        payment.prepare("gina", 20)
        raise ChangedMindError
    assert bank.state("gina") == (90, 0)
    assert dict(bank.events(committed.xid)) == {"try": 1, "confirm": 1}
    assert dict(bank.events(rolled_back.xid)) == {"try": 1, "cancel": 1}
    with pytest.raises(ValueError, match="already registered"):
        Payment()  # one action per name in a process


async def test_an_async_action_tries_on_the_callers_loop_and_ends_on_the_runtimes() -> None:
    loops: dict[str, asyncio.AbstractEventLoop] = {}

    @tcc.action(name="async-book")
    async def book(order: int) -> int:
        loops["try"] = asyncio.get_running_loop()
        tcc.action_context().add(seen=True)
        return order

    @book.confirm
    async def _(ctx: BusinessActionContext) -> None:
        assert ctx["seen"] is True
        loops["confirm"] = asyncio.get_running_loop()

    @book.cancel
    async def _(ctx: BusinessActionContext) -> None:
        loops["cancel"] = asyncio.get_running_loop()

    async with seata.global_transaction():
        assert await book(3) == 3
    assert loops["try"] is asyncio.get_running_loop()
    assert loops["confirm"] is seata.get_runtime().loop_thread.loop
    with pytest.raises(TypeError, match="async"):
        tcc.action(name="async-fenced", fence=tcc.Fence(lambda: None, "sqlite", clean_period=0))(book.__wrapped__)


def test_declaration_mistakes_are_refused_before_any_branch() -> None:
    no_cancel = tcc.action(name="half", confirm=lambda ctx: None)(lambda order: order)
    rm_calls: list[Any] = []
    with pytest.raises(TypeError, match="no cancel"), seata.global_transaction():
        no_cancel(1)
    opaque = tcc.action(name="opaque", confirm=rm_calls.append, cancel=rm_calls.append)(lambda order, conn: order)
    with pytest.raises(TypeError, match="argument 'conn'"), seata.global_transaction():
        opaque(1, object())
    assert rm_calls == []  # nothing was registered, so nothing was cancelled
    chosen = tcc.action(name="chosen", params=["order"], confirm=rm_calls.append, cancel=rm_calls.append)(
        lambda order, conn: order
    )
    with seata.global_transaction():
        chosen(5, object())
    assert [ctx["order"] for ctx in rm_calls] == [5] and "conn" not in rm_calls[0]
    with pytest.raises(ValueError, match="clash"):
        tcc.action(name="clash", confirm=rm_calls.append, cancel=rm_calls.append)(lambda actionName: None)  # noqa: N803


# --- outside a global transaction -------------------------------------------------------------------


def test_outside_a_transaction_the_try_just_runs_or_is_refused(make_db: Any) -> None:
    db: Database = make_db("sqlite")
    bank = Bank(db)
    bank.open("hank", 100)
    plain = account_action("pay-plain", bank, db.fence())
    plain("hank", 10)  # its own local transaction; no branch, no fence row
    assert bank.state("hank") == (90, 10)
    assert db.run("SELECT COUNT(*) FROM tcc_fence_log") == [(0,)]
    strict = tcc.action(name="strict", require_transaction=True, confirm=lambda c: None, cancel=lambda c: None)(
        lambda: None
    )
    with pytest.raises(seata.PropagationError, match="requires a global transaction"):
        strict()
