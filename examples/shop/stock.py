"""The stock service: takes the items of a purchase (FastAPI, a database of its own).

It never begins a global transaction: the order service does, and calls ``POST /tcc/reserve``
with the XID in the ``TX_XID`` header. ``SeataMiddleware`` binds that XID while the request runs,
so the TCC action's try registers a branch of the caller's transaction. Later the TC calls back
this process (not over HTTP: over the connection ``pyseata.client.init`` opened) with the
transaction's outcome, and the fence runs the confirm or the cancel exactly once.

    try       available -= qty, reserved += qty; a stock_movement row 'reserved'
    confirm   reserved -= qty, sold += qty;      the row becomes 'done'
    cancel    reserved -= qty, available += qty; the row becomes 'released'

Each step is one local transaction together with its fence row. Not enough stock: the try raises
:class:`OutOfStockError`, nothing is written, the endpoint answers 409, and the caller rolls back.

AT mode (``POST /at/take``) does the same purchase with plain SQL and no confirm or cancel to
write: ``available -= qty, sold += qty`` and a stock_movement row 'done', in one local transaction
on pyseata's AT proxy connection. Its commit registers an AT branch (taking global locks on the
rows it changed) and stores an undo log beside the change; on rollback the TC has this process
restore the before images.

The two modes never write the same rows here: the demo gives each mode its own SKUs. A plain
(non-AT) write to a row an AT branch changed would be a *dirty write*, which stops that branch's
rollback for an operator (Seata asks such writers to take the global lock first).

Run it on its own::

    python examples/shop/stock.py --tc 127.0.0.1:8091 --db sqlite:///stock.db --port 8002
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pyseata import tcc
from pyseata.demo.db import Database, execute
from pyseata.integrations.fastapi import SeataMiddleware

try:
    from pyseata import at
except ImportError:  # a pyseata without AT mode: the shop runs TCC only
    at = None  # type: ignore[assignment]

APPLICATION_ID = "shop-stock"


class OutOfStockError(Exception):
    pass


class Reservation(BaseModel):
    order_id: str
    sku: str
    qty: int


def options(parser: argparse.ArgumentParser) -> None:
    """This service has no options beyond the common ones (--tc, --db, --port)."""


def create_app(db: Database, args: argparse.Namespace) -> FastAPI:
    p = db.p
    # The fence keeps its rows in the same database as the business rows: one local transaction
    # holds both, which is what makes confirm/cancel exactly-once.
    # The fence takes a connection per step (try, confirm, cancel) and hands it back: a small pool
    # keeps them, since opening one can cost more than the step itself.
    pool = db.pool()
    fence = tcc.Fence(pool.connect, db.kind, release=pool.release)

    @tcc.action(name="shop-stock-reserve", fence=fence)
    def reserve(order_id: str, sku: str, qty: int) -> None:
        conn = tcc.action_context().connection
        taken = execute(conn, f"UPDATE stock SET available = available - {p}, reserved = reserved + {p} "
                              f"WHERE sku = {p} AND available >= {p}", (qty, qty, sku, qty))  # fmt: skip
        if taken != 1:
            raise OutOfStockError(f"not enough {sku} in stock for {qty}")
        execute(conn, f"INSERT INTO stock_movement (order_id, sku, qty, state) VALUES ({p}, {p}, {p}, 'reserved')",
                (order_id, sku, qty))  # fmt: skip

    @reserve.confirm
    def confirm(ctx: tcc.BusinessActionContext) -> None:
        # The context carries the try's arguments by name, also in a restarted process.
        conn, sku, qty = ctx.connection, ctx["sku"], ctx["qty"]
        execute(conn, f"UPDATE stock SET reserved = reserved - {p}, sold = sold + {p} WHERE sku = {p}", (qty, qty, sku))
        execute(conn, f"UPDATE stock_movement SET state = 'done' WHERE order_id = {p}", (ctx["order_id"],))

    @reserve.cancel
    def cancel(ctx: tcc.BusinessActionContext) -> None:
        # Only called when the try committed here (the fence answers an empty rollback itself).
        conn, sku, qty = ctx.connection, ctx["sku"], ctx["qty"]
        execute(conn, f"UPDATE stock SET reserved = reserved - {p}, available = available + {p} WHERE sku = {p}",
                (qty, qty, sku))  # fmt: skip
        execute(conn, f"UPDATE stock_movement SET state = 'released' WHERE order_id = {p}", (ctx["order_id"],))

    app = FastAPI(title="shop: stock")
    app.add_middleware(SeataMiddleware)

    if at is not None:
        # The database as an AT resource: registered with the TC by pyseata.client.init, which
        # then sends this process the phase two of its branches. The stock rows are hot (every
        # purchase of a SKU takes its row's global lock), so wait longer for it than Seata's 0.3 s.
        source = at.DataSource(db.connect, resource_id="shop-stock-db", lock_retry=at.LockRetry(0.02, 250))

        @app.post("/at/take")
        def post_take(body: Reservation) -> Any:
            try:
                with pool.transaction(source.wrap) as conn:  # commit = branch register + undo log + commit
                    taken = execute(conn, f"UPDATE stock SET available = available - {p}, sold = sold + {p} "
                                          f"WHERE sku = {p} AND available >= {p}",
                                    (body.qty, body.qty, body.sku, body.qty))  # fmt: skip
                    if taken != 1:
                        raise OutOfStockError(f"not enough {body.sku} in stock for {body.qty}")
                    execute(conn, f"INSERT INTO stock_movement (order_id, sku, qty, state) "
                                  f"VALUES ({p}, {p}, {p}, 'done')", (body.order_id, body.sku, body.qty))  # fmt: skip
            except OutOfStockError as exc:
                return JSONResponse({"reason": "out_of_stock", "error": str(exc)}, status_code=409)
            except at.LockWaitTimeoutError as exc:
                return JSONResponse({"reason": "lock_conflict", "error": str(exc)}, status_code=409)
            return {"taken": body.qty}

    # A plain `def` endpoint: FastAPI runs it in a worker thread with a copy of the request's
    # context, so the XID the middleware bound is there, and the blocking DB-API calls do not
    # stop the event loop.
    @app.post("/tcc/reserve")
    def post_reserve(body: Reservation) -> Any:
        try:
            reserve(body.order_id, body.sku, body.qty)
        except OutOfStockError as exc:
            return JSONResponse({"reason": "out_of_stock", "error": str(exc)}, status_code=409)
        return {"reserved": body.qty}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"service": "stock"}

    return app


if __name__ == "__main__":
    from pyseata.demo.host import main

    main(__file__)
