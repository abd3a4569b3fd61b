"""Does the shop still add up? The consistency checks, run on the databases and the TC's store.

The databases are the truth; the answers the buyers got are checked against them:

* stock sold equals the items of the committed (confirmed) orders, per SKU;
* money charged equals the sum of the committed orders, per buyer and in all;
* no order without its charge and its stock, and no charge or stock movement without its order;
* nothing moved or created: per SKU and per buyer the totals are the starting ones;
* nothing left in flight: no TCC fence row still 'tried', no AT undo log of a transaction that is
  not finished or did not commit, no order/stock/charge half done, and in the TC's store (its
  SQLite file) no global session, branch or global lock;
* every answer a buyer got matches the databases (committed means confirmed, rolled back means
  not), and every purchase whose answer never came ended one way or the other.

Before checking, :func:`wait_for_recovery` waits (bounded) until nothing is left in flight: phase
two runs in the background, and after a crash the TC's recovery finishes what was interrupted.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from pyseata.demo.db import Database
from pyseata.demo.driver import Outcome, ShopSeed

__all__ = [
    "Check",
    "Resolution",
    "ShopDatabases",
    "describe",
    "leftovers",
    "run_checks",
    "tc_store_counts",
    "wait_for_recovery",
    "wait_for_undo_deletion",
]

TRIED = 1  # tcc_fence_log.status of a try whose confirm/cancel has not run yet
UNDO_NORMAL = 0  # undo_log.log_status of a phase one's undo log (1: a rollback's "defense" row)


@dataclass(frozen=True, slots=True)
class ShopDatabases:
    order: Database
    stock: Database
    account: Database

    def items(self) -> list[tuple[str, Database]]:
        return [("order", self.order), ("stock", self.stock), ("account", self.account)]


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # the key in the JSON line
    title: str  # what a person reads
    ok: bool
    detail: str = ""


# --- what is left in flight ----------------------------------------------------------------------


def tc_store_counts(store: Path) -> dict[str, int]:
    """Sessions, branches and global locks in the TC's SQLite store (read-only: the TC may run)."""
    if not store.exists():
        return {"global sessions in the TC": 0, "branches in the TC": 0, "global locks in the TC": 0}
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)) as conn:

        def count(table: str) -> int:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

        return {"global sessions in the TC": count("global_table"), "branches in the TC": count("branch_table"),
                "global locks in the TC": count("lock_table")}  # fmt: skip


def leftovers(dbs: ShopDatabases, store: Path) -> dict[str, int]:
    """Everything that is still in flight, by name; all zero once recovery is done."""
    counts = {
        "pending orders": _count(dbs.order, "SELECT COUNT(*) FROM orders WHERE status = 'pending'"),
        "reserved stock movements": _count(dbs.stock, "SELECT COUNT(*) FROM stock_movement WHERE state = 'reserved'"),
        "frozen charges": _count(dbs.account, "SELECT COUNT(*) FROM charge WHERE state = 'frozen'"),
    }
    for service, db in dbs.items():
        counts[f"fence rows still tried ({service})"] = _count(
            db, f"SELECT COUNT(*) FROM tcc_fence_log WHERE status = {TRIED}"
        )
    counts.update(tc_store_counts(store))
    return counts


def tc_xids(store: Path) -> set[str]:
    """The global transactions the TC still has (any status)."""
    if not store.exists():
        return set()
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)) as conn:
        return {str(row[0]) for row in conn.execute("SELECT xid FROM global_table")}


def undo_logs(db: Database) -> list[tuple[str, int]]:
    """(xid, log_status) of the undo_log rows (none without the table: no AT mode)."""
    if not db.has_table("undo_log"):
        return []
    return [(str(xid), int(status)) for xid, status in db.run("SELECT xid, log_status FROM undo_log")]


def _count(db: Database, sql: str) -> int:
    return int(db.scalar(sql) or 0)


def describe(counts: Mapping[str, int]) -> str:
    left = [f"{n} {what}" for what, n in counts.items() if n]
    return ", ".join(left) if left else "nothing"


def wait_for_recovery(dbs: ShopDatabases, store: Path, timeout: float,
                      report: Callable[[str], None]) -> tuple[bool, float, dict[str, int]]:  # fmt: skip
    """Waits until nothing is in flight, or ``timeout`` seconds; says what it waits for every few
    seconds. Returns (finished, seconds waited, what is left)."""
    started = time.monotonic()
    said = started
    while True:
        counts = leftovers(dbs, store)
        waited = time.monotonic() - started
        if not any(counts.values()):
            return True, waited, counts
        if waited >= timeout:
            return False, waited, counts
        if time.monotonic() - said >= 3:
            report(f"waiting for recovery ({waited:.0f} s of at most {timeout:.0f} s): {describe(counts)}")
            said = time.monotonic()
        time.sleep(0.2)


def wait_for_undo_deletion(dbs: ShopDatabases, grace: float) -> int:
    """After recovery: AT services delete the undo logs of committed branches in the background,
    a second or so after the commit. Waits up to ``grace`` seconds for that; returns how many are
    still there (a service killed with deletions queued leaves them to the age-based clean-up)."""
    deadline = time.monotonic() + grace
    while True:
        left = sum(1 for _, db in dbs.items() for _, status in undo_logs(db) if status == UNDO_NORMAL)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


# --- the checks ------------------------------------------------------------------------------------


@dataclass
class Resolution:
    """Each purchase's final outcome: as answered, or, for the unanswered, as the databases say."""

    committed: int = 0
    rolled_back: Counter[str] = field(default_factory=Counter)  # by reason
    resolved: Counter[str] = field(default_factory=Counter)  # unanswered purchases: committed / rolled_back
    not_sent: int = 0
    mismatches: list[str] = field(default_factory=list)


@dataclass
class _Rows:
    orders: dict[str, tuple[str, str, int, int, str, str]]  # id -> buyer, sku, qty, amount, status, xid
    stock: dict[str, tuple[int, int, int]]  # sku -> available, reserved, sold
    movements: dict[str, tuple[str, int, str]]  # order id -> sku, qty, state
    accounts: dict[str, tuple[int, int, int]]  # buyer -> balance, frozen, spent
    charges: dict[str, tuple[str, int, str]]  # order id -> buyer, amount, state

    @classmethod
    def load(cls, dbs: ShopDatabases) -> _Rows:
        return cls(
            {r[0]: (r[1], r[2], int(r[3]), int(r[4]), r[5], r[6])
             for r in dbs.order.run("SELECT id, buyer, sku, qty, amount, status, xid FROM orders")},
            {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in dbs.stock.run("SELECT sku, available, reserved, sold "
                                                                             "FROM stock")},
            {r[0]: (r[1], int(r[2]), r[3]) for r in dbs.stock.run("SELECT order_id, sku, qty, state "
                                                                    "FROM stock_movement")},
            {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in dbs.account.run("SELECT id, balance, frozen, spent "
                                                                               "FROM account")},
            {r[0]: (r[1], int(r[2]), r[3]) for r in dbs.account.run("SELECT order_id, buyer, amount, state "
                                                                     "FROM charge")},
        )  # fmt: skip

    def confirmed(self) -> dict[str, tuple[str, str, int, int, str, str]]:
        return {oid: row for oid, row in self.orders.items() if row[4] == "confirmed"}


def _limited(problems: Iterable[str], most: int = 5) -> str:
    items = list(problems)
    shown = "; ".join(items[:most])
    return shown + (f"; and {len(items) - most} more" if len(items) > most else "")


def run_checks(dbs: ShopDatabases, seed: ShopSeed, outcomes: Iterable[Outcome], left: Mapping[str, int],
               store: Path, *, recovered: bool, waited: float) -> tuple[list[Check], Resolution]:  # fmt: skip
    rows = _Rows.load(dbs)
    confirmed = rows.confirmed()
    checks: list[Check] = []

    def check(name: str, title: str, problems: list[str], ok_detail: str = "") -> None:
        checks.append(Check(name, title, not problems, _limited(problems) if problems else ok_detail))

    # Stock sold equals the items ordered.
    ordered: Counter[str] = Counter()
    for _, sku, qty, _, _, _ in confirmed.values():
        ordered[sku] += qty
    sold = {sku: rows.stock.get(sku, (0, 0, 0))[2] for sku in seed.stock}
    check("stock_sold_equals_items_ordered", "stock sold equals the items of the committed orders",
          [f"{sku}: {sold[sku]} sold, {ordered[sku]} ordered" for sku in seed.stock if sold[sku] != ordered[sku]],
          f"{sum(sold.values())} items sold in {len(confirmed)} orders")  # fmt: skip

    # Money charged equals the sum of the committed orders.
    owed: Counter[str] = Counter()
    for buyer, _, _, amount, _, _ in confirmed.values():
        owed[buyer] += amount
    spent = {buyer: rows.accounts.get(buyer, (0, 0, 0))[2] for buyer in seed.balances}
    total_spent, total_owed = sum(spent.values()), sum(owed.values())
    problems = [f"{b}: charged {spent[b]}, orders {owed[b]}" for b in seed.balances if spent[b] != owed[b]]
    if total_spent != total_owed:
        problems.insert(0, f"charged {total_spent} in all, committed orders sum to {total_owed}")
    check("money_charged_equals_committed_orders", "money charged equals the sum of the committed orders", problems,
          f"{_money(total_spent)} charged")  # fmt: skip

    # No order without its charge and its stock, and nothing charged or taken without its order.
    problems = []
    for oid, (buyer, sku, qty, amount, _, _) in confirmed.items():
        movement, charge = rows.movements.get(oid), rows.charges.get(oid)
        if movement != (sku, qty, "done"):
            problems.append(f"order {oid} is confirmed but its stock movement is {movement}")
        if charge != (buyer, amount, "done"):
            problems.append(f"order {oid} is confirmed but its charge is {charge}")
    for oid, (_, _, state) in rows.movements.items():
        if state == "done" and oid not in confirmed:
            problems.append(f"stock was taken for order {oid}, which is {_status(rows, oid)}")
    for oid, (_, _, state) in rows.charges.items():
        if state == "done" and oid not in confirmed:
            problems.append(f"a charge was made for order {oid}, which is {_status(rows, oid)}")
    check("no_order_without_charge_and_stock", "no order without its charge and stock (and the reverse)", problems,
          f"{len(confirmed)} orders, each with its stock and its charge")  # fmt: skip

    # Nothing created or lost: the totals are the starting ones.
    problems = []
    for sku, initial in seed.stock.items():
        available, reserved, sold_now = rows.stock.get(sku, (0, 0, 0))
        if available + reserved + sold_now != initial or reserved:
            problems.append(f"{sku}: {available} available + {reserved} reserved + {sold_now} sold, started "
                            f"with {initial}")  # fmt: skip
    for buyer, initial in seed.balances.items():
        balance, frozen, spent_now = rows.accounts.get(buyer, (0, 0, 0))
        if balance + frozen + spent_now != initial or frozen:
            problems.append(f"{buyer}: {balance} + {frozen} frozen + {spent_now} spent, started with {initial}")
    check("stock_and_money_conserved", "stock and money are all accounted for", problems)

    # Nothing in a non-final state.
    problems, awaiting = _undo_problems(dbs, rows, tc_xids(store))
    check("no_undo_log_in_non_final_state", "no AT undo log in a non-final state", problems,
          f"{awaiting} undo log(s) of committed branches not deleted: a service killed before deleting them "
          "leaves them to the age-based clean-up" if awaiting else "")  # fmt: skip
    fence = {k: v for k, v in left.items() if k.startswith("fence rows")}
    check("no_fence_in_non_final_state", "no TCC fence row in a non-final state",
          [f"{n} {what}" for what, n in fence.items() if n])  # fmt: skip
    tc = {k: v for k, v in left.items() if k.endswith("in the TC")}
    check("no_global_lock_or_session_left", "no global lock, session or branch left in the TC store",
          [f"{n} {what}" for what, n in tc.items() if n])  # fmt: skip
    half = {k: v for k, v in left.items() if k in ("pending orders", "reserved stock movements", "frozen charges")}
    check("no_business_row_half_done", "no order, stock movement or charge half done",
          [f"{n} {what}" for what, n in half.items() if n])  # fmt: skip

    # What the buyers were told matches the databases.
    resolution = _resolve(outcomes, rows)
    check("answers_match_databases", "every answer matches the databases; unanswered purchases ended",
          resolution.mismatches, f"{sum(resolution.resolved.values())} unanswered purchase(s) resolved"
          if resolution.resolved else "")  # fmt: skip
    check("recovery_finished", "recovery finished before the checks",
          [] if recovered else [f"still in flight after {waited:.0f} s: {describe(left)}"],
          f"in {waited:.1f} s")  # fmt: skip
    return checks, resolution


def _undo_problems(dbs: ShopDatabases, rows: _Rows, open_xids: set[str]) -> tuple[list[str], int]:
    """An undo log is final when its global transaction committed (it only waits to be deleted) or
    it is a rollback's defense row (log_status 1). One whose transaction the TC still has is in
    flight; one of a transaction that did not commit should have been undone and deleted."""
    committed = {xid for (_, _, _, _, status, xid) in rows.orders.values() if status == "confirmed"}
    problems: list[str] = []
    awaiting = 0
    for service, db in dbs.items():
        for xid, status in undo_logs(db):
            if status != UNDO_NORMAL:
                continue
            if xid in open_xids:
                problems.append(f"{service}: undo log of {xid}, which the TC has not finished")
            elif xid not in committed:
                problems.append(f"{service}: undo log of {xid}, which did not commit and was not undone")
            else:
                awaiting += 1
    return problems, awaiting


def _status(rows: _Rows, oid: str) -> str:
    order = rows.orders.get(oid)
    return "missing" if order is None else order[4]


def _resolve(outcomes: Iterable[Outcome], rows: _Rows) -> Resolution:
    result = Resolution()
    for outcome in outcomes:
        oid = outcome.purchase.order_id
        status = _status(rows, oid)
        if outcome.outcome == "committed":
            result.committed += 1
            if status != "confirmed":
                result.mismatches.append(f"{oid} was answered committed but is {status}")
        elif outcome.outcome == "rolled_back":
            result.rolled_back[outcome.reason or "unknown reason"] += 1
            if status == "confirmed":
                result.mismatches.append(f"{oid} was answered rolled back ({outcome.reason}) but is confirmed")
        elif outcome.outcome == "not_sent":
            result.not_sent += 1
            if status != "missing":
                result.mismatches.append(f"{oid} was never sent but is {status}")
        elif status == "confirmed":  # unanswered: the databases say what became of it
            result.committed += 1
            result.resolved["committed"] += 1
        elif status in ("cancelled", "missing"):
            result.rolled_back["crash"] += 1
            result.resolved["rolled_back"] += 1
        else:
            result.mismatches.append(f"{oid} got no answer and is still {status}")
    return result


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"
