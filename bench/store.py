"""Session-store operations per second, the durable SQLite store against memory:// in the same run.

    .venv/bin/python bench/store.py --seconds 3

No network, no TC: N concurrent callers on one event loop (uvloop when installed, as the TC
uses) call the store directly, each running what the TC asks of its store for one global
transaction, back to back:

* ``K=2``: insert_global, two register_branch with one row lock each, get_global and
  get_branches together (the commit's reads), change_global_status releasing the locks, then
  remove_global (the end of phase two): 5 writes and 2 reads;
* ``K=0``: insert_global, the two reads, change_global_status, remove_global: 3 writes, 2 reads;
* ``read``: get_global of an existing transaction (a GlobalStatusRequest's only store call).

``us/op`` is the process's CPU time (every thread) per store call: what the store costs the TC.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish, parser
from pyseata.coordinator.model import BranchTransaction, GlobalTransaction
from pyseata.coordinator.store import SessionStore, open_store
from pyseata.protocol.enums import BranchType, GlobalStatus

CALLERS = (1, 16, 64)
WORKLOADS = ("K=2", "K=0", "read")
OPS = {"K=2": 7, "K=0": 5, "read": 1}  # store calls per unit of work
RESOURCE = "jdbc:mysql://127.0.0.1:3306/bench"
WARMUP = 0.5


def _run(main: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _transaction(store: SessionStore, ids: Callable[[], int], k: int) -> None:
    tid = ids()
    xid = f"127.0.0.1:8091:{tid}"
    await store.insert_global(GlobalTransaction(xid, tid, GlobalStatus.Begin, "bench", "default", "bench",
                                                begin_time=int(time.time() * 1000)))
    for _ in range(k):
        bid = ids()
        branch = BranchTransaction(bid, xid, tid, RESOURCE, BranchType.AT, client_id="bench-rm")
        await store.register_branch(branch, [f"{RESOURCE}^^^t_bench^^^{bid}"])
    await asyncio.gather(store.get_global(xid), store.get_branches(xid))
    await store.change_global_status(xid, GlobalStatus.AsyncCommitting, expected=GlobalStatus.Begin,
                                     release_locks=True)
    await store.remove_global(xid)


async def _measure(url: str, workload: str, callers: int, seconds: float) -> dict[str, float]:
    store = open_store(url)
    ids = itertools.count(1).__next__
    done, stop = [0], [False]
    try:
        await store.insert_global(GlobalTransaction("status-probe", 0, GlobalStatus.Begin))

        async def caller() -> None:
            while not stop[0]:
                if workload == "read":
                    await store.get_global("status-probe")
                    if done[0] % 64 == 0:
                        await asyncio.sleep(0)  # memory:// never suspends: let the clock task run
                else:
                    await _transaction(store, ids, 2 if workload == "K=2" else 0)
                done[0] += 1

        tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        await asyncio.sleep(WARMUP)
        at, cpu, began = done[0], time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        count, cpu, elapsed = done[0] - at, time.process_time() - cpu, time.perf_counter() - began
        stop[0] = True
        await asyncio.gather(*tasks)
    finally:
        await store.close()
    ops = count * OPS[workload]
    return {"per_s": count / elapsed, "ops_per_s": ops / elapsed, "cpu_us_per_op": cpu * 1e6 / max(ops, 1),
            "busy": cpu / elapsed}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--stores", default="memory,sqlite", help="comma-separated: memory, sqlite")
    p.add_argument("--callers", default=",".join(map(str, CALLERS)), help="comma-separated caller counts")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: K=2, K=0, read")
    args = p.parse_args()
    figures: dict[str, Any] = {"seconds": args.seconds}
    print(f"{'store':<8}{'work':<6}{'callers':>8}{'units/s':>10}{'ops/s':>10}{'us/op':>8}{'busy':>7}"
          f"{'vs memory':>11}")
    with tempfile.TemporaryDirectory(prefix="pyseata-bench-store-") as tmp:
        for workload in args.workloads.split(","):
            for callers in (int(c) for c in args.callers.split(",")):
                for n, store in enumerate(args.stores.split(",")):
                    db = Path(tmp) / f"{n}-{workload}-{callers}.db"
                    url = "memory://" if store == "memory" else f"sqlite:///{db}"
                    f = _run(_measure(url, workload, callers, args.seconds))
                    base = figures.get(f"memory/{workload}/callers={callers}")
                    versus = f"{f['ops_per_s'] / base['ops_per_s']:>10.2f}x" if base and store != "memory" else ""
                    print(f"{store:<8}{workload:<6}{callers:>8}{f['per_s']:>10,.0f}{f['ops_per_s']:>10,.0f}"
                          f"{f['cpu_us_per_op']:>8.1f}{f['busy']:>7.0%}{versus:>11}", flush=True)
                    figures[f"{store}/{workload}/callers={callers}"] = f
    print("units: transactions (K=2, K=0) or reads; ops: store calls; us/op: CPU (all threads) per call; "
          "busy: CPU share of one core.")
    finish(figures)


if __name__ == "__main__":
    main()
