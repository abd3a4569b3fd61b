"""The order service: a purchase is one global transaction across order, stock and account.

``POST /purchase`` ``{"order_id", "buyer", "sku", "qty", "mode": "tcc", "fail_after_writes": false}``
begins a global transaction (this service is the TM), and inside it:

1. places the order: the try of the TCC action ``shop-order-place`` writes the order 'pending'
   in this service's database (confirm: 'confirmed'; cancel: 'cancelled');
2. calls the stock service (``POST /tcc/reserve``) and the account service (``POST /tcc/charge``)
   through an httpx client on which ``pyseata.integrations.http.install`` put the XID header, so
   both join this transaction;
3. with ``fail_after_writes``, raises after all three services wrote (the injected failure).

Leaving the ``with global_transaction(...)`` block normally commits: the TC then has every branch
confirmed. An exception rolls back: every branch that registered is cancelled, in every service,
also the ones whose try already committed locally. The answer says which, and why::

    {"outcome": "committed", "xid": ..., "amount": 1200}
    {"outcome": "rolled_back", "reason": "out_of_stock" | "insufficient_funds" | "injected_failure"
                                         | "timeout" | "unavailable", "error": ...}
    {"outcome": "unknown", ...}   (503: the commit was sent but no TC answered; the TC decides)

AT mode (``"mode": "at"``) is the same purchase with plain SQL and no confirm or cancel anywhere:
the order is inserted 'confirmed' through pyseata's AT proxy connection, whose commit registers an
AT branch and keeps an undo log; the stock and account services do the same on their side
(``/at/take``, ``/at/charge``). A rollback has the TC undo every branch from its undo log (the
order row is deleted again). Available when this pyseata has AT mode (:mod:`pyseata.at`).

Run it on its own::

    python examples/shop/order.py --tc 127.0.0.1:8091 --db sqlite:///order.db --port 8001 \\
        --stock-url http://127.0.0.1:8002 --account-url http://127.0.0.1:8003
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import pyseata.client as seata
from pyseata import tcc
from pyseata.demo.db import Database, execute, query
from pyseata.errors import PyseataError
from pyseata.integrations.fastapi import SeataMiddleware
from pyseata.integrations.http import install

try:
    from pyseata import at
except ImportError:  # a pyseata without AT mode: the shop runs TCC only
    at = None  # type: ignore[assignment]

APPLICATION_ID = "shop-order"
log = logging.getLogger("shop.order")


class PurchaseRefusedError(Exception):
    """A service said no (409): ``reason`` is its word for why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InjectedFailureError(Exception):
    """The demo asked for a failure after every service wrote: the rollback must undo all of it."""


class Purchase(BaseModel):
    order_id: str
    buyer: str
    sku: str
    qty: int
    mode: str = "tcc"
    fail_after_writes: bool = False


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stock-url", required=True, help="Base URL of the stock service.")
    parser.add_argument("--account-url", required=True, help="Base URL of the account service.")
    parser.add_argument(
        "--tx-timeout",
        type=float,
        default=10.0,
        help="Global transaction timeout in seconds: after it the TC rolls back by itself.",
    )


def create_app(db: Database, args: argparse.Namespace) -> FastAPI:
    p = db.p
    # The fence takes a connection per step and hands it back: reused from a small pool.
    pool = db.pool()
    fence = tcc.Fence(pool.connect, db.kind, release=pool.release)
    stock_url, account_url = args.stock_url.rstrip("/"), args.account_url.rstrip("/")
    # One client for all threads (httpx.Client is thread-safe); install() adds the XID bound in
    # the calling thread to each request it sends, so nothing here passes the XID by hand.
    http = install(httpx.Client(timeout=httpx.Timeout(15.0, connect=3.0), trust_env=False))

    @tcc.action(name="shop-order-place", fence=fence)
    def place(order_id: str, buyer: str, sku: str, qty: int, amount: int) -> None:
        ctx = tcc.action_context()
        execute(ctx.connection, f"INSERT INTO orders (id, buyer, sku, qty, amount, status, mode, xid) "
                                f"VALUES ({p}, {p}, {p}, {p}, {p}, 'pending', 'tcc', {p})",
                (order_id, buyer, sku, qty, amount, ctx.xid or ""))  # fmt: skip

    @place.confirm
    def confirm(ctx: tcc.BusinessActionContext) -> None:
        execute(ctx.connection, f"UPDATE orders SET status = 'confirmed' WHERE id = {p}", (ctx["order_id"],))

    @place.cancel
    def cancel(ctx: tcc.BusinessActionContext) -> None:
        execute(ctx.connection, f"UPDATE orders SET status = 'cancelled' WHERE id = {p}", (ctx["order_id"],))

    def call(url: str, body: dict[str, Any]) -> None:
        answer = http.post(url, json=body)
        if answer.status_code == 409:
            detail = answer.json()
            raise PurchaseRefusedError(detail["reason"], detail.get("error", ""))
        answer.raise_for_status()

    def price_of(sku: str) -> int | None:
        with fence.transaction() as conn:  # a plain local read; any connection of this database would do
            rows = query(conn, f"SELECT price FROM product WHERE sku = {p}", (sku,))
        return int(rows[0][0]) if rows else None

    def buy_tcc(order: Purchase, amount: int, attempt: Attempt) -> None:
        with seata.global_transaction(name="purchase", timeout=args.tx_timeout) as tx:
            attempt.xid = tx.xid
            place(order.order_id, order.buyer, order.sku, order.qty, amount)
            call(f"{stock_url}/tcc/reserve", {"order_id": order.order_id, "sku": order.sku, "qty": order.qty})
            call(f"{account_url}/tcc/charge", {"order_id": order.order_id, "buyer": order.buyer, "amount": amount})
            if order.fail_after_writes:
                raise InjectedFailureError(f"order {order.order_id}: failing on purpose after every service wrote")
            attempt.committing = True  # leaving the block now sends the commit

    flows = {"tcc": buy_tcc}

    if at is not None:
        source = at.DataSource(db.connect, resource_id="shop-order-db", lock_retry=at.LockRetry(0.02, 250))

        def buy_at(order: Purchase, amount: int, attempt: Attempt) -> None:
            with seata.global_transaction(name="purchase-at", timeout=args.tx_timeout) as tx:
                attempt.xid = tx.xid
                with pool.transaction(source.wrap) as conn:  # its commit registers this service's AT branch
                    execute(conn, f"INSERT INTO orders (id, buyer, sku, qty, amount, status, mode, xid) "
                                  f"VALUES ({p}, {p}, {p}, {p}, {p}, 'confirmed', 'at', {p})",
                            (order.order_id, order.buyer, order.sku, order.qty, amount, tx.xid))  # fmt: skip
                call(f"{stock_url}/at/take", {"order_id": order.order_id, "sku": order.sku, "qty": order.qty})
                call(f"{account_url}/at/charge", {"order_id": order.order_id, "buyer": order.buyer, "amount": amount})
                if order.fail_after_writes:
                    raise InjectedFailureError(f"order {order.order_id}: failing on purpose after every service wrote")
                attempt.committing = True

        flows["at"] = buy_at

    app = FastAPI(title="shop: order")
    app.add_middleware(SeataMiddleware)

    @app.post("/purchase")
    def purchase(order: Purchase) -> Any:
        flow = flows.get(order.mode)
        if flow is None:
            return JSONResponse({"error": f"mode {order.mode!r} is not available; known: {sorted(flows)}"}, 400)
        price = price_of(order.sku)
        if price is None:
            return JSONResponse({"error": f"no product {order.sku!r}"}, status_code=404)
        amount = price * order.qty
        attempt = Attempt()
        try:
            flow(order, amount, attempt)
        except Exception as exc:
            if isinstance(exc, (seata.TimeoutRollbackedError, seata.RollbackedByTcError)):
                return rolled_back("timeout", exc, attempt)  # the TC rolled it back: a final answer
            if attempt.committing:
                # The commit was sent but not answered (TC unreachable, heuristic): whether it
                # committed is the TC's to say, and the TC finishes it either way.
                return JSONResponse({"outcome": "unknown", "xid": attempt.xid, "error": str(exc)}, status_code=503)
            # Raised before the commit (or by begin, before anything ran): the block rolled back.
            return rolled_back(_reason(exc), exc, attempt)
        return {"outcome": "committed", "xid": attempt.xid, "amount": amount}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"service": "order"}

    return app


@dataclass
class Attempt:
    """How far one purchase got: enough to tell a rollback from an unanswered commit."""

    xid: str | None = None
    committing: bool = False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PurchaseRefusedError):
        return exc.reason
    if isinstance(exc, InjectedFailureError):
        return "injected_failure"
    if at is not None and isinstance(exc, at.LockWaitTimeoutError):
        return "lock_conflict"
    if isinstance(exc, (httpx.HTTPError, OSError, PyseataError)):
        return "unavailable"  # a service or the TC did not answer
    log.exception("purchase failed unexpectedly")
    return "error"


def rolled_back(reason: str, exc: BaseException, attempt: Attempt) -> dict[str, Any]:
    # A failed rollback leaves a note on the exception; the TC rolls back at the timeout anyway.
    notes = " ".join(getattr(exc, "__notes__", []))
    return {"outcome": "rolled_back", "reason": reason, "xid": attempt.xid, "error": f"{exc} {notes}".strip()}


if __name__ == "__main__":
    from pyseata.demo.host import main

    main(__file__)
