"""A real round of global transactions through a TC on the embedded SQLite store.

This is what ``make run`` shows until the sample shop exists: a TC on a fresh SQLite file, one TM
and two scripted RMs (each owning a resource), a batch of global transactions of which some roll
back on purpose, and the check that every one ended as decided with nothing left in the store.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyseata.coordinator.app import TransactionCoordinator
from pyseata.coordinator.settings import ServerSettings
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus
from pyseata.rpc.client import ClientTransportConfig, RpcClient

__all__ = ["run_tc_round"]

RESOURCES = ("jdbc:sqlite://stock", "jdbc:sqlite://account")


async def _round(transactions: int, concurrency: int, folder: Path, echo: Callable[[str], None]) -> dict[str, Any]:
    settings = ServerSettings(host="127.0.0.1", port=0, store=f"sqlite:///{folder / 'tc.db'}", log_level="WARNING")
    executed: Counter[str] = Counter()

    async def branch_handler(request: m.Message) -> m.Message:
        if isinstance(request, m.BranchCommitRequest):
            executed["commit"] += 1
            return m.BranchCommitResponse(xid=request.xid, branch_id=request.branch_id,
                                          branch_status=BranchStatus.PhaseTwo_Committed)
        assert isinstance(request, m.BranchRollbackRequest)
        executed["rollback"] += 1
        return m.BranchRollbackResponse(xid=request.xid, branch_id=request.branch_id,
                                        branch_status=BranchStatus.PhaseTwo_Rollbacked)

    async with TransactionCoordinator(settings) as tc:
        host, port = tc.address
        echo(f"TC on {host}:{port}, store {settings.store}")
        config = ClientTransportConfig(application_id="selfcheck", grouplist={"default": f"{host}:{port}"})
        async with RpcClient(config) as tm, RpcClient(config, resource_ids=RESOURCES,
                                                      branch_handler=branch_handler) as rm:
            outcomes: Counter[str] = Counter()
            latencies: list[float] = []
            queue = list(range(transactions))

            async def one(n: int) -> None:
                started = time.perf_counter()
                begin = await tm.request(m.GlobalBeginRequest(timeout=30_000, transaction_name=f"order-{n}"))
                assert isinstance(begin, m.GlobalBeginResponse) and begin.xid
                xid = begin.xid
                for i, resource in enumerate(RESOURCES):
                    reply = await rm.request(m.BranchRegisterRequest(
                        xid=xid, branch_type=BranchType.AT, resource_id=resource, lock_key=f"t{i}:{n}",
                    ), role="RM", xid=xid)
                    assert isinstance(reply, m.BranchRegisterResponse) and reply.result_code == 1, reply
                if n % 5 == 4:  # every fifth purchase fails after both services wrote
                    end: m.Message = await tm.request(m.GlobalRollbackRequest(xid=xid), xid=xid)
                else:
                    end = await tm.request(m.GlobalCommitRequest(xid=xid), xid=xid)
                assert isinstance(end, m.AbstractGlobalEndResponse)
                outcomes[end.global_status.name] += 1
                latencies.append(time.perf_counter() - started)

            async def worker() -> None:
                while queue:
                    await one(queue.pop())

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            store = tc.coordinator.store if tc.coordinator else None
            assert store is not None
            deadline = time.monotonic() + 30
            while (await store.count_globals() or await store.count_locks()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # AT phase two runs in the background
            left_globals, left_locks = await store.count_globals(), await store.count_locks()
    committed = outcomes[GlobalStatus.Committed.name]
    rolled_back = outcomes[GlobalStatus.Rollbacked.name]
    checks = {
        "all_ended": committed + rolled_back == transactions,
        "branch_commits_match": executed["commit"] == 2 * committed,
        "branch_rollbacks_match": executed["rollback"] == 2 * rolled_back,
        "nothing_left_in_store": left_globals == 0 and left_locks == 0,
    }
    latencies.sort()
    return {
        "transactions": transactions, "committed": committed, "rolled_back": rolled_back,
        "tx_per_s": round(transactions / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "checks": checks,
    }


def run_tc_round(transactions: int = 500, concurrency: int = 16, echo: Callable[[str], None] = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pyseata-") as folder:
        result = asyncio.run(_round(transactions, concurrency, Path(folder), echo))
    echo(f"{result['transactions']} global transactions with 2 AT branches each through the TC: "
         f"{result['committed']} committed, {result['rolled_back']} rolled back on purpose; "
         f"{result['tx_per_s']} tx/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    for name, ok in result["checks"].items():
        echo(f"  {'ok  ' if ok else 'FAIL'} {name.replace('_', ' ')}")
    return result
