"""The fence on SQLite, PostgreSQL and MariaDB, through its own API: every row status in every
phase, the business change in the same local transaction, races, and the clean-up."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest

from pyseata.client.rm import UnretryableError
from pyseata.tcc import (
    Fence,
    FenceRaceError,
    FenceRowMissingError,
    FenceStateError,
    FenceStatus,
    TryRefusedError,
)
from services import wait_until

from .conftest import Bank, Database, InsufficientFundsError

S = FenceStatus
ACTION = "account"
_numbers = itertools.count(1)


class Branch:
    """One branch of one global transaction against ``bank``, driven through the fence."""

    def __init__(self, db: Database, amount: int = 10) -> None:
        self.db, self.bank, self.fence = db, Bank(db), db.fence()
        n = next(_numbers)
        self.xid, self.branch_id, self.account, self.amount = f"127.0.0.1:8091:{n}", 1000 + n, f"acc-{n}", amount
        self.bank.open(self.account, 100)

    def try_(self, fail: bool = False) -> None:
        def body(conn: Any) -> None:
            self.bank.freeze(conn, self.xid, self.branch_id, self.account, self.amount)
            if fail:
                raise InsufficientFundsError("after the business change")

        self.fence.prepare(self.xid, self.branch_id, ACTION, body)

    def confirm(self, result: Any = None, fail: bool = False) -> Any:
        def body(conn: Any) -> Any:
            self.bank.spend(conn, self.xid, self.branch_id, self.account, self.amount)
            if fail:
                raise OSError("confirm fails after its business change")
            return result

        return self.fence.commit(self.xid, self.branch_id, ACTION, body)

    def cancel(self) -> Any:
        return self.fence.rollback(self.xid, self.branch_id, ACTION,
                                   lambda conn: self.bank.release(conn, self.xid, self.branch_id, self.account,
                                                                  self.amount))  # fmt: skip

    @property
    def status(self) -> FenceStatus | None:
        return self.fence.status(self.xid, self.branch_id)

    def events(self) -> dict[str, int]:
        return dict(self.bank.events(self.xid))

    def state(self) -> tuple[int, int]:
        return self.bank.state(self.account)


def test_confirm_runs_once_however_often_it_is_asked(db: Database) -> None:
    branch = Branch(db)
    branch.try_()
    assert (branch.status, branch.state()) == (S.TRIED, (90, 10))
    assert branch.confirm() is True
    assert branch.confirm() is True  # the TC's answer was lost: it asks again
    assert branch.confirm() is True
    assert (branch.status, branch.state(), branch.events()) == (S.COMMITTED, (90, 0), {"try": 1, "confirm": 1})


def test_cancel_runs_once_however_often_it_is_asked(db: Database) -> None:
    branch = Branch(db)
    branch.try_()
    assert branch.cancel() is True
    assert branch.cancel() is True
    assert (branch.status, branch.state(), branch.events()) == (S.ROLLBACKED, (100, 0), {"try": 1, "cancel": 1})


def test_cancel_before_try_is_an_empty_rollback_and_the_late_try_is_refused(db: Database) -> None:
    branch = Branch(db)
    assert branch.cancel() is True  # nothing to undo: succeeds without running the cancel
    assert (branch.status, branch.events()) == (S.SUSPENDED, {})
    assert branch.cancel() is True
    with pytest.raises(TryRefusedError) as refused:
        branch.try_()  # suspension: the try came after its rollback
    assert (refused.value.xid, refused.value.branch_id) == (branch.xid, branch.branch_id)
    assert (branch.status, branch.state(), branch.events()) == (S.SUSPENDED, (100, 0), {})
    with pytest.raises(FenceStateError):
        branch.confirm()


def test_confirm_without_try_is_retryable_and_leaves_no_row(db: Database) -> None:
    branch = Branch(db)
    with pytest.raises(FenceRowMissingError) as missing:
        branch.confirm()
    assert not isinstance(missing.value, UnretryableError)
    assert (branch.status, branch.events()) == (None, {})


def test_phase_two_against_the_other_outcome_is_final(db: Database) -> None:
    confirmed, cancelled = Branch(db), Branch(db)
    for branch in (confirmed, cancelled):
        branch.try_()
    confirmed.confirm()
    cancelled.cancel()
    with pytest.raises(FenceStateError) as error:
        confirmed.cancel()
    assert isinstance(error.value, UnretryableError)
    with pytest.raises(FenceStateError):
        cancelled.confirm()
    assert (confirmed.status, confirmed.state()) == (S.COMMITTED, (90, 0))
    assert (cancelled.status, cancelled.state()) == (S.ROLLBACKED, (100, 0))


def test_a_failed_try_leaves_neither_row_nor_change(db: Database) -> None:
    branch = Branch(db)
    with pytest.raises(InsufficientFundsError):
        branch.try_(fail=True)
    assert (branch.status, branch.state(), branch.events()) == (None, (100, 0), {})
    assert branch.cancel() is True  # the TM rolls back: an empty rollback
    assert (branch.status, branch.state()) == (S.SUSPENDED, (100, 0))


@pytest.mark.parametrize("how", ["raises", "returns False"])
def test_a_failed_confirm_undoes_its_change_and_the_row_and_can_run_again(db: Database, how: str) -> None:
    branch = Branch(db)
    branch.try_()
    if how == "raises":
        with pytest.raises(OSError, match="confirm fails"):
            branch.confirm(fail=True)
    else:
        assert branch.confirm(result=False) is False
    assert (branch.status, branch.state(), branch.events()) == (S.TRIED, (90, 10), {"try": 1})
    assert branch.confirm() is True
    assert (branch.status, branch.state(), branch.events()) == (S.COMMITTED, (90, 0), {"try": 1, "confirm": 1})


def test_a_cancel_racing_its_try_ends_cancelled_once(db: Database) -> None:
    """The cancel arrives while the try's transaction (with its fence row) is still open."""
    branch = Branch(db)
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_try() -> None:
        def body(conn: Any) -> None:
            branch.bank.freeze(conn, branch.xid, branch.branch_id, branch.account, branch.amount)
            inside.set()
            release.wait(10)

        try:
            branch.fence.prepare(branch.xid, branch.branch_id, ACTION, body)
        except BaseException as exc:
            errors.append(exc)

    trying = threading.Thread(target=slow_try)
    trying.start()
    assert inside.wait(10)
    outcome: list[Any] = []
    cancelling = threading.Thread(target=lambda: outcome.append(_attempt(branch.cancel)))
    cancelling.start()
    cancelling.join(0.3)  # it waits for the try's row lock (or finds no row yet, depending on the database)
    release.set()
    trying.join(10)
    cancelling.join(10)
    assert errors == []
    if isinstance(outcome[0], FenceRaceError):  # PostgreSQL: its insert met the try's row: retry
        assert branch.cancel() is True
    else:  # the lock waited for the try's commit, then the cancel ran on its row
        assert outcome[0] is True, outcome
    assert (branch.status, branch.state(), branch.events()) == (S.ROLLBACKED, (100, 0), {"try": 1, "cancel": 1})


def _attempt(fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:
        return exc


# --- clean-up ------------------------------------------------------------------------------------


def _at(moment: datetime, db: Database) -> Fence:
    return db.fence(clock=lambda: moment, clean_batch=2)


def test_clean_deletes_only_finished_rows_older_than_the_age(db: Database) -> None:
    now = datetime(2030, 1, 2, 12, 0, 0)
    old, recent = _at(now - timedelta(days=2), db), _at(now - timedelta(minutes=5), db)
    done = lambda conn: None  # noqa: E731
    for n, fence in enumerate([old, old, old, old, old, recent]):  # 5 old rows need three batches of 2
        fence.prepare(f"x:1:{n}", n, ACTION, done)
        (fence.commit if n % 2 else fence.rollback)(f"x:1:{n}", n, ACTION, done)
    old.rollback("x:1:90", 90, ACTION, done)  # suspended (empty rollback)
    old.prepare("x:1:91", 91, ACTION, done)  # tried and never finished: kept, whatever its age
    cleaner = _at(now, db)
    assert cleaner.clean(older_than=3600) == 6
    rows = db.run("SELECT xid, status FROM tcc_fence_log ORDER BY xid")
    assert [(x, int(s)) for x, s in rows] == [("x:1:5", S.COMMITTED), ("x:1:91", S.TRIED)]
    assert cleaner.clean(older_than=60) == 1
    assert cleaner.clean() == 0  # default age: a day


def test_the_cleaner_runs_on_its_schedule(db: Database) -> None:
    now = datetime(2030, 1, 2, 12, 0, 0)
    _at(now - timedelta(days=2), db).rollback("x:2:1", 1, ACTION, lambda conn: None)
    fence = db.fence(clock=lambda: now, clean_after=3600, clean_period=0.05, first_clean_delay=0)
    try:
        fence.start_cleaner()
        wait_until(lambda: fence.status("x:2:1", 1) is None, "the cleaner deletes the old row", timeout=10)
    finally:
        fence.close()


# --- schema and configuration --------------------------------------------------------------------


def test_the_table_has_seatas_columns_and_creating_it_again_is_harmless(db: Database) -> None:
    db.fence().create_table()
    columns = db.run("SELECT xid, branch_id, action_name, status, gmt_create, gmt_modified FROM tcc_fence_log")
    assert columns == []
    fence = db.fence(table="other_fence_log")
    fence.create_table()
    fence.rollback("x:3:1", 1, ACTION, lambda conn: None)
    assert fence.status("x:3:1", 1) is S.SUSPENDED
    assert db.fence().status("x:3:1", 1) is None  # a table of its own


def test_bad_configuration_is_refused_early(db: Database) -> None:
    with pytest.raises(ValueError, match="identifier"):
        db.fence(table="log; DROP TABLE account")
    with pytest.raises(ValueError, match="unknown fence dialect"):
        Fence(db.connect, "oracle")
    with pytest.raises(ValueError, match="clean_after"):
        db.fence(clean_after=0)
