"""Global transactions per second through a real pyseata TC, against Seata's Java TC figures
(TARGETS.md) and against raw RPC round trips to the same TC, measured in the same run.

    .venv/bin/python bench/tc.py --seconds 5

Each figure starts a fresh ``pyseata server`` process (uvloop when installed, as the command
does) and a load generator in a second process. The load generator is one TM connection and one
RM connection (one resource), with 1, 16 or 64 concurrent TM tasks, each running global
transactions back to back:

* ``K=2``: begin, two AT branch registers with distinct lock keys, commit; the TC then sends the
  two BranchCommits, which the scripted RM answers PhaseTwo_Committed at once;
* ``K=0``: the empty transaction, begin + commit.

Latency is the TM's view, begin sent to commit answered. After the load stops, the **backlog**
is how long the TC still needed to deliver every branch commit (and, on SQLite, until the store
held no session any more): a TC whose phase two keeps up shows a few milliseconds, one that falls
behind shows seconds. ``rt/s`` is a GlobalStatusRequest loop against the same TC with the same
concurrency: the raw round-trip rate a transaction's six (K=2) or two (K=0) round trips are
built from. The TC's CPU time per transaction comes from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from statistics import quantiles
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Child, finish, parser, tc_command
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus, ResultCode
from pyseata.rpc.client import ClientTransportConfig, RpcClient

RESOURCE = "jdbc:mysql://127.0.0.1:3306/bench"
CONCURRENCY = (1, 16, 64)
WORKLOADS = (2, 0)
# Seata 2.3.0's Java TC on this kind of machine, 16 threads, file store, log level warn
# (TARGETS.md): tx/s low-high, p50 ms, p99 ms.
JAVA = {2: ((4_933, 5_581), "2.4-2.7", "9"), 0: ((15_508, 17_029), "0.8", "4")}
WARMUP = 1.0
TX_PER_RT = {2: 6, 0: 2}  # round trips in one global transaction


def _run(main: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


# --- the load generator (its own process) -------------------------------------------------------------


def _config(port: int, app: str) -> ClientTransportConfig:
    return ClientTransportConfig(application_id=app, grouplist={"default": f"127.0.0.1:{port}"})


async def _drive(port: int, k: int, concurrency: int, seconds: float, *, db: str | None,
                 tc_pid: int) -> dict[str, Any]:
    branch_commits = [0]

    async def answer(request: m.Message) -> m.Message | None:
        if isinstance(request, m.BranchCommitRequest):
            branch_commits[0] += 1
            return m.BranchCommitResponse(xid=request.xid, branch_id=request.branch_id,
                                          branch_status=BranchStatus.PhaseTwo_Committed)
        if isinstance(request, m.BranchRollbackRequest):
            return m.BranchRollbackResponse(xid=request.xid, branch_id=request.branch_id,
                                            branch_status=BranchStatus.PhaseTwo_Rollbacked)
        return None

    tm = RpcClient(_config(port, "bench-tm"))
    rm = RpcClient(_config(port, "bench-rm"), resource_ids=[RESOURCE], branch_handler=answer)
    async with tm, rm:
        measuring, stop = [False], [False]
        latencies: list[float] = []
        expected = [0]  # branch commits the TC owes for every committed transaction

        async def worker(w: int) -> None:
            seq = 0
            while not stop[0]:
                started = time.perf_counter()
                begun = await tm.request(m.GlobalBeginRequest(timeout=60_000, transaction_name="bench"))
                assert isinstance(begun, m.GlobalBeginResponse) and begun.xid, begun
                for branch in range(k):
                    registered = await rm.request(m.BranchRegisterRequest(
                        xid=begun.xid, branch_type=BranchType.AT, resource_id=RESOURCE,
                        lock_key=f"t_bench:{w}_{seq}_{branch}"), role="RM")
                    assert isinstance(registered, m.BranchRegisterResponse), registered
                    assert registered.result_code == ResultCode.Success, registered
                committed = await tm.request(m.GlobalCommitRequest(xid=begun.xid))
                assert isinstance(committed, m.GlobalCommitResponse), committed
                assert committed.global_status == GlobalStatus.Committed, committed
                expected[0] += k
                if measuring[0]:
                    latencies.append(time.perf_counter() - started)
                seq += 1

        tasks = [asyncio.create_task(worker(w)) for w in range(concurrency)]
        await asyncio.sleep(WARMUP)
        measuring[0] = True
        began, at_start = time.perf_counter(), branch_commits[0]
        cpu_tc, cpu_me = _cpu_seconds(tc_pid), time.process_time()
        await asyncio.sleep(seconds)
        measuring[0] = False
        elapsed = time.perf_counter() - began
        cpu_tc, cpu_me = _cpu_seconds(tc_pid) - cpu_tc, time.process_time() - cpu_me
        stop[0] = True
        await asyncio.gather(*tasks)
        stopped = time.perf_counter()
        delivered_in_window = branch_commits[0] - at_start
        owed_at_stop = expected[0] - branch_commits[0]
        while branch_commits[0] < expected[0]:
            await asyncio.sleep(0.001)
        backlog = time.perf_counter() - stopped
        store_backlog = _wait_empty(db, stopped) if db else None

        # raw round trips against the same TC, same concurrency
        rts, rt_stop = [0], [False]

        async def status_loop() -> None:
            while not rt_stop[0]:
                await tm.request(m.GlobalStatusRequest(xid="127.0.0.1:8091:1"))
                rts[0] += 1

        rt_tasks = [asyncio.create_task(status_loop()) for _ in range(concurrency)]
        await asyncio.sleep(min(WARMUP, seconds / 3))
        rt_began, rt_at = time.perf_counter(), rts[0]
        await asyncio.sleep(seconds)
        rt_rate = (rts[0] - rt_at) / (time.perf_counter() - rt_began)
        rt_stop[0] = True
        await asyncio.gather(*rt_tasks)

    cuts = quantiles(latencies, n=100) if len(latencies) >= 2 else [latencies[0] if latencies else 0.0] * 99
    return {
        "tx_per_s": len(latencies) / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "transactions": len(latencies),
        "branch_commits_per_s_in_window": delivered_in_window / elapsed,
        "branch_commits_owed_at_stop": owed_at_stop,
        "backlog_s": backlog,
        "store_backlog_s": store_backlog,
        "rt_per_s": rt_rate,
        "window_s": elapsed,
        # CPU per measured transaction, in the measuring window only, and how busy each process was
        "tc_cpu_us_per_tx": cpu_tc * 1e6 / max(len(latencies), 1),
        "driver_cpu_us_per_tx": cpu_me * 1e6 / max(len(latencies), 1),
        "tc_busy": cpu_tc / elapsed,
        "driver_busy": cpu_me / elapsed,
    }


def _wait_empty(db: str, since: float) -> float:
    """Seconds from ``since`` until the TC's SQLite file holds no global session."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        while conn.execute("SELECT count(*) FROM global_table").fetchone()[0]:
            time.sleep(0.001)
    return time.perf_counter() - since


# --- the orchestrator -----------------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (Linux); 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _figure(store: str, k: int, concurrency: int, seconds: float, profile: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pyseata-bench-") as tmp:
        db = str(Path(tmp) / "tc.db") if store == "sqlite" else None
        url = f"sqlite:///{db}" if db else "memory://"
        command = tc_command(url)
        if profile:
            out = f"{profile}-{store}-k{k}-c{concurrency}.svg"
            command = ["py-spy", "record", "-o", out, "--", *command]
        with Child(command, ready="ready on") as server:
            port = int(server.address.rsplit(":", 1)[1])
            driver = subprocess.run(
                [sys.executable, __file__, "--drive", str(k), "--port", str(port), "--concurrency",
                 str(concurrency), "--seconds", str(seconds), "--tc-pid", str(server.pid),
                 *(["--db", db] if db else [])],
                check=True, capture_output=True, text=True,
            )
            result: dict[str, Any] = json.loads(driver.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--stores", default="memory,sqlite", help="comma-separated: memory, sqlite")
    p.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="comma-separated TM task counts")
    p.add_argument("--workloads", default="2,0", help="comma-separated branch counts K")
    p.add_argument("--profile", default=None, help="record each TC with py-spy into PREFIX-*.svg")
    p.add_argument("--drive", type=int, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--db", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tc-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.drive is not None:
        concurrency = int(args.concurrency)
        result = _run(_drive(args.port, args.drive, concurrency, args.seconds, db=args.db, tc_pid=args.tc_pid))
        print(json.dumps(result))
        return

    stores = [s for s in args.stores.split(",") if s]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    workloads = [int(k) for k in args.workloads.split(",") if k]
    figures: dict[str, Any] = {"seconds": args.seconds, "java_tc_16_threads": {
        f"K={k}": {"tx_per_s": list(JAVA[k][0]), "p50_ms": JAVA[k][1], "p99_ms": JAVA[k][2]} for k in JAVA}}
    header = (f"{'store':<7}{'K':>2}{'TMs':>5}{'tx/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'rt/s':>9}{'tx/rt':>7}"
              f"{'rt use':>8}{'backlog':>9}{'store bl':>9}{'owed':>6}{'TC us/tx':>9}{'busy':>10}"
              "  vs Java TC (16 threads)")
    print(header)
    for store in stores:
        for k in workloads:
            for concurrency in levels:
                f = _figure(store, k, concurrency, args.seconds, args.profile)
                ratio = f["tx_per_s"] / f["rt_per_s"] if f["rt_per_s"] else 0.0
                use = ratio * TX_PER_RT[k]  # share of the raw round-trip rate the transactions used
                low, high = JAVA[k][0]
                java = f"{low:,}-{high:,} tx/s, p50 {JAVA[k][1]}, p99 {JAVA[k][2]} ms"
                store_bl = f"{f['store_backlog_s'] * 1000:.0f}ms" if f["store_backlog_s"] is not None else "-"
                print(f"{store:<7}{k:>2}{concurrency:>5}{f['tx_per_s']:>9,.0f}{f['p50_ms']:>8.2f}{f['p99_ms']:>8.2f}"
                      f"{f['rt_per_s']:>9,.0f}{ratio:>7.2f}{use:>8.2f}{f['backlog_s'] * 1000:>7.0f}ms{store_bl:>9}"
                      f"{f['branch_commits_owed_at_stop']:>6}{f['tc_cpu_us_per_tx']:>9.0f}"
                      f"{f['tc_busy']:>5.0%}/{f['driver_busy']:<4.0%}  {java if concurrency == 16 else ''}",
                      flush=True)
                f["tx_per_rt"] = ratio
                f["round_trips_used"] = use
                figures[f"{store}/K={k}/tms={concurrency}"] = f
    print("tx/rt: transactions per raw round trip; rt use: that times the round trips in one transaction "
          f"({TX_PER_RT}); backlog: phase two still owed when the load stopped, in time; owed: in branch "
          "commits; TC us/tx: TC CPU per transaction; busy: CPU share of one core, TC/load generator.")
    finish(figures)


if __name__ == "__main__":
    main()
