"""``executemany`` in a global transaction: one unit of the local transaction (one branch when the
connection autocommits), one before image and one undo item for an UPDATE or DELETE batch, one
undo item for an INSERT batch, and an exact rollback."""

from __future__ import annotations

from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at.images import batchable
from pyseata.at.recognizer import recognize
from pyseata.at.undo import SqlType, unpack
from pyseata.client.context import bound

from . import test_executor_support as support
from .conftest import Db
from .test_executor_support import create_accounts, data_source, undo_rows

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures


def seed(db: Db, count: int = 5) -> None:
    create_accounts(db)
    for i in range(1, count + 1):
        db.run(f"INSERT INTO account VALUES ({db.p}, {db.p}, {db.p})", (i, f"owner{i}", 100 * i))


def accounts(db: Db) -> list[tuple[Any, ...]]:
    return db.run("SELECT id, owner, balance FROM account ORDER BY id")


def undo_items(db: Db) -> list[Any]:
    """Every undo item of every undo_log row now in the table, in order."""
    rows = db.run("SELECT context, rollback_info FROM undo_log WHERE log_status = 0")
    return [item for context, info in rows for item in unpack(str(context), bytes(info)).sql_undo_logs]


def test_an_update_batch_is_one_undo_item(db: Db, runtime: seata.ClientRuntime) -> None:
    seed(db)
    ds = data_source(db)
    seeded = accounts(db)
    conn = ds.connect()
    tx = seata.begin()
    with bound(tx.xid):
        cur = conn.cursor()
        cur.execute("SELECT 1")
        conn.rollback()  # no covered statement yet; the batch opens the local transaction
        # Row 1 twice (its last version is the after image), row 9 does not exist.
        cur.executemany(f"UPDATE account SET balance = balance + {db.p} WHERE id = {db.p}",
                        [(10, 1), (20, 2), (5, 1), (7, 9)])
        assert cur.rowcount == 3
        conn.commit()
    assert accounts(db)[:2] == [(1, "owner1", 115), (2, "owner2", 220)]
    [item] = undo_items(db)
    assert item.sql_type is SqlType.UPDATE
    assert [(r["id"], r["balance"]) for r in item.before_image.rows] == [(1, 100), (2, 200)]
    assert sorted((r["id"], r["balance"]) for r in item.after_image.rows) == [(1, 115), (2, 220)]
    tx.rollback()
    assert accounts(db) == seeded
    assert undo_rows(db) == 0
    conn.close()


def test_a_delete_batch_on_an_autocommit_connection_is_one_branch(db: Db, runtime: seata.ClientRuntime) -> None:
    seed(db)
    ds = data_source(db)
    seeded = accounts(db)
    conn = ds.connect()
    if db.kind == "sqlite":
        conn.isolation_level = None
    elif db.kind == "postgres":
        conn.autocommit = True
    else:
        conn.raw.autocommit(True)
    tx = seata.begin()
    with bound(tx.xid):
        cur = conn.cursor()
        cur.executemany(f"DELETE FROM account WHERE id = {db.p}", [(2,), (4,), (2,)])
        assert cur.rowcount == 2
    assert [row[0] for row in accounts(db)] == [1, 3, 5]  # committed locally, by pyseata
    assert undo_rows(db) == 1  # one local transaction, one branch
    [item] = undo_items(db)
    assert item.sql_type is SqlType.DELETE and [r["id"] for r in item.before_image.rows] == [2, 4]
    tx.rollback()
    assert accounts(db) == seeded
    conn.close()


def test_an_insert_batch_is_one_undo_item(db: Db, runtime: seata.ClientRuntime) -> None:
    seed(db, 1)
    ds = data_source(db)
    conn = ds.connect()
    tx = seata.begin()
    with bound(tx.xid):
        cur = conn.cursor()
        cur.executemany(f"INSERT INTO account (id, owner, balance) VALUES ({db.p}, {db.p}, {db.p})",
                        [(i, f"new{i}", i) for i in range(10, 15)])
        assert cur.rowcount == 5
        conn.commit()
    [item] = undo_items(db)
    assert item.sql_type is SqlType.INSERT and [r["id"] for r in item.after_image.rows] == list(range(10, 15))
    assert len(accounts(db)) == 6
    tx.rollback()
    assert accounts(db) == [(1, "owner1", 100)]
    conn.close()


def test_named_parameters_and_chunks(db: Db, runtime: seata.ClientRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyseata.at import executor

    monkeypatch.setattr(executor, "BATCH_SETS", 2)  # three chunks: three undo items
    seed(db)
    ds = data_source(db)
    seeded = accounts(db)
    conn = ds.connect()
    mark = (lambda n: f":{n}") if db.kind == "sqlite" else (lambda n: f"%({n})s")
    tx = seata.begin()
    with bound(tx.xid):
        cur = conn.cursor()
        cur.executemany(f"UPDATE account SET owner = {mark('o')} WHERE id = {mark('i')} OR id = {mark('i')} + 10",
                        [{"o": f"x{i}", "i": i} for i in (1, 2, 3, 4, 5)])
        assert cur.rowcount == 5
        conn.commit()
    assert [row[1] for row in accounts(db)] == ["x1", "x2", "x3", "x4", "x5"]
    assert [item.sql_type for item in undo_items(db)] == [SqlType.UPDATE] * 3
    tx.rollback()
    assert accounts(db) == seeded
    conn.close()


def test_a_failing_set_leaves_nothing_of_the_batch(db: Db, runtime: seata.ClientRuntime) -> None:
    seed(db, 2)
    ds = data_source(db)
    seeded = accounts(db)
    conn = ds.connect()
    with seata.global_transaction():
        cur = conn.cursor()
        with pytest.raises(ds.env.integrity_errors):
            cur.executemany(f"INSERT INTO account (id, owner, balance) VALUES ({db.p}, 'n', 0)", [(7,), (1,)])
        conn.rollback()
    assert accounts(db) == seeded
    conn.close()


@pytest.mark.parametrize(("sql", "expected"), [
    ("UPDATE t SET a = %s WHERE id = %s", True),
    ("DELETE FROM t WHERE id = %s", True),
    ("UPDATE t SET a = 1", True),
    ("UPDATE t SET a = %s WHERE id IN (SELECT id FROM u WHERE b = %s)", False),  # may see an earlier set's change
    ("DELETE FROM t WHERE id > %s ORDER BY id LIMIT 1", False),
    ("INSERT INTO t (id) VALUES (%s)", False),
])
def test_which_statements_share_one_before_image(sql: str, expected: bool) -> None:
    assert batchable(recognize(sql, "mariadb", "format")) is expected


async def test_asyncpg_and_psycopg_async_batches(make_db: Any, runtime: seata.ClientRuntime) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    import psycopg

    from pyseata.at.asyncpg import connect_asyncpg
    from pyseata.at.dbapi import aconnect
    from services import PG_DSN

    db = make_db("postgres")
    seed(db)
    ds = data_source(db)
    seeded = accounts(db)
    raw = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test",
                                server_settings={"search_path": db.namespace})
    conn = await connect_asyncpg(raw, data_source=ds)
    aconn = aconnect(await psycopg.AsyncConnection.connect(PG_DSN, options=f"-c search_path={db.namespace}"),
                     data_source=ds)
    try:
        tx = seata.begin()
        with bound(tx.xid):
            async with conn.transaction():
                await conn.executemany("UPDATE account SET balance = $1 WHERE id = $2", [(0, 1), (0, 2)])
            cur = aconn.cursor()
            await cur.executemany("DELETE FROM account WHERE id = %s", [(4,), (5,)])
            assert cur.rowcount == 2
            await aconn.commit()
        assert accounts(db) == [(1, "owner1", 0), (2, "owner2", 0), (3, "owner3", 300)]
        assert [item.sql_type for item in undo_items(db)] == [SqlType.UPDATE, SqlType.DELETE]  # two branches
        tx.rollback()
        assert accounts(db) == seeded
    finally:
        await conn.close()
        await aconn.close()
