"""The same AT flows driven with ``await``: psycopg's AsyncConnection inside ``async with
global_transaction()`` commits and rolls back as an AT branch; outside it is transparent."""

from __future__ import annotations

from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import aconnect

from . import test_executor_support as support
from .conftest import PG_DSN
from .test_executor_support import RollMeBackError, data_source, undo_rows, wait_until

tc, runtime, _forget_resources, pg = support.tc, support.runtime, support._forget_resources, support.pg  # fixtures


async def test_async_connection_commit_and_rollback(pg: Any, runtime: seata.ClientRuntime) -> None:
    import psycopg

    source = data_source(pg)
    raw = await psycopg.AsyncConnection.connect(PG_DSN, options=f"-c search_path={pg.namespace}")
    conn = aconnect(raw, data_source=source)
    with pytest.raises(RollMeBackError):
        async with seata.global_transaction():
            cur = conn.cursor()
            await cur.execute("UPDATE account SET balance = balance - %s WHERE id = %s RETURNING balance", (30, 1))
            assert await cur.fetchall() == [(70,)]
            await cur.execute("INSERT INTO account VALUES (%s, %s, %s)", (3, "new", 1))
            await conn.commit()
            assert undo_rows(pg) == 1
            raise RollMeBackError
    assert pg.run("SELECT id, balance FROM account ORDER BY id") == [(1, 100), (2, 100)]
    async with seata.global_transaction():
        await (conn.cursor()).execute("DELETE FROM account WHERE id = %s", (2,))
        await conn.commit()
    assert pg.run("SELECT id FROM account") == [(1,)]
    wait_until(lambda: undo_rows(pg) == 0, "undo log deleted after commit")
    cur = await conn.execute("SELECT count(*) FROM account")  # outside: the driver's own cursor work
    assert await cur.fetchone() == (1,)
    await conn.rollback()
    await conn.close()


async def test_async_autocommit_connection(pg: Any, runtime: seata.ClientRuntime) -> None:
    import psycopg

    raw = await psycopg.AsyncConnection.connect(PG_DSN, options=f"-c search_path={pg.namespace}", autocommit=True)
    conn = aconnect(raw, data_source=data_source(pg))
    with pytest.raises(RollMeBackError):
        async with seata.global_transaction():
            await conn.execute("UPDATE account SET balance = 0 WHERE id = 1")
            assert pg.run("SELECT balance FROM account WHERE id = 1") == [(0,)]
            raise RollMeBackError
    assert pg.run("SELECT balance FROM account WHERE id = 1") == [(100,)]
    assert raw.autocommit is True
    await conn.close()
