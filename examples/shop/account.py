"""The account service: charges the buyer (Flask, a database of its own).

Like the stock service it only joins global transactions: ``SeataFlask`` binds the XID of each
request (``TX_XID`` header) while Flask handles it, so the TCC try below registers a branch of
the caller's transaction; the TC later has this process confirm or cancel it.

    try       balance -= amount, frozen += amount; a charge row 'frozen'
    confirm   frozen -= amount, spent += amount;   the row becomes 'done'
    cancel    frozen -= amount, balance += amount; the row becomes 'refunded'

Not enough money: the try raises :class:`InsufficientFundsError`, writes nothing, the endpoint
answers 409 and the caller rolls the whole purchase back (stock included).

AT mode (``POST /at/charge``): ``balance -= amount, spent += amount`` and a charge row 'done' in
one local transaction on pyseata's AT proxy; the TC has it undone from the undo log if the
purchase rolls back. (AT and TCC purchases use different buyers: see the stock service.)

Run it on its own::

    python examples/shop/account.py --tc 127.0.0.1:8091 --db sqlite:///account.db --port 8003
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask, jsonify, request

from pyseata import tcc
from pyseata.demo.db import Database, execute
from pyseata.integrations.flask import SeataFlask

try:
    from pyseata import at
except ImportError:  # a pyseata without AT mode: the shop runs TCC only
    at = None  # type: ignore[assignment]

APPLICATION_ID = "shop-account"


class InsufficientFundsError(Exception):
    pass


def options(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones (--tc, --db, --port)."""


def create_app(db: Database, args: argparse.Namespace) -> Flask:
    p = db.p
    # The fence takes a connection per step and hands it back: reused from a small pool.
    pool = db.pool()
    fence = tcc.Fence(pool.connect, db.kind, release=pool.release)

    @tcc.action(name="shop-account-charge", fence=fence)
    def charge(order_id: str, buyer: str, amount: int) -> None:
        conn = tcc.action_context().connection
        frozen = execute(conn, f"UPDATE account SET balance = balance - {p}, frozen = frozen + {p} "
                               f"WHERE id = {p} AND balance >= {p}", (amount, amount, buyer, amount))  # fmt: skip
        if frozen != 1:
            raise InsufficientFundsError(f"{buyer} cannot pay {amount}")
        execute(conn, f"INSERT INTO charge (order_id, buyer, amount, state) VALUES ({p}, {p}, {p}, 'frozen')",
                (order_id, buyer, amount))  # fmt: skip

    @charge.confirm
    def confirm(ctx: tcc.BusinessActionContext) -> None:
        conn, buyer, amount = ctx.connection, ctx["buyer"], ctx["amount"]
        execute(conn, f"UPDATE account SET frozen = frozen - {p}, spent = spent + {p} WHERE id = {p}",
                (amount, amount, buyer))  # fmt: skip
        execute(conn, f"UPDATE charge SET state = 'done' WHERE order_id = {p}", (ctx["order_id"],))

    @charge.cancel
    def cancel(ctx: tcc.BusinessActionContext) -> None:
        conn, buyer, amount = ctx.connection, ctx["buyer"], ctx["amount"]
        execute(conn, f"UPDATE account SET frozen = frozen - {p}, balance = balance + {p} WHERE id = {p}",
                (amount, amount, buyer))  # fmt: skip
        execute(conn, f"UPDATE charge SET state = 'refunded' WHERE order_id = {p}", (ctx["order_id"],))

    app = Flask("shop-account")
    SeataFlask(app)

    @app.post("/tcc/charge")
    def post_charge() -> Any:
        body = request.get_json(force=True)
        try:
            charge(str(body["order_id"]), str(body["buyer"]), int(body["amount"]))
        except InsufficientFundsError as exc:
            return jsonify(reason="insufficient_funds", error=str(exc)), 409
        return jsonify(charged=int(body["amount"]))

    if at is not None:
        source = at.DataSource(db.connect, resource_id="shop-account-db", lock_retry=at.LockRetry(0.02, 250))

        @app.post("/at/charge")
        def post_at_charge() -> Any:
            body = request.get_json(force=True)
            buyer, amount = str(body["buyer"]), int(body["amount"])
            try:
                with pool.transaction(source.wrap) as conn:
                    paid = execute(conn, f"UPDATE account SET balance = balance - {p}, spent = spent + {p} "
                                         f"WHERE id = {p} AND balance >= {p}",
                                   (amount, amount, buyer, amount))  # fmt: skip
                    if paid != 1:
                        raise InsufficientFundsError(f"{buyer} cannot pay {amount}")
                    execute(conn, f"INSERT INTO charge (order_id, buyer, amount, state) VALUES ({p}, {p}, {p}, 'done')",
                            (str(body["order_id"]), buyer, amount))  # fmt: skip
            except InsufficientFundsError as exc:
                return jsonify(reason="insufficient_funds", error=str(exc)), 409
            except at.LockWaitTimeoutError as exc:
                return jsonify(reason="lock_conflict", error=str(exc)), 409
            return jsonify(charged=amount)

    @app.get("/health")
    def health() -> Any:
        return jsonify(service="account")

    return app


if __name__ == "__main__":
    from pyseata.demo.host import main

    main(__file__)
