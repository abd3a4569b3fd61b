"""Background loops that finish what phase two left undone (BEHAVIOUR.md 1.7), better than Seata:

* each transaction backs off exponentially (``retry_period * 2**attempts``, capped) instead of
  being hammered every second forever;
* a configurable maximum retry time ends a transaction in CommitRetryTimeout or
  RollbackRetryTimeout, with an alert, instead of retrying forever in silence;
* sessions left in Committing/Rollbacking by a crashed TC are re-driven once they have been
  untouched for ``dead_session_ms``;
* with several TCs on one store, each loop runs on whichever node holds its task lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pyseata.coordinator import lifecycle
from pyseata.coordinator.core import Coordinator
from pyseata.coordinator.model import GlobalTransaction
from pyseata.protocol.enums import GlobalStatus

__all__ = ["Recovery"]

log = logging.getLogger("pyseata.tc.recovery")

G = GlobalStatus


@dataclass(slots=True)
class _Backoff:
    attempts: int = 0
    due: float = 0.0


class Recovery:
    def __init__(self, coordinator: Coordinator, owner: str,
                 broadcast_undo_delete: Callable[[int], int] | None = None) -> None:
        self.tc = coordinator
        self.store = coordinator.store
        self.config = coordinator.config
        self.owner = owner
        self._broadcast = broadcast_undo_delete
        # One backoff table per loop, so that a complete scan of a loop's statuses can drop the
        # entries of transactions that finished some other way (a TM request, an async worker).
        self._backoff: dict[str, dict[str, _Backoff]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # The clock of the backoff schedule; replaceable so that a test can step through the
        # schedule without waiting for it.
        self.clock: Callable[[], float] = time.monotonic
        self.loops: dict[str, Callable[[bool], Awaitable[None]]] = {
            "TxTimeoutCheck": self.timeout_check,
            "RetryRollbacking": self.retry_rollbacking,
            "RetryCommitting": self.retry_committing,
            "AsyncCommitting": self.async_committing,
        }

    def start(self) -> None:
        period = self.config.retry_period
        self._tasks = [asyncio.create_task(self._run(name, body, period), name=f"recovery-{name}")
                       for name, body in self.loops.items()]
        if self._broadcast is not None:
            self._tasks.append(asyncio.create_task(
                self._run("UndologDelete", self.undo_log_delete, self.config.undo_log_delete_period,
                          first_delay=min(180.0, self.config.undo_log_delete_period)),
                name="recovery-UndologDelete"))

    async def stop(self) -> None:
        """Stops the loops and frees their task locks, so that another TC on the same store takes
        over at its next tick instead of after the locks' TTL."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        names = [task.get_name().removeprefix("recovery-") for task in self._tasks]
        self._tasks.clear()
        for name in names:
            try:
                await self.store.release_task_lock(name, self.owner)
            except Exception as exc:  # a store already failing must not stop the shutdown
                log.warning("could not free the %s task lock: %s", name, exc)

    async def run_once(self, *, after_restart: bool = False) -> None:
        """One pass of every loop, in order (tests, and the catch-up after a restart, when
        sessions left in Committing/Rollbacking are known to be abandoned)."""
        for body in self.loops.values():
            await body(after_restart)

    async def _run(self, name: str, body: Callable[[bool], Awaitable[None]], period: float,
                   first_delay: float = 0.0) -> None:
        if first_delay:
            await asyncio.sleep(first_delay)
        while True:
            try:
                now = int(time.time() * 1000)
                if await self.store.acquire_task_lock(name, self.owner, self.config.task_lock_ttl_ms, now):
                    await body(False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recovery loop %s failed; it runs again in %.1f s", name, period)
            await asyncio.sleep(period)

    # --- the loops --------------------------------------------------------------------------------

    async def timeout_check(self, after_restart: bool = False) -> None:
        """Begin transactions past their timeout become TimeoutRollbacking (only the status)."""
        now = int(time.time() * 1000)
        found = False
        for g in await self.store.find_timed_out(now, limit=self.config.scan_limit):
            if await self.store.change_global_status(g.xid, G.TimeoutRollbacking, expected=G.Begin,
                                                     mark_locks_rollbacking=True):
                log.info("xid=%s timed out after %d ms: rolling back", g.xid, g.timeout)
                found = True
        if found:  # roll them back now rather than on the next tick of RetryRollbacking
            await self.retry_rollbacking()

    async def retry_rollbacking(self, after_restart: bool = False) -> None:
        due = await self._due("RetryRollbacking", lifecycle.RETRY_ROLLBACK_STATUSES,
                              dead=frozenset({G.Rollbacking}), after_restart=after_restart)
        for g in due:
            limit = self.config.max_rollback_retry_ms
            if limit is not None and self._age(g) > limit:
                await self._stop_retrying(g, G.RollbackRetryTimeout)
                continue
            status = await self.tc.do_global_rollback(g, retrying=True)
            self._record("RetryRollbacking", g.xid, done=status not in lifecycle.RETRY_ROLLBACK_STATUSES)

    async def retry_committing(self, after_restart: bool = False) -> None:
        await self._commit_pass("RetryCommitting", lifecycle.RETRY_COMMIT_STATUSES, frozenset({G.Committing}),
                                after_restart)

    async def async_committing(self, after_restart: bool = False) -> None:
        """Leftovers only: new AT commits are driven at once by the coordinator's workers."""
        await self._commit_pass("AsyncCommitting", lifecycle.ASYNC_COMMITTABLE_STATUSES, frozenset(), after_restart)

    async def _commit_pass(self, loop: str, statuses: frozenset[GlobalStatus], dead: frozenset[GlobalStatus],
                           after_restart: bool) -> None:
        """Drives the due transactions in ``statuses`` to Committed; a transaction is done with
        this loop once it has left those statuses."""
        for g in await self._due(loop, statuses, dead=dead, after_restart=after_restart):
            limit = self.config.max_commit_retry_ms
            if limit is not None and self._age(g) > limit:
                await self._stop_retrying(g, G.CommitRetryTimeout)
                continue
            status = await self.tc.do_global_commit(g, retrying=True)
            self._record(loop, g.xid, done=status not in statuses)

    async def undo_log_delete(self, after_restart: bool = False) -> None:
        if self._broadcast is not None:
            sent = self._broadcast(self.config.undo_log_save_days)
            log.info("asked %d AT resource(s) to delete undo logs older than %d days", sent,
                     self.config.undo_log_save_days)

    # --- helpers ----------------------------------------------------------------------------------

    async def _due(self, loop: str, statuses: frozenset[GlobalStatus], dead: frozenset[GlobalStatus],
                   *, after_restart: bool) -> list[GlobalTransaction]:
        """Transactions in ``statuses`` whose backoff has passed. Those in ``dead`` statuses are
        normally being driven by a request right now; take them only once they look abandoned
        (or right after a restart, when nothing in this process can be driving them)."""
        now = self.clock()
        stale_before = (time.time() * 1000 - self.config.dead_session_ms) * 1000  # gmt_* are epoch µs
        found = await self.store.find_globals(statuses, limit=self.config.scan_limit)
        backoff = self._backoff.setdefault(loop, {})
        if len(found) < self.config.scan_limit and backoff:
            # The scan saw every transaction in these statuses: forget the ones that are gone.
            seen = {g.xid for g in found}
            for xid in [x for x in backoff if x not in seen]:
                del backoff[xid]
        due = []
        for g in found:
            if self.tc.busy(g.xid):
                continue  # driven right now by a worker or a request: not a failed attempt
            if g.status in dead and g.gmt_modified > stale_before and not after_restart:
                continue
            entry = backoff.get(g.xid)
            if entry is not None and entry.due > now:
                continue
            due.append(g)
        return due

    def _record(self, loop: str, xid: str, *, done: bool) -> None:
        backoff = self._backoff.setdefault(loop, {})
        if done:
            backoff.pop(xid, None)
            return
        entry = backoff.setdefault(xid, _Backoff())
        entry.attempts += 1
        delay = min(self.config.retry_period * 2 ** entry.attempts, self.config.retry_backoff_max)
        entry.due = self.clock() + delay
        if entry.attempts in (3, 10) or entry.attempts % 50 == 0:
            log.warning("xid=%s still not finished after %d attempts; next in %.1f s", xid, entry.attempts, delay)

    def backoff_of(self, xid: str) -> tuple[int, float] | None:
        """(attempts, seconds until the next one) of a transaction being retried, for tests and
        operators; None when it is not backing off."""
        for table in self._backoff.values():
            entry = table.get(xid)
            if entry is not None:
                return entry.attempts, max(entry.due - self.clock(), 0.0)
        return None

    @staticmethod
    def _age(g: GlobalTransaction) -> int:
        # Seata measures the retry timeout from the transaction's begin, not the first failure.
        return int(time.time() * 1000) - g.begin_time

    async def _stop_retrying(self, g: GlobalTransaction, final: GlobalStatus) -> None:
        lifecycle.check_global(g.status, final)
        unlock = final == G.RollbackRetryTimeout and self.config.rollback_retry_timeout_unlock
        if await self.store.change_global_status(g.xid, final, expected=g.status, release_locks=unlock):
            for table in self._backoff.values():
                table.pop(g.xid, None)
            log.info("xid=%s %s -> %s", g.xid, g.status.name, final.name)
            self.tc.alerter.alert(g.xid, final, f"gave up retrying after {self._age(g)} ms")
