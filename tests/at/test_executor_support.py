"""Shared machinery of the AT executor tests (no tests here): a real TC in this process, the client
runtime against it, and AT data sources over the fresh databases of ``tests/at/conftest.py``.

Modules import the fixtures they use from here (``from .test_executor_support import ...``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import pyseata.client as seata
import services
from pyseata.at import DataSource, LockRetry
from pyseata.protocol.enums import GlobalStatus
from services import MYSQL, PG_DSN, forgetting_resources, tc_on_thread

from .conftest import Db

SQL_TYPES = {  # column types per kind for the shared test tables
    "sqlite": {"int": "INTEGER", "text": "VARCHAR(64)"},
    "postgres": {"int": "INTEGER", "text": "VARCHAR(64)"},
    "mariadb": {"int": "INT", "text": "VARCHAR(64)"},
}


# --- a TC and the client runtime ------------------------------------------------------------------------


@dataclass
class RunningTc:
    coordinator: Any
    thread: Any
    address: str

    def status(self, xid: str) -> GlobalStatus | None:
        """The TC's status of ``xid``; None once the session is gone (finished)."""
        session = self.thread.run(self.coordinator.store.get_global(xid))
        return None if session is None else GlobalStatus(session.status)


@pytest.fixture(scope="session")
def tc() -> Iterator[RunningTc]:
    """A TransactionCoordinator (memory store) on its own loop thread, for the whole session."""
    with tc_on_thread("at-test-tc") as (coordinator, thread, address):
        yield RunningTc(coordinator, thread, address)


def client_settings(address: str, **overrides: Any) -> dict[str, Any]:
    return services.client_settings("at-tests", address, **overrides)


@pytest.fixture
def runtime(tc: RunningTc) -> Iterator[seata.ClientRuntime]:
    started = seata.init(**client_settings(tc.address))
    yield started
    seata.shutdown()


@pytest.fixture(autouse=True)
def _forget_resources() -> Iterator[None]:
    """Data sources a test declared do not outlive it."""
    with forgetting_resources(lambda resource: resource.close() if isinstance(resource, DataSource) else None):
        yield


wait_until = services.wait_until  # the test modules import it from here


# --- databases as AT resources --------------------------------------------------------------------------


def factory(db: Db, **options: Any) -> Callable[[], Any]:
    """Opens new connections to ``db``'s namespace (autocommit off, as applications usually run)."""
    if db.kind == "sqlite":
        path = next(str(r[2]) for r in db.conn.execute("PRAGMA database_list").fetchall() if r[1] == "main")
        return lambda: sqlite3.connect(path, timeout=30, **options)
    if db.kind == "postgres":
        import psycopg

        return lambda: psycopg.connect(PG_DSN, options=f"-c search_path={db.namespace}", **options)
    import pymysql

    return lambda: pymysql.connect(database=db.namespace, **{**MYSQL, **options})


def data_source(db: Db, name: str = "", **options: Any) -> DataSource:
    """An AT data source over ``db`` with its undo_log table, registered in this process."""
    options.setdefault("commit_delay", 0.05)
    options.setdefault("lock_retry", LockRetry(0.01, 200))
    ds = DataSource(factory(db), resource_id=f"at-test-{db.kind}-{db.namespace or id(db)}{name}", **options)
    ds.create_undo_log_table()
    return ds


def create_accounts(db: Db, table: str = "account") -> None:
    t = SQL_TYPES[db.kind]
    db.run(f"CREATE TABLE {table} (id {t['int']} PRIMARY KEY, owner {t['text']} NOT NULL, "
           f"balance {t['int']} NOT NULL)")


def undo_rows(db: Db) -> int:
    return int(db.run("SELECT COUNT(*) FROM undo_log")[0][0])


@pytest.fixture
def pg(make_db: Callable[[str], Db]) -> Db:
    """A fresh PostgreSQL namespace with the account table, accounts 1 and 2 holding 100 each."""
    db = make_db("postgres")
    create_accounts(db)
    for i in (1, 2):
        db.run("INSERT INTO account VALUES (%s, %s, %s)", (i, f"o{i}", 100))
    return db


class RollMeBackError(Exception):
    """Raised inside a global transaction to roll it back."""
