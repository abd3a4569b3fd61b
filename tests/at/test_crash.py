"""An AT resource manager SIGKILLed at the worst moments, on SQLite, PostgreSQL and MariaDB.

The RM is a separate process (:func:`rm_main`, at the end) with one AT data source; this process
is the TM, and the TC runs in it too. The RM runs phase one of a global transaction (branch
registered, undo log and business change committed locally) and then:

* it is killed before phase two: the TM rolls back, the TC cannot reach the branch and keeps
  retrying; a restarted RM receives the rollback and restores the before images;
* it is killed *during* phase two: the test holds the row, so the RM's rollback hangs inside its
  local transaction; the kill aborts it, and the restarted RM rolls back from the start.

Either way the rows end exactly as before the global transaction, the undo log is gone and the
TC forgets the transaction.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import DataSource

from . import test_executor_support as support
from .conftest import MYSQL, PG_DSN, Db
from .test_executor_support import RunningTc, create_accounts, undo_rows, wait_until

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
READY = "at rm ready"
RM_MAIN = f"import sys; sys.path[:0] = [{str(TESTS)!r}]; from at.test_crash import rm_main; rm_main(sys.argv[1:])"
START = [(1, "ann", 100), (2, "bob", 50), (3, "cy", 7)]


def where(db: Db) -> str:
    """How the RM process finds ``db``: a file path, a schema or a database name."""
    if db.kind == "sqlite":
        return next(str(r[2]) for r in db.conn.execute("PRAGMA database_list").fetchall() if r[1] == "main")
    assert db.namespace is not None
    return db.namespace


def opener(kind: str, place: str) -> Callable[[], Any]:
    if kind == "sqlite":
        return lambda: sqlite3.connect(place, timeout=30)
    if kind == "postgres":
        import psycopg

        return lambda: psycopg.connect(PG_DSN, options=f"-c search_path={place}")
    import pymysql

    return lambda: pymysql.connect(database=place, **MYSQL)


class RmProcess:
    """The RM (:func:`rm_main`) as a child process; its log goes to a file; always reaped."""

    def __init__(self, log_dir: Path, tc: str, db: Db, resource_id: str) -> None:
        self.args = ["--tc", tc, "--kind", db.kind, "--where", where(db), "--resource", resource_id]
        self.log_dir = log_dir
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
        self.process: subprocess.Popen[str] | None = None
        self.runs = 0

    def start(self, *extra: str, timeout: float = 30.0) -> None:
        self.runs += 1
        log_path = self.log_dir / f"rm-{self.runs}.log"
        with open(log_path, "w") as log_file:
            self.process = subprocess.Popen([sys.executable, "-c", RM_MAIN, *self.args, *extra], env=self.env,
                                            stdout=subprocess.PIPE, stderr=log_file, text=True)
        assert self.process.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith(READY):
            self.kill()
            raise AssertionError(f"the RM did not start: {line}\n{log_path.read_text()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.reap()

    def reap(self) -> None:
        if self.process is not None:
            self.process.wait(10)
            if self.process.stdout is not None:
                self.process.stdout.close()


@pytest.fixture
def rm_process(db: Db, tc: RunningTc, tmp_path: Path) -> Iterator[RmProcess]:
    create_accounts(db)
    for row in START:
        db.run(f"INSERT INTO account VALUES ({db.p}, {db.p}, {db.p})", row)
    resource_id = f"at-crash-{db.kind}-{tmp_path.name}"
    # The undo_log table; this process holds no AT resource under that id (the TC must reach the RM).
    DataSource(opener(db.kind, where(db)), resource_id=resource_id, register=False).create_undo_log_table()
    process = RmProcess(tmp_path, tc.address, db, resource_id)
    yield process
    process.kill()


def accounts(db: Db) -> list[tuple[Any, ...]]:
    return db.run("SELECT id, owner, balance FROM account ORDER BY id")


def test_rm_killed_between_phase_one_and_phase_two(db: Db, runtime: seata.ClientRuntime, tc: RunningTc,
                                                   rm_process: RmProcess) -> None:
    tx = seata.begin(name="at-crash", timeout=60)
    rm_process.start("--xid", tx.xid)  # phase one done when it says ready
    changed = accounts(db)
    assert changed != START and undo_rows(db) == 1
    rm_process.kill()
    tx.rollback()  # the TC finds no RM for the branch: it keeps retrying
    assert accounts(db) == changed
    assert tc.status(tx.xid) is not None
    rm_process.start()
    wait_until(lambda: tc.status(tx.xid) is None, "the TC finished the rollback through the restarted RM")
    assert accounts(db) == START
    assert undo_rows(db) == 0


def hold(db: Db) -> Any:
    """A connection of the test's own holding row 1 (SQLite: the whole database) in an open transaction."""
    if db.kind == "sqlite":
        conn = sqlite3.connect(where(db), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        return conn
    conn = opener(db.kind, where(db))()
    cursor = conn.cursor()
    cursor.execute("SELECT balance FROM account WHERE id = 1 FOR UPDATE")
    cursor.fetchall()
    return conn


def test_rm_killed_inside_phase_two(db: Db, runtime: seata.ClientRuntime, tc: RunningTc,
                                    rm_process: RmProcess) -> None:
    tx = seata.begin(name="at-crash-phase-two", timeout=60)
    rm_process.start("--xid", tx.xid)
    changed = accounts(db)
    blocker = hold(db)
    rolling = threading.Thread(target=tx.rollback)
    rolling.start()
    time.sleep(1.0)  # the RM's rollback is now waiting for the row inside its local transaction
    assert rolling.is_alive()
    rm_process.kill()
    blocker.rollback()
    blocker.close()
    rolling.join(30)
    assert not rolling.is_alive()
    assert accounts(db) == changed  # the killed rollback's local transaction never committed
    rm_process.start()
    wait_until(lambda: tc.status(tx.xid) is None, "the TC finished the rollback through the restarted RM")
    assert accounts(db) == START
    assert undo_rows(db) == 0


# --- the RM process ---------------------------------------------------------------------------------------


def rm_main(argv: list[str]) -> None:
    """``--tc HOST:PORT --kind K --where W --resource ID [--xid XID]``: declares the AT data source;
    with ``--xid``, runs phase one of that global transaction (UPDATE, INSERT, DELETE, local
    commit); then says ready and waits to be killed."""
    import logging

    from pyseata.client.context import bound

    parser = argparse.ArgumentParser()
    for name in ("--tc", "--kind", "--where", "--resource"):
        parser.add_argument(name, required=True)
    parser.add_argument("--xid")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    seata.init(**support.client_settings(args.tc, application_id="at-crash-rm"))
    ds = DataSource(opener(args.kind, args.where), resource_id=args.resource, commit_delay=0.05)
    if args.xid:
        conn = ds.connect()
        p = "?" if args.kind == "sqlite" else "%s"
        with bound(args.xid):
            cur = conn.cursor()
            cur.execute(f"UPDATE account SET balance = balance - 40, owner = {p} WHERE id = 1", ("ANN",))
            cur.execute(f"INSERT INTO account VALUES ({p}, {p}, {p})", (4, "dee", 1))
            cur.execute("DELETE FROM account WHERE id = 3")
            conn.commit()
    print(READY, flush=True)
    while True:
        time.sleep(3600)
