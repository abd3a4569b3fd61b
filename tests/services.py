"""What the database-backed test suites share: where the servers are, fresh namespaces on them,
and a TC running in this process on its own loop thread."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from conftest import missing
from pyseata.coordinator.app import TransactionCoordinator
from pyseata.coordinator.settings import ServerSettings
from pyseata.rpc.loop_thread import LoopThread

__all__ = ["MYSQL", "PG_DSN", "admin", "create_namespace", "drop_namespace", "tc_on_thread"]

PG_DSN = os.environ.get("PYSEATA_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3")
MYSQL: dict[str, Any] = {
    "host": os.environ.get("PYSEATA_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("PYSEATA_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("PYSEATA_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("PYSEATA_TEST_MYSQL_PASSWORD", ""),
}

# The suites name the servers differently ("postgres"/"postgresql", "mariadb"/"mysql").
_IS_POSTGRES = {"postgres": True, "postgresql": True, "mariadb": False, "mysql": False}


def admin(kind: str, statement: str) -> None:
    """Runs one administrative statement (CREATE/DROP SCHEMA or DATABASE) on the server."""
    if _IS_POSTGRES[kind]:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]
    else:
        import pymysql

        with closing(pymysql.connect(autocommit=True, **MYSQL)) as conn:
            conn.cursor().execute(statement)


def create_namespace(kind: str, prefix: str, purpose: str) -> str:
    """A fresh schema (PostgreSQL) or database (MariaDB/MySQL) named ``<prefix>_<random>``; skips
    (fails in CI) with the reason when the server is not there."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    what = "SCHEMA" if _IS_POSTGRES[kind] else "DATABASE"
    try:
        admin(kind, f"CREATE {what} {name}")
    except Exception as exc:
        missing(f"no {kind} server for {purpose} ({type(exc).__name__}: {exc})")
    return name


def drop_namespace(kind: str, name: str) -> None:
    admin(kind, f"DROP SCHEMA IF EXISTS {name} CASCADE" if _IS_POSTGRES[kind] else f"DROP DATABASE IF EXISTS {name}")


@contextmanager
def tc_on_thread(name: str) -> Iterator[tuple[TransactionCoordinator, LoopThread, str]]:
    """A TransactionCoordinator on the memory store with quick recovery, on its own loop thread,
    so synchronous tests can use it; yields (coordinator, thread, "host:port")."""
    settings = ServerSettings(port=0, store="memory://", retry_period=0.05, retry_backoff_max=0.2, drain_timeout=0.5)
    thread = LoopThread(name=name)
    coordinator = TransactionCoordinator(settings)
    thread.start()
    try:
        thread.run(coordinator.start())
        host, port = coordinator.address
        yield coordinator, thread, f"{host}:{port}"
        thread.run(coordinator.stop())
    finally:
        thread.stop()
