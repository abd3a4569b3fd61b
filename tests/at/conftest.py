"""Real databases for the AT tests: SQLite, PostgreSQL and MariaDB, one fresh namespace per test.

``db`` runs a test on each of the three (a temporary file, a new schema, a new database), dropped
afterwards. The PostgreSQL and MariaDB servers are the local ones (``PYSEATA_TEST_PG_DSN`` and
``PYSEATA_TEST_MYSQL_*`` override them); a missing server skips the test, or fails it when ``CI``
is set.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyseata.at.dialects import Dialect, Paramstyle, get_dialect
from services import MYSQL, PG_DSN, create_namespace, drop_namespace, made_per_test

KINDS = ("sqlite", "postgres", "mariadb")


def _missing(reason: str) -> None:
    from conftest import missing  # tests/conftest.py: skip, or fail in CI

    missing(reason)


@dataclass
class Db:
    """One connection to one fresh namespace: ``kind``, its dialect and the driver's paramstyle."""

    kind: str
    conn: Any
    namespace: str | None

    @property
    def dialect(self) -> Dialect:
        return get_dialect(self.kind)

    @property
    def style(self) -> Paramstyle:
        return Paramstyle.QMARK if self.kind == "sqlite" else Paramstyle.FORMAT

    @property
    def p(self) -> str:
        return "?" if self.kind == "sqlite" else "%s"

    def run(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """One statement; the rows it returned (the connection is in autocommit mode)."""
        cursor = self.conn.cursor()
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
            return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
        finally:
            cursor.close()

    def query(self, sql: str, params: Any = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a query."""
        cursor = self.conn.cursor()
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
            return [d[0] for d in cursor.description], [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()


def open_db(kind: str, tmp_path: Path) -> Db:
    if kind == "sqlite":
        return Db(kind, sqlite3.connect(tmp_path / f"at_{uuid.uuid4().hex[:8]}.db", isolation_level=None), None)
    name = create_namespace(kind, "at", "the AT tests")
    if kind == "postgres":
        import psycopg

        return Db(kind, psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={name}"), name)
    import pymysql

    return Db(kind, pymysql.connect(database=name, autocommit=True, **MYSQL), name)


def close_db(db: Db) -> None:
    db.conn.close()
    if db.namespace is not None:
        drop_namespace(db.kind, db.namespace)


@pytest.fixture
def make_db(tmp_path: Path) -> Iterator[Callable[[str], Db]]:
    """Opens fresh databases of a kind for one test; drops them after it."""
    yield from made_per_test(lambda kind: open_db(kind, tmp_path), close_db)


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, make_db: Callable[[str], Db]) -> Db:
    return make_db(str(request.param))
