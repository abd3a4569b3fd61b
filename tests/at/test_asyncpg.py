"""The same AT flows on asyncpg: ``connect_asyncpg`` inside ``async with global_transaction()``
commits and rolls back as AT branches (phase two on the resource's synchronous connections);
outside it, every call is asyncpg's own."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at.asyncpg import ATAsyncpgConnection, connect_asyncpg

from . import test_executor_support as support
from .test_executor_support import RollMeBackError, data_source, undo_rows, wait_until

tc, runtime, _forget_resources, pg = support.tc, support.runtime, support._forget_resources, support.pg  # fixtures

asyncpg: Any
try:
    asyncpg = importlib.import_module("asyncpg")
except ImportError:  # skipped, or failed in CI, by the fixture below
    asyncpg = None


@pytest.fixture(autouse=True)
def _asyncpg_installed() -> None:
    if asyncpg is None:
        from conftest import missing  # tests/conftest.py: skip, or fail in CI

        missing("asyncpg is not installed (pip install asyncpg)")


async def _connect(pg: Any, **options: Any) -> ATAsyncpgConnection:
    raw = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test",
                                server_settings={"search_path": pg.namespace})
    return await connect_asyncpg(raw, data_source=data_source(pg, **options))


async def test_update_commit_deletes_undo_log(pg: Any, runtime: seata.ClientRuntime) -> None:
    conn = await _connect(pg)
    try:
        async with seata.global_transaction():
            async with conn.transaction():
                row = await conn.fetchrow("UPDATE account SET balance = balance - $1 WHERE id = $2 RETURNING balance",
                                          30, 1)
                assert row is not None and row["balance"] == 70 and row[0] == 70
                assert await conn.execute("UPDATE account SET owner = $1 WHERE id = $2", "x", 2) == "UPDATE 1"
            assert undo_rows(pg) == 1  # one branch, its undo log written with the local commit
            assert conn.context.undo_items == []
        assert pg.run("SELECT id, owner, balance FROM account ORDER BY id") == [(1, "o1", 70), (2, "x", 100)]
        wait_until(lambda: undo_rows(pg) == 0, "undo log deleted by phase two after the global commit")
    finally:
        await conn.close()


async def test_insert_update_delete_then_error_rolls_back(pg: Any, runtime: seata.ClientRuntime) -> None:
    conn = await _connect(pg)
    try:
        with pytest.raises(RollMeBackError):
            async with seata.global_transaction():
                async with conn.transaction():
                    assert await conn.execute("INSERT INTO account VALUES ($1, $2, $3)", 3, "new", 5) == "INSERT 0 1"
                    assert await conn.fetchval("UPDATE account SET balance = 0 WHERE id = $1 RETURNING id", 1) == 1
                    assert await conn.execute("DELETE FROM account WHERE id = $1", 2) == "DELETE 1"
                # autocommit outside transaction(): a branch of its own
                await conn.execute("UPDATE account SET owner = $1 WHERE id = $2", "auto", 1)
                assert pg.run("SELECT id, owner, balance FROM account ORDER BY id") == [(1, "auto", 0), (3, "new", 5)]
                assert undo_rows(pg) == 2
                raise RollMeBackError
        assert pg.run("SELECT id, owner, balance FROM account ORDER BY id") == [(1, "o1", 100), (2, "o2", 100)]
        assert undo_rows(pg) == 0
    finally:
        await conn.close()


async def test_error_inside_transaction_block_rolls_back_locally(pg: Any, runtime: seata.ClientRuntime) -> None:
    conn = await _connect(pg)
    try:
        with pytest.raises(RollMeBackError):
            async with seata.global_transaction(), conn.transaction():
                await conn.execute("UPDATE account SET balance = 1 WHERE id = $1", 1)
                async with conn.transaction():  # a savepoint: its undo item goes with it
                    await conn.execute("DELETE FROM account WHERE id = $1", 2)
                    assert len(conn.context.undo_items) == 2
                    raise RollMeBackError
        assert pg.run("SELECT id, balance FROM account ORDER BY id") == [(1, 100), (2, 100)]
        assert undo_rows(pg) == 0
        assert not conn.is_in_transaction()
    finally:
        await conn.close()


async def test_outside_global_transaction_passes_through(pg: Any, runtime: seata.ClientRuntime) -> None:
    conn = await _connect(pg)
    try:
        assert await conn.execute("UPDATE account SET balance = $1 WHERE id = $2", 7, 1) == "UPDATE 1"
        records = await conn.fetch("SELECT id, balance FROM account ORDER BY id")
        assert all(isinstance(r, asyncpg.Record) for r in records)  # asyncpg's own rows
        assert [tuple(r) for r in records] == [(1, 7), (2, 100)]
        async with conn.transaction():
            await conn.execute("DELETE FROM account WHERE id = $1", 2)
        assert await conn.fetchval("SELECT count(*) FROM account") == 1
        assert conn.context.undo_items == [] and not conn.context.active
        assert undo_rows(pg) == 0
    finally:
        await conn.close()


async def test_connect_asyncpg_refuses_other_connections() -> None:
    with pytest.raises(TypeError, match=r"asyncpg\.Connection"):
        await connect_asyncpg(object())
