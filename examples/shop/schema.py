"""The sample shop's tables: each service owns one database and nothing else.

    order     product (the catalogue and its prices), orders
    stock     stock (per SKU: available, reserved by a try, sold), stock_movement (one per order)
    account   account (per buyer: balance, frozen by a try, spent), charge (one per order)

Each database also gets the TCC fence table (``tcc_fence_log``), which makes confirm and cancel
run exactly once, and, for AT mode, Seata's ``undo_log`` table, where each AT branch keeps the
before and after images that let the TC undo it. The column types are the ones SQLite,
PostgreSQL and MariaDB all understand.

Money is in cents (integers): sums must add up exactly, which floats do not promise.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyseata import tcc
from pyseata.demo.db import Database

SERVICES = ("order", "stock", "account")

TABLES: dict[str, tuple[str, ...]] = {
    "order": (
        "CREATE TABLE product (sku VARCHAR(32) PRIMARY KEY, price INTEGER NOT NULL)",
        # status: pending (the try ran), confirmed, cancelled. The xid says which global
        # transaction wrote it, for whoever has to explain a row later.
        "CREATE TABLE orders (id VARCHAR(64) PRIMARY KEY, buyer VARCHAR(64) NOT NULL, sku VARCHAR(32) NOT NULL, "
        "qty INTEGER NOT NULL, amount INTEGER NOT NULL, status VARCHAR(16) NOT NULL, mode VARCHAR(8) NOT NULL, "
        "xid VARCHAR(128) NOT NULL)",
    ),
    "stock": (
        "CREATE TABLE stock (sku VARCHAR(32) PRIMARY KEY, available INTEGER NOT NULL, reserved INTEGER NOT NULL, "
        "sold INTEGER NOT NULL)",
        # state: reserved (the try ran), done (confirmed), released (cancelled)
        "CREATE TABLE stock_movement (order_id VARCHAR(64) PRIMARY KEY, sku VARCHAR(32) NOT NULL, "
        "qty INTEGER NOT NULL, state VARCHAR(16) NOT NULL)",
    ),
    "account": (
        "CREATE TABLE account (id VARCHAR(64) PRIMARY KEY, balance INTEGER NOT NULL, frozen INTEGER NOT NULL, "
        "spent INTEGER NOT NULL)",
        # state: frozen (the try ran), done (confirmed), refunded (cancelled)
        "CREATE TABLE charge (order_id VARCHAR(64) PRIMARY KEY, buyer VARCHAR(64) NOT NULL, "
        "amount INTEGER NOT NULL, state VARCHAR(16) NOT NULL)",
    ),
}


def resource_id(service: str) -> str:
    """The AT resource id of a service's database: the same in every process of the service."""
    return f"shop-{service}-db"


def create_tables(service: str, db: Database, *, undo_log: bool = True) -> None:
    """The service's tables, its fence table and (``undo_log``, when this pyseata has AT mode) its
    undo_log table, in an empty database."""
    for statement in TABLES[service]:
        db.run(statement)
    tcc.Fence(db.connect, db.kind, clean_period=0).create_table()
    if undo_log:
        from pyseata import at

        at.DataSource(db.connect, resource_id=resource_id(service), register=False).create_undo_log_table()


def seed(
    service: str,
    db: Database,
    *,
    prices: Mapping[str, int] | None = None,
    stock: Mapping[str, int] | None = None,
    balances: Mapping[str, int] | None = None,
) -> None:
    """The starting data each service needs: its part of the catalogue, the stock, the money."""
    p = db.p
    rows: list[tuple[str, tuple[object, ...]]] = []
    if service == "order":
        rows = [(f"INSERT INTO product (sku, price) VALUES ({p}, {p})", (sku, price))
                for sku, price in (prices or {}).items()]  # fmt: skip
    elif service == "stock":
        rows = [(f"INSERT INTO stock (sku, available, reserved, sold) VALUES ({p}, {p}, 0, 0)", (sku, qty))
                for sku, qty in (stock or {}).items()]  # fmt: skip
    elif service == "account":
        rows = [(f"INSERT INTO account (id, balance, frozen, spent) VALUES ({p}, {p}, 0, 0)", (buyer, cents))
                for buyer, cents in (balances or {}).items()]  # fmt: skip
    for sql, params in rows:
        db.run(sql, params)
