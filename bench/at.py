"""AT mode against plain local transactions on the same database, measured in the same run.

    .venv/bin/python bench/at.py --seconds 5 [--databases sqlite,postgres,mariadb] [--writers 16]

A ``pyseata server`` (TC, ``--store memory``) runs as its own process; this process is TM and RM.
Per database (SQLite file in WAL mode, PostgreSQL schema, MariaDB database; a server that is not
there is skipped), one single-row ``UPDATE account SET balance = balance + 1 WHERE id = ?``:

* ``transaction``: the UPDATE and a commit, per second. plain: a local transaction on a raw
  connection. AT: a whole global transaction around it (begin at the TC, before image, UPDATE,
  after image, branch register with the row lock, undo_log insert, local commit, global commit;
  the undo log is deleted later in the background, as in Seata).
* ``statement``: the UPDATE alone inside an open transaction (rolled back every 100 statements).
  plain: a local transaction. AT: inside one global transaction (recognition, images, undo item).
* ``hot row``: ``--writers`` threads, each with its own connection, all updating the *same* row;
  transactions per second. AT ones serialise on the TC's global lock (lock retry 10 ms x 30, the
  global transactions that still time out are counted and tried again).

``slowdown`` is plain rate / AT rate (how many times longer AT takes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Child, finish, parser, rate, tc_command, threaded

PG_DSN = os.environ.get("PYSEATA_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3")
MYSQL = {
    "host": os.environ.get("PYSEATA_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("PYSEATA_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("PYSEATA_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("PYSEATA_TEST_MYSQL_PASSWORD", ""),
}
WARMUP = 0.5
ROLLBACK_EVERY = 100


# --- databases ------------------------------------------------------------------------------------


def _sqlite(tmp: str) -> Iterator[Callable[[], Any]]:
    path = f"{tmp}/bench.db"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=60)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    yield connect


def _postgres(_tmp: str) -> Iterator[Callable[[], Any]]:
    import psycopg

    name = f"bench_at_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield lambda: psycopg.connect(PG_DSN, options=f"-c search_path={name}")
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


def _mariadb(_tmp: str) -> Iterator[Callable[[], Any]]:
    import pymysql

    name = f"bench_at_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(pymysql.connect(autocommit=True, **MYSQL)) as admin:
        admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield lambda: pymysql.connect(database=name, **MYSQL)
    finally:
        with contextlib.closing(pymysql.connect(autocommit=True, **MYSQL)) as admin:
            admin.cursor().execute(f"DROP DATABASE {name}")


DATABASES: dict[str, Callable[[str], Iterator[Callable[[], Any]]]] = {
    "sqlite": _sqlite, "postgres": _postgres, "mariadb": _mariadb,
}
MARK = {"sqlite": "?", "postgres": "%s", "mariadb": "%s"}


# --- measuring ------------------------------------------------------------------------------------


def concurrent(unit: Callable[[int], bool], threads: int, seconds: float) -> tuple[float, int]:
    """(units per second, units that failed) with ``threads`` threads after a warm-up; ``unit``
    returns False for a failed attempt (not counted as done)."""
    run = threaded(unit, threads, seconds, WARMUP)
    results = run.results()
    done = sum(1 for ok in results if ok)
    return done / run.elapsed, len(results) - done


def bench_database(kind: str, connect: Callable[[], Any], seconds: float, writers: int) -> dict[str, Any]:
    import pyseata.client as seata
    from pyseata.at import DataSource, LockWaitTimeoutError
    from pyseata.client.context import bound

    p = MARK[kind]
    with contextlib.closing(connect()) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        for i in range(1, writers + 2):
            cur.execute(f"INSERT INTO account VALUES ({p}, 0)", (i,))
        conn.commit()
    ds = DataSource(connect, resource_id=f"bench-at-{kind}-{uuid.uuid4().hex[:6]}", dialect=kind)
    ds.create_undo_log_table()
    update = f"UPDATE account SET balance = balance + 1 WHERE id = {p}"
    raw, proxy = connect(), ds.connect()
    raw_cur, proxy_cur = raw.cursor(), proxy.cursor()
    out: dict[str, Any] = {}

    def plain_tx() -> None:
        raw_cur.execute(update, (1,))
        raw.commit()

    def at_tx() -> None:
        with seata.global_transaction(name="bench-at"):
            proxy_cur.execute(update, (1,))
            proxy.commit()

    plain, at = rate(plain_tx, seconds, batch=50), rate(at_tx, seconds, batch=20)
    out["transaction"] = {"plain_per_s": plain, "at_per_s": at, "slowdown": plain / at}

    counter = [0]

    def statement(cur: Any, conn: Any) -> Callable[[], None]:
        def run() -> None:
            cur.execute(update, (1,))
            counter[0] += 1
            if counter[0] % ROLLBACK_EVERY == 0:
                conn.rollback()

        return run

    plain = rate(statement(raw_cur, raw), seconds, batch=ROLLBACK_EVERY)
    raw.rollback()
    tx = seata.begin(name="bench-at-statements", timeout=600)
    with bound(tx.xid):
        at = rate(statement(proxy_cur, proxy), seconds, batch=ROLLBACK_EVERY)
        proxy.rollback()
    tx.rollback()
    out["statement"] = {"plain_per_s": plain, "at_per_s": at, "slowdown": plain / at}

    local = threading.local()

    def connection(factory: Callable[[], Any]) -> Any:
        if not hasattr(local, "conns"):
            local.conns = {}
        if factory not in local.conns:
            local.conns[factory] = factory()
        return local.conns[factory]

    def plain_hot(_n: int) -> bool:
        conn = connection(connect)
        conn.cursor().execute(update, (1,))
        conn.commit()
        return True

    def at_hot(_n: int) -> bool:
        conn = connection(ds.connect)
        try:
            with seata.global_transaction(name="bench-at-hot"):
                conn.cursor().execute(update, (1,))
                conn.commit()
        except LockWaitTimeoutError:
            return False
        return True

    plain, _ = concurrent(plain_hot, writers, seconds)
    at, timeouts = concurrent(at_hot, writers, seconds)
    out["hot_row"] = {"writers": writers, "plain_per_s": plain, "at_per_s": at, "slowdown": plain / at,
                      "at_lock_wait_timeouts": timeouts}
    for conn in (raw, proxy):
        conn.close()
    ds.close()
    return out


def fixed_costs() -> dict[str, float]:
    """What every AT transaction pays whatever the database: encoding its undo log."""
    from pyseata.at.images import Field, KeyType, Row, TableRecords
    from pyseata.at.undo import BranchUndoLog, SqlType, SQLUndoLog, pack

    def image(v: int) -> TableRecords:
        fields = (Field("id", 4, 1, KeyType.PRIMARY_KEY), Field("balance", 4, v))
        return TableRecords("account", ("id",), (Row(fields),))

    log = BranchUndoLog("127.0.0.1:8091:1234567890", 1234567891, (SQLUndoLog(SqlType.UPDATE, "account", image(1),
                                                                            image(2)),))
    return {"undo_pack_ms": 1000 / rate(lambda: pack(log), 0.5)}


def tc_costs(seconds: float) -> dict[str, float]:
    """The TC round trips every AT transaction pays (begin, branch register, commit), measured alone."""
    import pyseata.client as seata

    rm = seata.get_resource_manager()

    def begin_commit() -> None:
        seata.begin(name="bench-empty").commit()

    lock = rate(lambda: rm.global_lock_query("bench-at-none", "account:1"), min(seconds, 1.0), batch=20)
    empty = rate(begin_commit, min(seconds, 1.0), batch=20)
    return {"tc_lock_query_ms": 1000 / lock, "tc_begin_commit_ms": 1000 / empty}


# --- the TC -----------------------------------------------------------------------------------------


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--databases", default="sqlite,postgres,mariadb", help="comma-separated: sqlite,postgres,mariadb")
    p.add_argument("--writers", type=int, default=16, help="threads on the hot row (default 16)")
    args = p.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # lock conflicts under contention are expected, not news

    import pyseata.client as seata

    figures: dict[str, Any] = {"seconds": args.seconds, "tc_store": "memory", "writers": args.writers}
    figures.update(fixed_costs())
    results: dict[str, Any] = {}
    print(f"{'database':<10}{'measure':<22}{'plain/s':>10}{'AT/s':>10}{'slowdown':>10}")
    with tempfile.TemporaryDirectory(prefix="pyseata-bench-at-") as tmp, Child(tc_command()) as tc:
        seata.init(application_id="bench-at", grouplist=tc.address)
        figures.update(tc_costs(args.seconds))
        print(f"TC: lock query {figures['tc_lock_query_ms']:.3f} ms, begin + commit of an empty global transaction "
              f"{figures['tc_begin_commit_ms']:.3f} ms; undo log pack (one-row UPDATE) "
              f"{figures['undo_pack_ms']:.3f} ms")
        try:
            for kind in [k for k in args.databases.split(",") if k]:
                try:
                    with contextlib.contextmanager(DATABASES[kind])(tmp) as connect:
                        results[kind] = row = bench_database(kind, connect, args.seconds, args.writers)
                except (ImportError, OSError) as exc:
                    results[kind] = {"skipped": f"{type(exc).__name__}: {exc}"}
                    print(f"{kind:<10}skipped: {exc}")
                    continue
                except Exception as exc:  # a server that is not there: psycopg/PyMySQL operational errors
                    if "connect" not in str(exc).lower():
                        raise
                    results[kind] = {"skipped": f"{type(exc).__name__}: {exc}"}
                    print(f"{kind:<10}skipped: {exc}")
                    continue
                labels = (("transaction", "transaction"), ("statement", "statement in a tx"),
                          ("hot_row", f"hot row, {args.writers} writers"))
                for key, label in labels:
                    f = row[key]
                    print(f"{kind:<10}{label:<22}{f['plain_per_s']:>10,.0f}{f['at_per_s']:>10,.0f}"
                          f"{f['slowdown']:>10.2f}", flush=True)
        finally:
            seata.shutdown()
    figures["databases"] = results
    measured = [r for r in results.values() if "transaction" in r]
    if measured:
        figures["max_transaction_slowdown"] = max(r["transaction"]["slowdown"] for r in measured)
        figures["max_statement_slowdown"] = max(r["statement"]["slowdown"] for r in measured)
    finish(figures)


if __name__ == "__main__":
    main()
