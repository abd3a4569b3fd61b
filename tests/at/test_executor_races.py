"""Races made deterministic: the flows are I/O-free, so a test drives one step by step and lets a
concurrent transaction commit exactly between the before image (or upsert probe) and the
statement. Under READ COMMITTED the statement then changes a row its images never saw; AT mode
must refuse to commit that change rather than leave it without undo. Also: the final error of a
lock wait that times out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import ImageMismatchError, LockWaitTimeoutError, TransactionBrokenError, lock_retry
from pyseata.at.dbapi import SyncDriver
from pyseata.at.dialects import Paramstyle
from pyseata.at.executor import Begin, Execute, explicit_flow, recognize_cached
from pyseata.at.meta import Fetch
from pyseata.client.context import bound

from . import test_executor_support as support
from .conftest import Db
from .test_executor_support import create_accounts, data_source, undo_rows

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures


def run_with_interruption(driver: SyncDriver, flow: Any, after_first_query: Callable[[], None]) -> Any:
    """Drives ``flow`` like the driver does, calling ``after_first_query`` right after its first
    Execute step (the before image / the probe) ran."""
    value: Any = None
    error: BaseException | None = None
    interrupted = False
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value
        value, error = None, None
        try:
            if isinstance(step, Execute):
                value = driver.execute(step)
            elif isinstance(step, Fetch):  # metadata
                value = driver.fetch(step)
            else:
                assert isinstance(step, Begin), step
                driver.ops.begin(driver.raw)
        except Exception as exc:
            error = exc
        if isinstance(step, Execute) and not interrupted:
            interrupted = True
            after_first_query()


@pytest.fixture
def pg(make_db: Any) -> Db:
    db: Db = make_db("postgres")
    create_accounts(db)
    db.run("INSERT INTO account VALUES (1, 'ann', 10), (2, 'bob', 20)")
    return db


def test_a_row_inserted_after_the_before_image_breaks_the_update(pg: Db, runtime: seata.ClientRuntime) -> None:
    ds = data_source(pg)
    conn = ds.connect()
    stmt = recognize_cached("UPDATE account SET balance = balance + 1 WHERE balance < 100", "postgres", None)
    tx = seata.begin()
    conn.context.bind(tx.xid, False)
    with pytest.raises(ImageMismatchError, match="updated 1 row"):
        run_with_interruption(SyncDriver(conn.raw, ds.ops), explicit_flow(ds.env, conn.context, stmt, None),
                              lambda: pg.run("INSERT INTO account VALUES (3, 'cy', 30)"))
    assert conn.context.broken
    with bound(tx.xid), pytest.raises(TransactionBrokenError):
        conn.commit()
    assert pg.run("SELECT id, balance FROM account ORDER BY id") == [(1, 10), (2, 20), (3, 30)]
    assert undo_rows(pg) == 0
    tx.rollback()
    conn.close()


def test_postgres_upsert_racing_a_concurrent_insert_is_caught(pg: Db, runtime: seata.ClientRuntime) -> None:
    """The probe finds no row with sku 'x'; a concurrent transaction inserts one; the upsert then
    updates it (xmax <> 0). Its undo would have deleted the other transaction's row."""
    pg.run("CREATE TABLE stock (sku VARCHAR(8) PRIMARY KEY, qty INTEGER NOT NULL)")
    ds = data_source(pg)
    conn = ds.connect()
    sql = "INSERT INTO stock VALUES (%s, %s) ON CONFLICT (sku) DO UPDATE SET qty = stock.qty + excluded.qty"
    stmt = recognize_cached(sql, "postgres", Paramstyle.FORMAT)
    tx = seata.begin()
    conn.context.bind(tx.xid, False)
    with pytest.raises(ImageMismatchError, match="conflict probe did not see"):
        run_with_interruption(SyncDriver(conn.raw, ds.ops), explicit_flow(ds.env, conn.context, stmt, ["x", 1]),
                              lambda: pg.run("INSERT INTO stock VALUES ('x', 5)"))
    conn.rollback()
    assert pg.run("SELECT sku, qty FROM stock") == [("x", 5)]
    tx.rollback()
    conn.close()


def test_registration_lock_wait_ends_with_a_clear_error(db: Db, runtime: seata.ClientRuntime) -> None:
    create_accounts(db)
    db.run("INSERT INTO account VALUES (1, 'ann', 10)")
    ds = data_source(db)
    holder_conn, waiter = ds.connect(), ds.connect()
    holder = seata.begin()
    with bound(holder.xid):
        holder_conn.cursor().execute("UPDATE account SET balance = 11 WHERE id = 1")
        holder_conn.commit()
    with seata.global_transaction(), lock_retry(0.01, 3):
        waiter.cursor().execute("UPDATE account SET balance = 99 WHERE id = 1")  # locally free: holder committed
        with pytest.raises(LockWaitTimeoutError, match=r"after 4 attempt\(s\) 10 ms apart.*rolled back"):
            waiter.commit()
    assert db.run("SELECT balance FROM account") == [(11,)]
    holder.commit()
    holder_conn.close()
    waiter.close()
