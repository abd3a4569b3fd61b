"""TCC global transactions per second, two branches in two RM processes, against the same
business functions called without pyseata, measured in the same run.

    .venv/bin/python bench/tcc.py --seconds 5

Processes: a ``pyseata server`` (TC; ``--store sqlite``, its default, or ``memory``), two account
services (RMs: a threaded HTTP/1.1 keep-alive WSGI gateway behind SeataWSGIMiddleware, each with
its own SQLite database in WAL mode), and this process, the load generator, with 1 and 8 threads
(``--threads``). One unit of work moves an amount on both services:

* ``plain``: POST /plain to each service, which runs the business try (freeze the amount) and
  then the business confirm (spend it), each in its own local transaction: no pyseata at all;
* ``tcc``: a global transaction (begin, commit), and inside it POST /try to each service, with
  the XID in ``TX_XID`` (pyseata.integrations): each registers a TCC branch and runs the same
  business try under the fence; at commit the TC sends each service a BranchCommit, which runs
  the same business confirm under the fence. Per unit: 6 TC round trips, 2 HTTP calls,
  4 local transactions that also write fence rows.

After the tcc runs, ``unconfirmed`` counts fence rows still in state tried (should be 0: TCC
branches are confirmed before the commit returns). ``ratio`` is tcc / plain units per second.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import quantiles
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Child, finish, parser, tc_command, threaded

THREADS = (1, 8)
WARMUP = 1.0
AMOUNT = 1


# --- the business (shared by both modes) ---------------------------------------------------------


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, as most deployments
    return conn


def freeze(conn: sqlite3.Connection, account: str, amount: int) -> None:
    conn.execute(
        "UPDATE account SET balance = balance - ?, frozen = frozen + ? WHERE id = ?", (amount, amount, account)
    )


def spend(conn: sqlite3.Connection, account: str, amount: int) -> None:
    conn.execute("UPDATE account SET frozen = frozen - ? WHERE id = ?", (amount, account))


def release(conn: sqlite3.Connection, account: str, amount: int) -> None:
    conn.execute(
        "UPDATE account SET balance = balance + ?, frozen = frozen - ? WHERE id = ?", (amount, amount, account)
    )


def prepare_database(path: str, accounts: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE account (id TEXT PRIMARY KEY, balance INTEGER NOT NULL, frozen INTEGER NOT NULL)")
        conn.executemany("INSERT INTO account VALUES (?, 1000000000, 0)", [(f"acct-{n}",) for n in range(accounts)])
        conn.commit()


# --- an RM service (its own process) -------------------------------------------------------------


def serve(name: str, tc: str, path: str) -> None:
    from urllib.parse import parse_qs

    import pyseata.client as seata
    from pyseata import tcc
    from pyseata.integrations.wsgi import SeataWSGIMiddleware

    # Held open for the process's life: closing the last connection to a WAL database checkpoints
    # it, which would cost every local transaction (in both modes) a checkpoint.
    keeper = connect(path)
    fence = tcc.Fence(lambda: connect(path), "sqlite", clean_period=0)
    fence.create_table()

    @tcc.action(name=f"bench-{name}", fence=fence)
    def pay(account: str, amount: int) -> None:
        freeze(tcc.action_context().connection, account, amount)

    @pay.confirm
    def _(ctx: tcc.BusinessActionContext) -> None:
        spend(ctx.connection, ctx["account"], ctx["amount"])

    @pay.cancel
    def _(ctx: tcc.BusinessActionContext) -> None:
        release(ctx.connection, ctx["account"], ctx["amount"])

    def plain(account: str, amount: int) -> None:
        for step in (freeze, spend):  # the try, then the confirm: two local transactions
            with contextlib.closing(connect(path)) as conn:
                step(conn, account, amount)
                conn.commit()

    routes: dict[str, Callable[[str, int], None]] = {"/try": pay, "/plain": plain}
    logging_quiet()
    seata.init(application_id=f"bench-{name}", grouplist=tc)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            routes[environ["PATH_INFO"]](query["account"][0], int(query["amount"][0]))
        except Exception as exc:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [f"{type(exc).__name__}: {exc}".encode()]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = keep_alive_server(SeataWSGIMiddleware(app))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"ready http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        seata.shutdown()
        keeper.close()


def keep_alive_server(app: Callable[..., Any]) -> ThreadingHTTPServer:
    """A minimal WSGI gateway with HTTP/1.1 keep-alive (werkzeug's dev server closes every
    connection, and a TCP handshake per call would blur what is measured)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": query}
            # Header names as a WSGI server presents them: TX_XID and TX-XID both become HTTP_TX_XID.
            environ.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in self.headers.items()})
            status: list[str] = []
            body = b"".join(app(environ, lambda line, headers, exc_info=None: status.append(line)))
            self.send_response(int(status[0].split()[0]))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


# --- the orchestrator and load generator -----------------------------------------------------------


def measure(unit: Callable[[int], None], threads: int, seconds: float) -> dict[str, float]:
    """Units per second (and latency) with ``threads`` threads, after a warm-up."""
    run = threaded(unit, threads, seconds, WARMUP, join=60)
    flat = sorted(run.latencies())
    cuts = quantiles(flat, n=100) if len(flat) >= 2 else [flat[0] if flat else 0.0] * 99
    return {"units_per_s": len(flat) / run.elapsed, "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000,
            "units": len(flat)}  # fmt: skip


def unconfirmed(paths: list[str]) -> int:
    total = 0
    for path in paths:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            total += conn.execute("SELECT count(*) FROM tcc_fence_log WHERE status = 1").fetchone()[0]
    return int(total)


@contextlib.contextmanager
def system(tmp: str, store: str, accounts: int) -> Iterator[tuple[str, list[str], list[str]]]:
    """A TC and two services; yields (TC address, service URLs, database paths)."""
    url = f"sqlite:///{tmp}/tc.db" if store == "sqlite" else "memory://"
    children: list[Child] = []
    try:
        children.append(Child(tc_command(url)))
        tc = children[0].address
        paths = [f"{tmp}/{name}.db" for name in ("a", "b")]
        for name, path in zip(("a", "b"), paths, strict=True):
            prepare_database(path, accounts)
            children.append(Child([sys.executable, __file__, "--serve", name, "--tc", tc, "--db", path]))
        yield tc, [child.address for child in children[1:]], paths
    finally:
        for child in reversed(children):
            child.stop()


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--threads", default=",".join(map(str, THREADS)), help="comma-separated load thread counts")
    p.add_argument("--store", default="sqlite", choices=("sqlite", "memory"), help="the TC's session store")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--tc", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.tc, args.db)
        return

    import requests

    import pyseata.client as seata
    from pyseata.integrations.http import install

    levels = [int(t) for t in args.threads.split(",") if t]
    figures: dict[str, Any] = {"seconds": args.seconds, "tc_store": args.store, "branches": 2, "rm_processes": 2}
    logging_quiet()
    with tempfile.TemporaryDirectory(prefix="pyseata-bench-tcc-") as tmp, system(tmp, args.store, max(levels)) as (
        tc, urls, paths,
    ):  # fmt: skip
        seata.init(application_id="bench-tm", grouplist=tc)
        local = threading.local()

        def session() -> requests.Session:
            if not hasattr(local, "session"):
                local.session = install(requests.Session())  # sends the bound XID as TX_XID
                local.session.trust_env = False
            return local.session  # type: ignore[no-any-return]

        def call(path: str, n: int) -> None:
            for url in urls:
                answer = session().post(f"{url}{path}?account=acct-{n}&amount={AMOUNT}", timeout=60)
                if answer.status_code != 200:
                    raise RuntimeError(f"{url}{path}: {answer.status_code} {answer.text}")

        def plain(n: int) -> None:
            call("/plain", n)

        def tcc(n: int) -> None:
            with seata.global_transaction(name="bench-tcc"):
                call("/try", n)

        print(f"{'threads':>7}  {'mode':<6}{'units/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'tcc/plain':>11}")
        try:
            for threads in levels:
                row: dict[str, Any] = {}
                for mode, unit in (("plain", plain), ("tcc", tcc)):
                    row[mode] = f = measure(unit, threads, args.seconds)
                    ratio = row["tcc"]["units_per_s"] / row["plain"]["units_per_s"] if mode == "tcc" else None
                    print(f"{threads:>7}  {mode:<6}{f['units_per_s']:>9,.1f}{f['p50_ms']:>8.1f}{f['p99_ms']:>8.1f}"
                          f"{'' if ratio is None else f'{ratio:>11.3f}'}", flush=True)  # fmt: skip
                row["ratio"] = row["tcc"]["units_per_s"] / row["plain"]["units_per_s"]
                figures[f"threads={threads}"] = row
            figures["unconfirmed"] = unconfirmed(paths)
        finally:
            seata.shutdown()
    top = figures[f"threads={max(levels)}"]
    figures["ratio"] = top["ratio"]
    figures["tcc_units_per_s"] = top["tcc"]["units_per_s"]
    figures["plain_units_per_s"] = top["plain"]["units_per_s"]
    print(
        f"units/s: one unit moves an amount on both services (tcc: one global transaction with two TCC "
        f"branches); ratio at {max(levels)} threads: {figures['ratio']:.3f}; fence rows left tried: "
        f"{figures['unconfirmed']}"
    )
    finish(figures)


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)


if __name__ == "__main__":
    main()
