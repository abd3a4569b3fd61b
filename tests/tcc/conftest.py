"""Shared pieces of the TCC tests: real databases, a bank whose steps prove exactly-once, a TC in
this process or in its own, and an account service as a separate process.

* Databases: ``db`` runs a test on SQLite, PostgreSQL and MariaDB, each time in a fresh namespace
  (a temporary file, a new schema, a new database) dropped afterwards. PostgreSQL and MariaDB
  are the local servers (``PYSEATA_TEST_PG_DSN`` / ``PYSEATA_TEST_MYSQL_*`` override them);
  missing servers skip the test, or fail it when ``CI`` is set.
* :class:`Bank`: accounts where the try freezes an amount, confirm spends it and cancel
  releases it. Every step also writes an ``events`` row in the same local transaction, so the
  rows count how often each step really committed.
* :func:`account_action`: that bank as a TCC action with a fence, plus :class:`Knobs` to make a
  confirm or cancel fail, pause, or kill its process halfway.
* ``tc_address`` / ``runtime``: a TC in this process and ``pyseata.client.init`` against it.
* :class:`TcProcess` / :class:`ServiceProcess`: ``pyseata server`` and the account service
  (:func:`serve`, at the end of this file) as real processes, for crashes and multi-service runs.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import pyseata.client as seata
import services
from pyseata.tcc import BusinessActionContext, Fence, TccAction, action_context
from services import MYSQL, PG_DSN, create_namespace, drop_namespace, forgetting_resources, made_per_test, tc_on_thread

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
KINDS = ("sqlite", "postgresql", "mysql")


def _missing(reason: str) -> None:
    from conftest import missing  # tests/conftest.py: skip, or fail in CI

    missing(reason)


# --- databases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """One namespace in one database server: ``kind`` plus a file path, a schema or a database name."""

    kind: str
    where: str

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.where}"

    @classmethod
    def from_spec(cls, spec: str) -> Database:
        kind, _, where = spec.partition(":")
        return cls(kind, where)

    @property
    def p(self) -> str:
        return "?" if self.kind == "sqlite" else "%s"

    def connect(self) -> Any:
        if self.kind == "sqlite":
            return sqlite3.connect(self.where, timeout=10)
        if self.kind == "postgresql":
            import psycopg

            return psycopg.connect(PG_DSN, options=f"-c search_path={self.where}")
        import pymysql

        return pymysql.connect(database=self.where, autocommit=False, **MYSQL)

    def fence(self, **options: Any) -> Fence:
        options.setdefault("clean_period", 0)  # tests run the clean-up by hand, or ask for the cleaner
        return Fence(self.connect, self.kind, **options)

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement in its own committed transaction; the rows it returned."""
        with closing(self.connect()) as conn:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            rows = list(cursor.fetchall()) if cursor.description else []
            conn.commit()
        return rows


def create_database(kind: str, tmp_path: Path) -> Database:
    """A fresh namespace with the business tables and the fence table."""
    if kind == "sqlite":
        db = Database(kind, str(tmp_path / f"tcc_{uuid.uuid4().hex[:12]}.db"))
    else:
        db = Database(kind, create_namespace(kind, "tcc", "the TCC tests"))
    Bank(db).create_tables()
    db.fence().create_table()
    return db


def drop_database(db: Database) -> None:
    if db.kind != "sqlite":
        drop_namespace(db.kind, db.where)


@pytest.fixture
def make_db(tmp_path: Path) -> Iterator[Callable[[str], Database]]:
    """Creates fresh databases of a kind for one test; drops them after it."""
    yield from made_per_test(lambda kind: create_database(kind, tmp_path), drop_database)


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, make_db: Callable[[str], Database]) -> Database:
    return make_db(str(request.param))


# --- the business ---------------------------------------------------------------------------------


class InsufficientFundsError(Exception):
    pass


class Bank:
    """Accounts with ``balance`` and ``frozen``; an ``events`` row for every step that committed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_tables(self) -> None:
        self.db.run("CREATE TABLE IF NOT EXISTS account (id VARCHAR(64) PRIMARY KEY, balance INTEGER NOT NULL, "
                    "frozen INTEGER NOT NULL)")  # fmt: skip
        self.db.run("CREATE TABLE IF NOT EXISTS events (xid VARCHAR(128) NOT NULL, branch_id BIGINT NOT NULL, "
                    "phase VARCHAR(16) NOT NULL)")  # fmt: skip

    def open(self, account: str, balance: int) -> None:
        p = self.db.p
        self.db.run(f"INSERT INTO account (id, balance, frozen) VALUES ({p}, {p}, 0)", (account, balance))

    def freeze(self, conn: Any, xid: str, branch_id: int, account: str, amount: int) -> None:
        p = self.db.p
        sql = f"UPDATE account SET balance = balance - {p}, frozen = frozen + {p} WHERE id = {p} AND balance >= {p}"
        changed = self._execute(conn, sql, (amount, amount, account, amount))
        if changed != 1:
            raise InsufficientFundsError(f"{account} cannot pay {amount}")
        self._event(conn, xid, branch_id, "try")

    def spend(self, conn: Any, xid: str, branch_id: int, account: str, amount: int) -> None:
        p = self.db.p
        self._execute(conn, f"UPDATE account SET frozen = frozen - {p} WHERE id = {p}", (amount, account))
        self._event(conn, xid, branch_id, "confirm")

    def release(self, conn: Any, xid: str, branch_id: int, account: str, amount: int) -> None:
        p = self.db.p
        self._execute(conn, f"UPDATE account SET balance = balance + {p}, frozen = frozen - {p} WHERE id = {p}",
                      (amount, amount, account))  # fmt: skip
        self._event(conn, xid, branch_id, "cancel")

    def state(self, account: str) -> tuple[int, int]:
        """(balance, frozen)."""
        rows = self.db.run(f"SELECT balance, frozen FROM account WHERE id = {self.db.p}", (account,))
        return int(rows[0][0]), int(rows[0][1])

    def events(self, xid: str) -> Counter[str]:
        rows = self.db.run(f"SELECT phase FROM events WHERE xid = {self.db.p}", (xid,))
        return Counter(str(row[0]) for row in rows)

    def _event(self, conn: Any, xid: str, branch_id: int, phase: str) -> None:
        p = self.db.p
        self._execute(conn, f"INSERT INTO events (xid, branch_id, phase) VALUES ({p}, {p}, {p})",
                      (xid, branch_id, phase))  # fmt: skip

    @staticmethod
    def _execute(conn: Any, sql: str, params: tuple[Any, ...]) -> int:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()


@dataclass
class Knobs:
    """Ways to make phase two misbehave, per phase ("confirm" / "cancel")."""

    failures: Counter[str] = field(default_factory=Counter)  # raise OSError this many more times
    kill_in: set[str] = field(default_factory=set)  # SIGKILL this process after the business step
    pause: dict[str, float] = field(default_factory=dict)  # sleep after the business step
    started: Counter[str] = field(default_factory=Counter)
    contexts: list[BusinessActionContext] = field(default_factory=list)

    def before(self, phase: str, ctx: BusinessActionContext) -> None:
        self.started[phase] += 1
        self.contexts.append(ctx)
        if self.failures[phase] > 0:
            self.failures[phase] -= 1
            raise OSError(f"{phase} fails on purpose ({self.failures[phase]} more)")

    def after(self, phase: str) -> None:
        if phase in self.kill_in:
            os.kill(os.getpid(), signal.SIGKILL)  # the local transaction never commits
        if phase in self.pause:
            time.sleep(self.pause[phase])


def account_action(
    name: str, bank: Bank, fence: Fence | None, knobs: Knobs | None = None
) -> TccAction[[str, int], None]:
    """``name(account, amount)``: try freezes, confirm spends, cancel releases; the try adds
    ``frozen_by`` to the action context, which confirm and cancel check."""
    knobs = knobs if knobs is not None else Knobs()

    def reserve(account: str, amount: int) -> None:
        ctx = action_context()
        bank.freeze(ctx.connection, ctx.xid or "-", ctx.branch_id or 0, account, amount)
        ctx.add(frozen_by=name)

    def confirm(ctx: BusinessActionContext) -> None:
        knobs.before("confirm", ctx)
        assert ctx["frozen_by"] == name, ctx.action_context
        bank.spend(ctx.connection, ctx.xid or "", ctx.branch_id or 0, ctx["account"], ctx["amount"])
        knobs.after("confirm")

    def cancel(ctx: BusinessActionContext) -> None:
        knobs.before("cancel", ctx)
        bank.release(ctx.connection, ctx.xid or "", ctx.branch_id or 0, ctx["account"], ctx["amount"])
        knobs.after("cancel")

    return TccAction(reserve, name=name, confirm=confirm, cancel=cancel, fence=fence)


# --- a TC in this process, and the client runtime ---------------------------------------------------


@pytest.fixture(scope="session")
def tc_address() -> Iterator[str]:
    with tc_on_thread("tcc-test-tc") as (_, _, address):
        yield address


def client_settings(address: str, **overrides: Any) -> dict[str, Any]:
    return services.client_settings("tcc-tests", address, **overrides)


@pytest.fixture
def runtime(tc_address: str) -> Iterator[seata.ClientRuntime]:
    started = seata.init(**client_settings(tc_address))
    yield started
    seata.shutdown()


@pytest.fixture(autouse=True)
def _forget_resources() -> Iterator[None]:
    """Resources a test declared do not outlive it."""
    with forgetting_resources():
        yield


# --- processes ------------------------------------------------------------------------------------


class Process:
    """A child that prints one ready line on stdout; its log goes to a file; always reaped."""

    def __init__(self, command: list[str], log_dir: Path, label: str, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.log_dir, self.label = log_dir, label
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
        self.env.update(env or {})
        self.process: subprocess.Popen[str] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.label}-{self.runs}.log"

    def start(self, ready: str, *extra: str, timeout: float = 30.0) -> str:
        """Starts it; returns the rest of the ready line."""
        assert self.process is None or self.process.poll() is not None, f"{self.label} is running"
        self.runs += 1
        with open(self.log_path, "w") as log_file:
            self.process = subprocess.Popen([*self.command, *extra], stdout=subprocess.PIPE, stderr=log_file,
                                            text=True, env=self.env)  # fmt: skip
        assert self.process.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        text = line[0] if line else ""
        if not text.startswith(ready):
            self.kill()
            raise AssertionError(f"{self.label} did not start: {text!r}\n{self.log_path.read_text()}")
        return text[len(ready) :].strip()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush, no rollback of anything in flight."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self._reap(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not end in ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._reap(10)

    def _reap(self, timeout: float) -> None:
        if self.process is not None:
            self.process.wait(timeout)
            if self.process.stdout is not None:
                self.process.stdout.close()


TC_READY = "pyseata TC ready on "
TC_ENV = {
    "PYSEATA_SERVER_RETRY_PERIOD": "0.1", "PYSEATA_SERVER_RETRY_BACKOFF_MAX": "0.4",
    "PYSEATA_SERVER_DEAD_SESSION_MS": "300", "PYSEATA_SERVER_DRAIN_TIMEOUT": "1",
    "PYSEATA_SERVER_BRANCH_REQUEST_TIMEOUT": "10",
}  # fmt: skip


class TcProcess(Process):
    """``pyseata server`` on a SQLite store, so that a restart carries on where it stopped."""

    def __init__(self, log_dir: Path) -> None:
        command = [sys.executable, "-c", "from pyseata.cli.main import main; main()", "server",
                   "--store", f"sqlite:///{log_dir / 'tc.db'}", "--log-level", "INFO"]  # fmt: skip
        super().__init__(command, log_dir, "tc", TC_ENV)
        self.address = ""

    def start_tc(self, port: int = 0) -> str:
        self.address = self.start(TC_READY, "--port", str(port))
        return self.address

    def restart(self) -> str:
        """Starts it again on the same port and store."""
        return self.start_tc(int(self.address.rsplit(":", 1)[1]))


SERVICE_READY = "service ready on "
SERVICE_MAIN = f"import sys; sys.path[:0] = [{str(TESTS)!r}]; from tcc.conftest import serve; serve(sys.argv[1:])"


class ServiceProcess(Process):
    """The account service (:func:`serve`) as a process: one TCC action on one database."""

    def __init__(self, log_dir: Path, name: str, tc: str, db: Database, *options: str) -> None:
        command = [sys.executable, "-c", SERVICE_MAIN, "--name", name, "--tc", tc, "--db", db.spec, *options]
        super().__init__(command, log_dir, f"service-{name}")
        self.name, self.db, self.url = name, db, ""

    def start_service(self, *options: str) -> str:
        self.url = self.start(SERVICE_READY, *options)
        return self.url


def http_session() -> Any:
    """A requests session that sends the bound XID (pyseata.integrations) and ignores proxies."""
    from pyseata.integrations.http import SeataSession

    session = SeataSession()
    session.trust_env = False
    return session


# --- the account service (runs in its own process) --------------------------------------------------


def serve(argv: list[str]) -> None:
    """``--name N --tc HOST:PORT --db KIND:WHERE [--kill-in confirm|cancel] [--pause-confirm S]``.

    A WSGI service on 127.0.0.1 (port 0) with one TCC action, ``<name>-account``, over its
    database, behind :class:`~pyseata.integrations.wsgi.SeataWSGIMiddleware`: a request's
    ``TX_XID`` is bound while it is handled, so the try joins the caller's transaction.

    * ``POST /try`` ``{"account", "amount", "next": [url, ...]}``: runs the try, then posts the
      same body (minus the first url) to the next service, with the XID, through SeataSession.
    * ``GET /stats``: how many confirms / cancels started here.
    """
    import argparse
    import logging
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from pyseata.integrations.wsgi import SeataWSGIMiddleware

    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--tc", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--kill-in", action="append", default=[])
    parser.add_argument("--pause-confirm", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    db = Database.from_spec(args.db)
    knobs = Knobs(kill_in=set(args.kill_in), pause={"confirm": args.pause_confirm} if args.pause_confirm else {})
    action = account_action(f"{args.name}-account", Bank(db), db.fence(), knobs)
    seata.init(**client_settings(args.tc, application_id=f"service-{args.name}", tm_request_timeout=15.0))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        route = (environ["REQUEST_METHOD"], environ["PATH_INFO"])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            if route == ("POST", "/try"):
                action(body["account"], int(body["amount"]))
                if body.get("next"):
                    with closing(http_session()) as session:
                        answer = session.post(body["next"][0] + "/try", json={**body, "next": body["next"][1:]},
                                              timeout=30)  # fmt: skip
                    answer.raise_for_status()
                payload: Any = {"xid": seata.get_xid()}
            elif route == ("GET", "/stats"):
                payload = dict(knobs.started)
            else:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"no such route"]
        except Exception as exc:
            start_response("500 Internal Server Error", [("Content-Type", "application/json")])
            return [json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(payload).encode()]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, SeataWSGIMiddleware(app), server_class=Server, handler_class=QuietHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"{SERVICE_READY}http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
        seata.shutdown()
