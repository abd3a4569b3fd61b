"""AT across resources and transactions: two databases of different kinds in one global
transaction, concurrent global transactions on one row (serialised by the global lock, no lost
update, no deadlock), global_lock keeping a local writer out, SELECT ... FOR UPDATE waiting."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.at import DataSource, LockRetry, LockWaitTimeoutError, global_lock, lock_retry
from pyseata.client.context import bound

from . import test_executor_support as support
from .conftest import Db
from .test_executor_support import RunningTc, create_accounts, data_source, undo_rows, wait_until

tc, runtime, _forget_resources = support.tc, support.runtime, support._forget_resources  # fixtures


class RollMeBackError(Exception):
    pass


def seed(db: Db, *balances: int, **options: Any) -> DataSource:
    create_accounts(db)
    for i, balance in enumerate(balances, start=1):
        db.run(f"INSERT INTO account VALUES ({db.p}, {db.p}, {db.p})", (i, f"owner{i}", balance))
    return data_source(db, **options)


def balance(db: Db, account: int = 1) -> int:
    return int(db.run(f"SELECT balance FROM account WHERE id = {db.p}", (account,))[0][0])


@pytest.mark.parametrize("kinds", [("sqlite", "postgres"), ("postgres", "mariadb"), ("mariadb", "sqlite")])
def test_two_databases_of_different_kinds(kinds: tuple[str, str], make_db: Any, runtime: seata.ClientRuntime,
                                          tc: RunningTc) -> None:
    a, b = make_db(kinds[0]), make_db(kinds[1])
    source, target = seed(a, 100).connect(), seed(b, 0).connect()

    def transfer(amount: int) -> None:
        source.cursor().execute(f"UPDATE account SET balance = balance - {a.p} WHERE id = 1", (amount,))
        target.cursor().execute(f"UPDATE account SET balance = balance + {b.p} WHERE id = 1", (amount,))
        source.commit()
        target.commit()

    with seata.global_transaction() as tx:
        transfer(30)
        assert len(tc.thread.run(tc.coordinator.store.get_branches(tx.xid))) == 2
    assert (balance(a), balance(b)) == (70, 30)
    with pytest.raises(RollMeBackError), seata.global_transaction():
        transfer(50)
        assert (balance(a), balance(b)) == (20, 80)
        raise RollMeBackError
    assert (balance(a), balance(b)) == (70, 30)
    wait_until(lambda: undo_rows(a) == undo_rows(b) == 0, "undo logs of both databases deleted")
    source.close()
    target.close()


def test_concurrent_global_transactions_on_one_row(db: Db, runtime: seata.ClientRuntime) -> None:
    """Writers increment one row, each in its own global transaction, some rolled back: the row
    ends at exactly the number committed (no lost update), and every writer finishes (no deadlock)."""
    ds = seed(db, 0, lock_retry=LockRetry(0.01, 300))
    threads, rounds = 4, 5
    outcomes: Counter[str] = Counter()
    errors: list[BaseException] = []
    guard = threading.Lock()

    def writer(n: int) -> None:
        conn = ds.connect()
        deadline = time.monotonic() + 45
        try:
            for i in range(rounds):
                while time.monotonic() < deadline:
                    try:
                        with seata.global_transaction(name=f"writer-{n}", timeout=30):
                            conn.cursor().execute("UPDATE account SET balance = balance + 1 WHERE id = 1")
                            conn.commit()
                            if (n + i) % 3 == 0:
                                raise RollMeBackError
                        outcome = "committed"
                    except RollMeBackError:
                        outcome = "rolled back"
                    except (LockWaitTimeoutError, seata.TransactionOutcomeError) as exc:
                        with guard:
                            outcomes[f"retried: {type(exc).__name__}"] += 1
                        time.sleep(random.uniform(0, 0.02))  # the holder is rolling back (fail fast): let it
                        continue
                    with guard:
                        outcomes[outcome] += 1
                    break
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not any(w.is_alive() for w in workers), "a writer is stuck"
    assert not errors, errors
    assert outcomes["committed"] + outcomes["rolled back"] == threads * rounds, outcomes
    assert balance(db) == outcomes["committed"], outcomes
    wait_until(lambda: undo_rows(db) == 0, "every undo log deleted")


def hold_row(ds: DataSource, amount: int) -> tuple[seata.GlobalTransaction, Any]:
    """A global transaction whose phase one changed row 1 (it holds the row's global lock)."""
    conn = ds.connect()
    tx = seata.begin(name="holder")
    with bound(tx.xid):
        conn.cursor().execute(f"UPDATE account SET balance = balance + {amount} WHERE id = 1")
        conn.commit()
    return tx, conn


def test_global_lock_keeps_a_local_writer_out(db: Db, runtime: seata.ClientRuntime) -> None:
    ds = seed(db, 100)
    holder, held = hold_row(ds, 10)
    writer = ds.connect()
    with global_lock(retry_interval=0.01, retry_times=3):
        writer.cursor().execute("UPDATE account SET balance = 999 WHERE id = 1")
        with pytest.raises(LockWaitTimeoutError, match="global lock wait timeout"):
            writer.commit()
    assert balance(db) == 110
    holder.rollback()  # no dirty write: the local writer never committed
    assert balance(db) == 100
    # Now the writer waits for a holder that commits a little later.
    holder, held2 = hold_row(ds, 5)
    threading.Timer(0.3, holder.commit).start()
    started = time.monotonic()
    with global_lock(retry_interval=0.02, retry_times=200):
        writer.cursor().execute("UPDATE account SET balance = balance * 2 WHERE id = 1")
        writer.commit()
    assert time.monotonic() - started >= 0.2
    assert balance(db) == 210
    for conn in (writer, held, held2):
        conn.close()


@global_lock(retry_times=2)
def locked_adjust(conn: Any, amount: int) -> None:
    conn.cursor().execute(f"UPDATE account SET balance = balance + {amount} WHERE id = 2")
    conn.commit()


def test_global_lock_decorator_passes_free_rows(db: Db, runtime: seata.ClientRuntime) -> None:
    ds = seed(db, 100, 1)
    holder, held = hold_row(ds, 10)  # row 1 is held; row 2 is free
    conn = ds.connect()
    locked_adjust(conn, 5)
    assert balance(db, 2) == 6
    holder.commit()
    conn.close()
    held.close()


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])  # SQLite has no SELECT ... FOR UPDATE
def test_select_for_update_waits_for_the_global_lock(kind: str, make_db: Any, runtime: seata.ClientRuntime) -> None:
    db = make_db(kind)
    ds = seed(db, 100)
    holder, held = hold_row(ds, 10)
    reader = ds.connect()
    with seata.global_transaction(), lock_retry(0.01, 3):
        with pytest.raises(LockWaitTimeoutError):
            reader.cursor().execute("SELECT balance FROM account WHERE id = 1 FOR UPDATE")
        reader.rollback()
    threading.Timer(0.3, holder.rollback).start()
    started = time.monotonic()
    with global_lock(retry_interval=0.02, retry_times=200):
        cur = reader.cursor()
        cur.execute("SELECT balance FROM account WHERE id = 1 FOR UPDATE")
        assert cur.fetchall() == [(100,)]  # read after the holder rolled back
        reader.commit()
    assert time.monotonic() - started >= 0.2
    reader.close()
    held.close()


def test_autocommit_statement_retried_after_a_conflict_is_still_a_branch(db: Db, runtime: seata.ClientRuntime,
                                                                        tc: RunningTc) -> None:
    """On an autocommit connection a lock conflict rolls the statement back and runs it again: the
    retry must register its branch like the first attempt (else it would commit uncovered)."""
    ds = seed(db, 100, lock_retry=LockRetry(0.02, 200))
    holder, held = hold_row(ds, 10)
    raw = ds.connect().raw
    if db.kind == "mariadb":
        raw.autocommit(True)
    elif db.kind == "postgres":
        raw.autocommit = True
    else:
        raw.isolation_level = None
    waiter = ds.wrap(raw)
    threading.Timer(0.3, holder.commit).start()
    with pytest.raises(RollMeBackError), seata.global_transaction() as tx:
        waiter.cursor().execute("UPDATE account SET balance = balance * 2 WHERE id = 1")
        assert balance(db) == 220
        assert len(tc.thread.run(tc.coordinator.store.get_branches(tx.xid))) == 1
        raise RollMeBackError
    assert balance(db) == 110  # the retried statement was rolled back through its undo log
    waiter.close()
    held.close()
