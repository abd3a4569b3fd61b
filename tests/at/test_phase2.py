"""AT phase two on real databases with a real TC: dirty writes stop the rollback, the defense row
blocks a late phase one, committed undo logs are deleted in batches, old ones on request, and
values of many types come back exactly."""

from __future__ import annotations

import logging
import time as clock
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import DataSource, LockRetry, TransactionBrokenError
from pyseata.at.dbapi import DRIVERS, SyncDriver
from pyseata.at.executor import commit_flow
from pyseata.at.undo import UndoLogStatus
from pyseata.client import RollbackFailedError
from pyseata.client.context import bound
from pyseata.client.rm import BranchRequest
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus

from . import test_executor_support as support
from .conftest import Db
from .test_executor_support import RunningTc, create_accounts, data_source, undo_rows, wait_until

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures


def seed(db: Db) -> DataSource:
    create_accounts(db)
    for i, (owner, balance) in enumerate([("ann", 100), ("bob", 50)], start=1):
        db.run(f"INSERT INTO account VALUES ({db.p}, {db.p}, {db.p})", (i, owner, balance))
    return data_source(db)


def balances(db: Db) -> list[tuple[Any, ...]]:
    return db.run("SELECT id, owner, balance FROM account ORDER BY id")


def test_dirty_write_stops_the_rollback(db: Db, runtime: seata.ClientRuntime, tc: RunningTc,
                                        caplog: pytest.LogCaptureFixture) -> None:
    ds = seed(db)
    conn = ds.connect()
    tx = seata.begin(name="at-dirty")
    with bound(tx.xid):
        conn.cursor().execute(f"UPDATE account SET balance = balance - 30 WHERE id = {db.p}", (1,))
        conn.commit()
    # A plain local transaction, outside any global transaction, writes the same row after phase one.
    db.run(f"UPDATE account SET balance = 1, owner = {db.p} WHERE id = 1", ("mallory",))
    caplog.set_level(logging.ERROR, logger="pyseata")
    with pytest.raises(RollbackFailedError):
        tx.rollback()
    assert balances(db) == [(1, "mallory", 1), (2, "bob", 50)]  # nothing overwritten
    assert undo_rows(db) == 1  # kept for the operator
    assert tc.status(tx.xid) == GlobalStatus.RollbackFailed
    report = "\n".join(r.getMessage() for r in caplog.records if r.name == "pyseata.at")
    table = f"{db.namespace}.account" if db.kind == "postgres" else "account"  # Seata's name in lock keys
    assert tx.xid in report and f"dirty write on {table}" in report
    assert f"row {table}(id=1): owner: after image 'ann', now 'mallory'; balance: after image 70, now 1" in report
    conn.close()


def test_several_statements_on_one_row_undo_in_reverse(db: Db, runtime: seata.ClientRuntime) -> None:
    ds = seed(db)
    conn = ds.connect()
    tx = seata.begin()
    with bound(tx.xid):
        cur = conn.cursor()
        cur.execute("UPDATE account SET balance = 1 WHERE id = 1")
        cur.execute("UPDATE account SET balance = 2, owner = 'x' WHERE id = 1")
        cur.execute("DELETE FROM account WHERE id = 1")
        cur.execute("INSERT INTO account VALUES (1, 'again', 3)")
        conn.commit()
    assert balances(db)[0] == (1, "again", 3)
    tx.rollback()
    assert balances(db) == [(1, "ann", 100), (2, "bob", 50)]
    conn.close()


@dataclass
class FakeTc:
    """Stands in for the TC's RM calls only (the database is real): a fixed branch id, reports kept."""

    branch_id: int
    reports: list[tuple[str, int, BranchStatus]] = field(default_factory=list)

    def branch_register(self, xid: str, *_args: Any) -> int:
        return self.branch_id

    def branch_report(self, xid: str, branch_id: int, status: BranchStatus, **_kw: Any) -> None:
        self.reports.append((xid, branch_id, status))


def test_rollback_before_phase_one_writes_the_defense_row(db: Db) -> None:
    ds = seed(db)
    xid, branch_id = "127.0.0.1:8091:42", 4242
    request = BranchRequest(xid, branch_id, ds.resource_id, BranchType.AT, None)
    assert ds.branch_rollback(request) is True
    status = db.run(f"SELECT log_status FROM undo_log WHERE xid = {db.p}", (xid,))
    assert status == [(int(UndoLogStatus.GLOBAL_FINISHED),)]
    assert ds.branch_rollback(request) is True  # again: nothing to do
    # Phase one arrives late for that branch: its undo log hits the defense row, it rolls back.
    conn = ds.connect()
    conn.context.bind(xid, False)
    conn.cursor().execute("SELECT 1")  # outside a global transaction: plain
    from pyseata.at.executor import explicit_flow, recognize_cached

    stmt = recognize_cached("UPDATE account SET balance = 0 WHERE id = 1", ds.env.dialect.name, None)
    fake = FakeTc(branch_id)
    driver = SyncDriver(conn.raw, ds.ops, rm=lambda: fake)  # type: ignore[arg-type, return-value]
    driver.run(explicit_flow(ds.env, conn.context, stmt, None))
    with pytest.raises(ds.env.integrity_errors):
        driver.run(commit_flow(ds.env, conn.context, LockRetry(0, 0)))
    assert fake.reports == [(xid, branch_id, BranchStatus.PhaseOne_Failed)]
    assert balances(db)[0] == (1, "ann", 100)
    assert not conn.context.active
    conn.close()


def test_a_broken_local_transaction_cannot_commit(make_db: Any, runtime: seata.ClientRuntime) -> None:
    db = make_db("postgres")
    ds = seed(db)
    conn = ds.connect()
    with seata.global_transaction():
        conn.cursor().execute("UPDATE account SET balance = 0 WHERE id = 1")
        conn.context.break_("simulated: a statement changed rows its images miss")
        with pytest.raises(TransactionBrokenError, match="simulated"):
            conn.commit()
    assert balances(db)[0] == (1, "ann", 100)
    assert undo_rows(db) == 0
    conn.close()


def test_committed_undo_logs_are_deleted_in_the_background(db: Db, runtime: seata.ClientRuntime) -> None:
    ds = seed(db)
    conn = ds.connect()
    for i in range(12):
        with seata.global_transaction():
            conn.cursor().execute(f"UPDATE account SET balance = {db.p} WHERE id = 2", (i,))
            conn.commit()
    wait_until(lambda: undo_rows(db) == 0 and ds.pending_deletes() == 0, "every committed undo log deleted")
    conn.close()


def test_old_undo_logs_are_deleted_on_request(db: Db) -> None:
    ds = seed(db)
    conn = ds.connect().raw
    table = ds.env.undo_table
    cur = conn.cursor()
    cur.execute(table.insert_sql(), table.defense_params("x:1:1", 1))
    cur.execute(table.insert_sql(), table.defense_params("x:1:2", 2))
    cur.execute(f"UPDATE undo_log SET log_created = {db.p} WHERE branch_id = 1", (datetime(2000, 1, 1),))
    conn.commit()
    ds.delete_undo_logs(7)
    assert db.run("SELECT branch_id FROM undo_log") == [(2,)]
    conn.close()


# --- values of many types come back exactly -------------------------------------------------------------

TYPED = {
    "sqlite": ("CREATE TABLE typed (id INTEGER PRIMARY KEY, i BIGINT, f REAL, t TEXT, b BLOB, n NUMERIC)",
               [(1, 2**40, 1.5, "héllo", b"\x00\xff", None)],
               "UPDATE typed SET i = 0, f = 0, t = '', b = x'01', n = 3"),
    "postgres": ("CREATE TABLE typed (id INTEGER PRIMARY KEY, i BIGINT, f DOUBLE PRECISION, t TEXT, b BYTEA, "
                 "n NUMERIC(10, 3), d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, tm TIME, j JSONB, js JSON, a INT[], "
                 "flag BOOLEAN)",
                 [(1, 2**40, 1.5, "héllo", b"\x00\xff", Decimal("1.230"), date(2024, 2, 29),
                   datetime(2024, 1, 2, 3, 4, 5, 678901), datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                   time(1, 2, 3, 456), {"k": [1, "x"]}, [1, 2], [3, 4], True)],
                 "UPDATE typed SET i = 0, f = 0, t = '', b = '\\x01', n = 0, d = NULL, ts = NULL, tz = NULL, "
                 "tm = NULL, j = '[]', js = '{}', a = '{}', flag = false"),
    "mariadb": ("CREATE TABLE typed (id INT PRIMARY KEY, i BIGINT, f DOUBLE, t TEXT, b BLOB, n DECIMAL(10, 3), "
                "d DATE, ts DATETIME(6), tm TIME(6), j JSON, flag TINYINT(1))",
                [(1, 2**40, 1.5, "héllo", b"\x00\xff", Decimal("1.230"), date(2024, 2, 29),
                  datetime(2024, 1, 2, 3, 4, 5, 678901), time(1, 2, 3, 456), '{"k": [1, "x"]}', 1)],
                "UPDATE typed SET i = 0, f = 0, t = '', b = x'01', n = 0, d = NULL, ts = NULL, tm = NULL, "
                "j = '[]', flag = 0"),
}


def test_values_come_back_exactly(db: Db, runtime: seata.ClientRuntime) -> None:
    create, values, update = TYPED[db.kind]
    db.run(create)
    marks = ", ".join([db.p] * len(values[0]))
    if db.kind == "postgres":
        from psycopg.types.json import Json, Jsonb

        values = [(*v[:10], Jsonb(v[10]), Json(v[11]), *v[12:]) for v in values]
    for row in values:
        db.run(f"INSERT INTO typed VALUES ({marks})", row)
    start = db.run("SELECT * FROM typed")
    ds = data_source(db)
    conn = ds.connect()
    tx = seata.begin()
    with bound(tx.xid):
        cur = conn.cursor()
        cur.execute(update)
        cur.execute("INSERT INTO typed (id) VALUES (2)")
        conn.commit()
    assert db.run("SELECT * FROM typed") != start
    tx.rollback()
    assert db.run("SELECT * FROM typed") == start
    conn.close()


def test_committed_branches_are_deleted_together_not_one_by_one(make_db: Any) -> None:
    db = make_db("sqlite")
    opened: list[Any] = []
    factory = support.factory(db)

    def counting() -> Any:
        opened.append(factory())
        return opened[-1]

    ds = DataSource(counting, resource_id="at-test-batched-deletes", dialect="sqlite", commit_delay=30,
                    register=False, ops=DRIVERS["sqlite3"])
    ds.create_undo_log_table()
    before = len(opened)
    for branch_id in range(1, 6):
        assert ds.branch_commit(BranchRequest(f"127.0.0.1:8091:{branch_id}", branch_id, ds.resource_id,
                                              BranchType.AT, None))
        clock.sleep(0.05)  # room for a worker that a commit did wake to delete (it must not be woken)
    assert ds.pending_deletes() == 5  # queued: the worker waits out commit_delay, a commit does not wake it
    ds.close()  # deletes what is queued: one connection, one DELETE
    assert ds.pending_deletes() == 0
    assert len(opened) - before == 1
