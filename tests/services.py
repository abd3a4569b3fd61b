"""What the database-backed test suites share: where the servers are, fresh namespaces on them,
a TC running in this process on its own loop thread, and the client runtime against it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any, TypeVar

from conftest import missing
from pyseata.client.rm import DEFAULT_REGISTRY, Resource
from pyseata.coordinator.app import TransactionCoordinator
from pyseata.coordinator.settings import ServerSettings
from pyseata.rpc.loop_thread import LoopThread

__all__ = [
    "MYSQL",
    "PG_DSN",
    "admin",
    "client_settings",
    "create_namespace",
    "drop_namespace",
    "forgetting_resources",
    "made_per_test",
    "tc_on_thread",
    "wait_until",
]

T = TypeVar("T")

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


def made_per_test(make: Callable[[str], T], drop: Callable[[T], None]) -> Iterator[Callable[[str], T]]:
    """The body of a ``make_db``-style fixture (``yield from`` it): yields ``make`` (a kind -> a
    fresh namespace), then drops every namespace it made once the test is over."""
    made: list[T] = []

    def make_one(kind: str) -> T:
        made.append(make(kind))
        return made[-1]

    yield make_one
    for item in made:
        drop(item)


def client_settings(application_id: str, address: str, /, **overrides: Any) -> dict[str, Any]:
    """``pyseata.client.init`` settings against a test TC: quick retries, a generous timeout;
    ``overrides`` win (``application_id`` too)."""
    settings: dict[str, Any] = {"application_id": application_id, "grouplist": address, "tm_request_timeout": 10.0,
                                "retry_interval": 0.05}  # fmt: skip
    settings.update(overrides)
    return settings


@contextmanager
def forgetting_resources(close: Callable[[Resource], object] = lambda resource: None) -> Iterator[None]:
    """Resources declared in the block do not outlive it (every later ``init`` would register
    them): each is ``close``d, then taken out of the process's registry."""
    before = {id(r) for r in DEFAULT_REGISTRY.resources()}
    yield
    for resource in DEFAULT_REGISTRY.resources():
        if id(resource) not in before:
            close(resource)
            DEFAULT_REGISTRY.remove(resource.branch_type, resource.resource_id)


def wait_until(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Blocks until ``check()`` is true; fails the test with ``what`` when it is not after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what}")
        time.sleep(0.02)
