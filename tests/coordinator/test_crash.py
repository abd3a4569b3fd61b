"""Crash safety: a TC on SQLite is SIGKILLed at chosen points of a batch of concurrent global
transactions, restarted on the same file and port, and every transaction must end committed in
all branches or rolled back in all branches, with nothing left in the store and no row lock lost
while a transaction was unfinished.

The TC is a real ``pyseata server`` process. TMs and scripted RMs live in the test process; the
RMs record every branch commit and rollback they execute (at receipt, as an RM that did the work
and then lost the answer). A TM treats a connection failure as Seata's TM does: it retries commit
and rollback, and a branch registration whose answer was lost counts as failed (the transaction is
rolled back, since its branch may or may not exist).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from asyncsupport import eventually, within
from pyseata.coordinator.store.sqlite import SqliteStore
from pyseata.errors import TransportError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchType, GlobalStatus, ResultCode
from pyseata.rpc.client import RpcClient

from .conftest import RM, TcProcess, client_config

pytestmark = pytest.mark.slow

G = GlobalStatus
ORDERS = "jdbc:mysql://127.0.0.1:3306/orders"
STOCK = "jdbc:mysql://127.0.0.1:3306/stock"
PAYMENT = "payment-tcc-action"
TX_TIMEOUT_MS = 8_000  # long enough to survive a restart, short enough that orphans end in the test
ENV = {
    "PYSEATA_SERVER_RETRY_PERIOD": "0.05",
    "PYSEATA_SERVER_RETRY_BACKOFF_MAX": "0.3",
    "PYSEATA_SERVER_DEAD_SESSION_MS": "2000",
    "PYSEATA_SERVER_BRANCH_REQUEST_TIMEOUT": "5",
}
# What the TM's answer says about the outcome (None: cannot tell, e.g. Finished on a retry).
COMMITTED = {G.Committed, G.AsyncCommitting, G.Committing, G.CommitRetrying}
ROLLED_BACK = {G.Rollbacked, G.Rollbacking, G.RollbackRetrying, G.TimeoutRollbacking, G.TimeoutRollbackRetrying,
               G.TimeoutRollbacked}


@dataclass
class Tx:
    """What the test knows of one global transaction."""

    n: int
    xid: str = ""
    branches: dict[int, str] = field(default_factory=dict)  # branch id -> resource, registration answered OK
    keys: dict[str, str] = field(default_factory=dict)  # resource -> AT lock key, for the branches above
    unsure: bool = False  # a registration whose answer was lost: the branch may exist
    decision: str = ""  # "commit" or "rollback", what the TM asked for
    answer: GlobalStatus | None = None  # what the TC finally answered


class World:
    """One TC process, a TM client, three RMs (two AT resources, one TCC action)."""

    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "tc.db"
        self.tc = TcProcess(tmp, "--store", f"sqlite:///{self.db}", "--log-level", "INFO", env=ENV)
        self.port = 0
        self.tm: RpcClient | None = None
        self.rms: dict[str, RM] = {}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[World]:
        async with self.tc:
            self.port = await self.tc.start("--port", "0")
            self.tm = RpcClient(client_config(self.port, "shop", tm_request_timeout=20.0))
            self.rms = {ORDERS: RM(self.port, [ORDERS], app="order-svc"),
                        STOCK: RM(self.port, [STOCK], app="stock-svc"),
                        PAYMENT: RM(self.port, [PAYMENT], app="pay-svc")}
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(self.tm)
                for rm in self.rms.values():
                    await stack.enter_async_context(rm)
                yield self

    async def crash_and_restart(self) -> None:
        await self.tc.kill()
        await self.tc.start("--port", str(self.port))

    # --- client side of one transaction -----------------------------------------------------------------

    async def tm_call(self, body: m.Message) -> m.Message:
        """A TM request retried across connection failures, as Seata's TM retries commit/rollback."""
        assert self.tm is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            try:
                return await self.tm.request(body, timeout=20)
            except (TransportError, TimeoutError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def begin(self, tx: Tx) -> bool:
        assert self.tm is not None
        try:
            answer = await self.tm.request(m.GlobalBeginRequest(timeout=TX_TIMEOUT_MS, transaction_name=f"tx{tx.n}"),
                                           timeout=20)
        except (TransportError, TimeoutError):
            return False  # no transaction (or an orphan the timeout checker will end)
        assert isinstance(answer, m.GlobalBeginResponse) and answer.result_code == ResultCode.Success, answer
        tx.xid = answer.xid or ""
        return True

    async def register(self, tx: Tx, resource: str, lock_key: str | None) -> bool:
        kind = BranchType.TCC if resource == PAYMENT else BranchType.AT
        request = m.BranchRegisterRequest(xid=tx.xid, branch_type=kind, resource_id=resource, lock_key=lock_key)
        try:
            answer = await self.rms[resource].client.request(request, role="RM", timeout=20)
        except (TransportError, TimeoutError):
            tx.unsure = True
            return False
        assert isinstance(answer, m.BranchRegisterResponse)
        if answer.result_code != ResultCode.Success:
            return False
        tx.branches[answer.branch_id] = resource
        if lock_key:
            tx.keys[resource] = lock_key
        return True

    async def register_all(self, tx: Tx, *branches: tuple[str, str | None]) -> bool:
        """Registers each (resource, lock key) branch of ``tx`` in turn, every one even after one
        failed; True when all of them registered."""
        registered = [await self.register(tx, resource, lock_key) for resource, lock_key in branches]
        return all(registered)

    def hold_answers(self) -> None:
        """The RMs keep their phase-two answers until :meth:`release_answers`."""
        for rm in self.rms.values():
            rm.gate = asyncio.Event()

    def release_answers(self) -> None:
        for rm in self.rms.values():
            assert rm.gate is not None
            rm.gate.set()

    async def finish(self, tx: Tx, commit: bool) -> None:
        tx.decision = "commit" if commit and not tx.unsure else "rollback"
        body: m.Message = (m.GlobalCommitRequest(xid=tx.xid) if tx.decision == "commit"
                           else m.GlobalRollbackRequest(xid=tx.xid))
        answer = await self.tm_call(body)
        assert isinstance(answer, m.AbstractGlobalEndResponse) and answer.result_code == ResultCode.Success, answer
        tx.answer = answer.global_status

    async def lockable(self, resource: str, lock_key: str) -> bool:
        """Would another transaction get these rows? (asked as @GlobalLock does, with no XID)"""
        answer = await self.rms[resource].client.request(
            m.GlobalLockQueryRequest(xid=None, resource_id=resource, lock_key=lock_key), role="RM", timeout=20)
        assert isinstance(answer, m.GlobalLockQueryResponse) and answer.result_code == ResultCode.Success, answer
        return answer.lockable

    # --- checks -----------------------------------------------------------------------------------------

    def executed(self) -> dict[str, set[str]]:
        """xid -> the phase-two kinds the RMs executed for it."""
        out: dict[str, set[str]] = {}
        for rm in self.rms.values():
            for call in rm.calls:
                out.setdefault(call.xid, set()).add(call.kind)
        return out

    def rows_left(self) -> tuple[int, int]:
        """(globals, locks) in the TC's file, read beside the running TC."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as conn:
            globals_left = conn.execute("SELECT count(*) FROM global_table").fetchone()[0]
            locks_left = conn.execute("SELECT count(*) FROM lock_table").fetchone()[0]
        return int(globals_left), int(locks_left)

    def lock_holder(self, row_key: str) -> str | None:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as conn:
            row = conn.execute("SELECT xid FROM lock_table WHERE row_key = ?", (row_key,)).fetchone()
        return None if row is None else str(row[0])

    async def check_everything_ended_consistently(self, txs: list[Tx]) -> None:
        await eventually(lambda: self.rows_left() == (0, 0), timeout=60,
                         what="the TC finishes every transaction and frees every lock")
        executed = self.executed()
        for tx in txs:
            if not tx.xid:
                continue
            kinds = executed.get(tx.xid, set())
            assert len(kinds) <= 1, f"tx{tx.n} {tx.xid}: branches both committed and rolled back: {kinds}"
            outcome = next(iter(kinds), None)
            if tx.branches:
                assert outcome is not None, f"tx{tx.n} {tx.xid}: no branch saw phase two ({tx})"
                seen = {c.branch_id for rm in self.rms.values() for c in rm.calls if c.xid == tx.xid}
                assert set(tx.branches) <= seen, f"tx{tx.n} {tx.xid}: a registered branch never saw phase two"
            if tx.answer in COMMITTED:
                assert outcome in (None, "commit"), f"tx{tx.n}: TM heard {tx.answer.name}, RMs did {outcome}"
                assert tx.decision == "commit", tx
            if tx.answer in ROLLED_BACK:
                assert outcome in (None, "rollback"), f"tx{tx.n}: TM heard {tx.answer.name}, RMs did {outcome}"
            if tx.decision == "rollback" or tx.unsure:
                assert outcome in (None, "rollback"), f"tx{tx.n}: asked to roll back, RMs did {outcome}"
        await self.tc.terminate()
        async with SqliteStore(self.db) as store:
            assert await store.count_globals() == 0
            assert await store.count_locks() == 0


def row_key(resource: str, lock_key: str) -> str:
    table, _, pk = lock_key.partition(":")
    return f"{resource}^^^{table}^^^{pk}"


async def run_batch(txs: list[Tx], body: Callable[[Tx], Awaitable[None]]) -> None:
    await within(asyncio.gather(*(body(tx) for tx in txs)), 90, "the batch finishes")


class Pause:
    """A point where every transaction of a batch waits (:meth:`here`) until the test, once all
    of them got there (:meth:`all_reached`), lets them go on (:meth:`resume`)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._reached, self._resume = asyncio.Semaphore(0), asyncio.Event()

    async def here(self) -> None:
        self._reached.release()
        await self._resume.wait()

    async def all_reached(self, n: int) -> None:
        for _ in range(n):
            await within(self._reached.acquire(), 30, f"every transaction {self.what}")

    def resume(self) -> None:
        self._resume.set()


# --- the kill points ------------------------------------------------------------------------------------------

N = 24


async def test_kill_after_begin(tmp_path: Path) -> None:
    async with World(tmp_path).running() as world:
        begun = Pause("has begun")

        async def tx_body(tx: Tx) -> None:
            if not await world.begin(tx):
                return
            await begun.here()
            ok = await world.register_all(tx, (ORDERS, f"t_order:{tx.n}"), (PAYMENT, None))
            await world.finish(tx, commit=ok and tx.n % 3 != 0)

        txs = [Tx(n) for n in range(N)]
        batch = asyncio.create_task(run_batch(txs, tx_body))
        await begun.all_reached(N)
        await world.crash_and_restart()
        begun.resume()
        await batch
        assert all(tx.xid for tx in txs)
        await world.check_everything_ended_consistently(txs)


async def test_kill_after_branch_register_keeps_every_lock(tmp_path: Path) -> None:
    async with World(tmp_path).running() as world:
        registered = Pause("has registered its branches")

        async def tx_body(tx: Tx) -> None:
            if not await world.begin(tx):
                return
            ok = await world.register_all(tx, (ORDERS, f"t_order:{tx.n}"), (STOCK, f"t_stock:{tx.n}"), (PAYMENT, None))
            await registered.here()
            await world.finish(tx, commit=ok and tx.n % 3 != 0)

        txs = [Tx(n) for n in range(N)]
        batch = asyncio.create_task(run_batch(txs, tx_body))
        await registered.all_reached(N)
        await world.crash_and_restart()

        # Every transaction is unfinished (Begin): each of its rows is still locked, by it.
        assert all(tx.xid and len(tx.keys) == 2 for tx in txs)
        for tx in txs:
            for resource, key in tx.keys.items():
                assert world.lock_holder(row_key(resource, key)) == tx.xid, (tx, resource)
                assert not await world.lockable(resource, key), (tx, resource)
        registered.resume()
        await batch
        await world.check_everything_ended_consistently(txs)


async def test_kill_during_phase_two(tmp_path: Path) -> None:
    """The RMs hold their answers, so the kill lands while the TC waits on them: synchronous
    TCC commits, rollbacks and async AT commits are all cut off in the middle."""
    async with World(tmp_path).running() as world:
        world.hold_answers()

        async def tx_body(tx: Tx) -> None:
            if not await world.begin(tx):
                return
            branches: list[tuple[str, str | None]] = [(ORDERS, f"t_order:{tx.n}"), (STOCK, f"t_stock:{tx.n}")]
            if tx.n % 4 == 1:
                branches.append((PAYMENT, None))
            ok = await world.register_all(tx, *branches)
            await world.finish(tx, commit=ok and tx.n % 4 != 0)

        txs = [Tx(n) for n in range(N)]
        batch = asyncio.create_task(run_batch(txs, tx_body))

        def every_xid_in_phase_two() -> bool:
            return len({c.xid for rm in world.rms.values() for c in rm.calls}) >= N

        await eventually(every_xid_in_phase_two, what="every transaction has reached phase two")
        # Every decision is durable by now (phase two starts after it is written): rows of rolling
        # back transactions are still locked; rows of committed ones were freed at the decision.
        await world.crash_and_restart()
        for tx in txs:
            rolling_back = tx.n % 4 == 0
            for resource, key in tx.keys.items():
                holder = world.lock_holder(row_key(resource, key))
                assert holder == (tx.xid if rolling_back else None), (tx, resource, holder)
        world.release_answers()
        await batch
        await world.check_everything_ended_consistently(txs)


async def test_kill_during_async_committing(tmp_path: Path) -> None:
    async with World(tmp_path).running() as world:
        world.hold_answers()

        async def tx_body(tx: Tx) -> None:
            if not await world.begin(tx):
                return
            ok = await world.register_all(tx, (ORDERS, f"t_order:{tx.n}"), (STOCK, f"t_stock:{tx.n}"))
            await world.finish(tx, commit=ok)

        txs = [Tx(n) for n in range(N)]
        await run_batch(txs, tx_body)
        assert all(tx.answer == G.Committed for tx in txs)  # heard at once, phase two still pending
        await eventually(lambda: len({c.xid for c in world.rms[ORDERS].calls}) >= N // 2,
                         what="the branch commits are under way")
        await world.crash_and_restart()
        world.release_answers()
        await world.check_everything_ended_consistently(txs)
        for tx in txs:
            assert {c.kind for rm in world.rms.values() for c in rm.calls if c.xid == tx.xid} == {"commit"}


async def test_kill_at_arbitrary_moments_under_load(tmp_path: Path) -> None:
    """No pause points: a stream of transactions from 16 TM tasks, killed twice wherever the
    load happens to be (between any two writes, with answers lost on the way)."""
    rng = random.Random(20240917)
    async with World(tmp_path).running() as world:
        for rm in world.rms.values():
            rm.script = _jittered(rng)
        stop = asyncio.Event()
        txs: list[Tx] = []
        done = [0]

        async def worker(w: int) -> None:
            n = w * 10_000
            while not stop.is_set():
                tx = Tx(n)
                n += 1
                txs.append(tx)
                if await world.begin(tx):
                    branches: list[tuple[str, str | None]] = [(ORDERS, f"t_order:{tx.n}"),
                                                              (STOCK, f"t_stock:{tx.n % 7}")]  # contended rows
                    if tx.n % 5 == 0:
                        branches.append((PAYMENT, None))
                    ok = await world.register_all(tx, *branches)
                    await world.finish(tx, commit=ok and tx.n % 6 != 0)
                done[0] += 1

        workers = [asyncio.create_task(worker(w)) for w in range(16)]
        try:
            for target in (40, 100):
                await eventually(lambda t=target: done[0] >= t, timeout=60)  # type: ignore[misc]
                await world.crash_and_restart()
            await eventually(lambda: done[0] >= 160, timeout=60)
        finally:
            stop.set()
            await within(asyncio.gather(*workers), 90, "the TM tasks stop")
        await world.check_everything_ended_consistently(txs)


def _jittered(rng: random.Random) -> Callable[[object], object]:
    """Answers success after a random short delay, so phase two is in flight at kill time."""
    from pyseata.protocol.enums import BranchStatus

    async def script(call: object) -> BranchStatus:
        await asyncio.sleep(rng.random() * 0.01)
        kind = getattr(call, "kind", "")
        return BranchStatus.PhaseTwo_Committed if kind == "commit" else BranchStatus.PhaseTwo_Rollbacked

    return script
