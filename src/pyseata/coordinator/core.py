"""The Transaction Coordinator: one handler per request type, and phase two.

Semantics follow Seata's DefaultCore (BEHAVIOUR.md 1.4-1.5): an unknown XID answers Finished;
commit on a timed-out transaction answers TimeoutRollbacking and lets the timeout checker act;
AT-only transactions go AsyncCommitting and the TM hears Committed at once; row locks are released
at the commit decision; rollback visits branches in reverse registration order and stops at the
first failure; PhaseOne_Failed branches are dropped without calling the RM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from pyseata.coordinator import lifecycle
from pyseata.coordinator.alerts import Alerter
from pyseata.coordinator.breaker import RmBreaker
from pyseata.coordinator.config import CoordinatorConfig
from pyseata.coordinator.ids import IdGenerator
from pyseata.coordinator.lockkeys import parse_lock_key
from pyseata.coordinator.model import BranchTransaction, GlobalTransaction
from pyseata.coordinator.outcomes import FinishedOutcomes
from pyseata.coordinator.store.base import RegisterOutcome, SessionStore
from pyseata.coordinator.store.memory import MemoryStore
from pyseata.coordinator.store.sqlite import SqliteStore
from pyseata.errors import PyseataError, TransactionError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus, ResultCode
from pyseata.protocol.enums import TransactionExceptionCode as Code
from pyseata.protocol.xid import InvalidXidError, format_xid, parse_xid
from pyseata.rpc.registry import ClientInfo

__all__ = ["BranchSender", "Coordinator"]

log = logging.getLogger("pyseata.tc")

G = GlobalStatus
B = BranchStatus


class BranchSender(Protocol):
    async def __call__(
        self, resource_id: str, client_id: str | None, branch_type: BranchType, request: m.Message,
        timeout: float | None = None,
    ) -> m.Message: ...


_REGISTER_FAILURES: dict[RegisterOutcome, tuple[Code, str]] = {
    RegisterOutcome.GLOBAL_NOT_FOUND: (Code.GlobalTransactionNotExist, "Could not find global transaction xid = {xid}"),
    RegisterOutcome.GLOBAL_NOT_ACTIVE: (Code.GlobalTransactionNotActive,
                                        "Could not register branch into global session xid = {xid}: not active"),
    RegisterOutcome.LOCK_CONFLICT: (Code.LockKeyConflict,
                                    "Global lock acquire failed xid = {xid} branchId = {branch_id}"),
    RegisterOutcome.LOCK_CONFLICT_FAIL_FAST: (Code.LockKeyConflictFailFast,
                                              "Global lock acquire failed fast xid = {xid} branchId = {branch_id}"),
}

# What the TM hears for a commit that was decided asynchronously.
_COMMIT_ANSWER = {G.AsyncCommitting: G.Committed}
_COMMIT_ONE_PHASE_DONE = frozenset({B.PhaseOne_Failed})
_XA_SKIP = frozenset({B.PhaseOne_Failed, B.PhaseOne_RDONLY})
_XAER_NOTA = frozenset({B.PhaseTwo_CommitFailed_XAER_NOTA_Retryable, B.PhaseTwo_RollbackFailed_XAER_NOTA_Retryable})


def _now_ms() -> int:
    return int(time.time() * 1000)


def _app_flags(application_data: str | None) -> dict[str, Any]:
    """``{"autoCommit": false, "skipCheckLock": true}`` hints an AT RM may send."""
    if not application_data or not application_data.startswith("{"):
        return {}
    try:
        data = json.loads(application_data)
    except (ValueError, RecursionError):  # not the hints' shape: no hints
        return {}
    return data if isinstance(data, dict) else {}


class Coordinator:
    """Implements :class:`pyseata.rpc.server.TransactionHandler` over a :class:`SessionStore`."""

    def __init__(self, store: SessionStore, config: CoordinatorConfig | None = None,
                 sender: BranchSender | None = None) -> None:
        self.store = store
        self.config = config or CoordinatorConfig()
        self.sender = sender
        self.ids = IdGenerator(self.config.worker_id)
        # gather() costs two tasks: worth it where a read waits for I/O or another thread, not
        # for the memory store or SQLite's point reads, which answer on the loop without suspending.
        self._parallel_reads = not isinstance(store, (MemoryStore, SqliteStore))
        self.alerter = Alerter(self.config.alert_webhook)
        self.breaker = RmBreaker(self.config.unresponsive_rm_cooldown)
        self.outcomes = FinishedOutcomes(self.config.finished_outcomes_kept)
        self._locks = _XidLocks()
        self._in_flight: set[str] = set()  # xids whose phase two runs in this process now
        self._async_pending: set[str] = set()  # xids queued for (or being driven by) a worker
        self._backlog_room = asyncio.Event()  # set when _async_pending is below the backlog limit
        self._backlog_room.set()
        self.held_commits = 0  # commit answers waiting for room in the async-commit backlog
        self._async_queue: asyncio.Queue[
            tuple[str, GlobalTransaction | None, list[BranchTransaction] | None]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._handlers: dict[type[m.Message], Callable[[Any, ClientInfo], Awaitable[m.AbstractResultMessage]]] = {
            m.GlobalBeginRequest: self._begin,
            m.GlobalCommitRequest: self._commit,
            m.GlobalRollbackRequest: self._rollback,
            m.GlobalStatusRequest: self._status,
            m.GlobalReportRequest: self._report,
            m.BranchRegisterRequest: self._branch_register,
            m.BranchReportRequest: self._branch_report,
            m.GlobalLockQueryRequest: self._lock_query,
        }

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the workers that run AT phase two right after the commit decision."""
        self._workers = [asyncio.create_task(self._async_worker(), name=f"async-commit-{i}")
                         for i in range(self.config.async_commit_workers)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        await self.alerter.close()

    # --- TransactionHandler -----------------------------------------------------------------------

    async def handle(self, request: m.Message, client: ClientInfo) -> m.AbstractResultMessage:
        handler = self._handlers.get(type(request))
        if handler is None:
            raise PyseataError(f"the TC does not serve {type(request).__name__}")
        return await handler(request, client)

    def client_gone(self, client: ClientInfo) -> None:
        """Nothing to do: branches stay with the store and phase two finds another connection."""

    # --- TM requests ------------------------------------------------------------------------------

    async def _begin(self, req: m.GlobalBeginRequest, client: ClientInfo) -> m.GlobalBeginResponse:
        transaction_id = self.ids.next_id()
        xid = format_xid(self.config.advertise_host, self.config.advertise_port, transaction_id)
        timeout = req.timeout if req.timeout > 0 else self.config.default_timeout_ms
        await self.store.insert_global(GlobalTransaction(
            xid=xid, transaction_id=transaction_id, status=G.Begin,
            application_id=client.application_id, transaction_service_group=client.transaction_service_group,
            transaction_name=req.transaction_name, timeout=timeout, begin_time=_now_ms(),
        ))
        log.debug("xid=%s begin name=%r timeout=%dms by %s", xid, req.transaction_name, timeout, client.client_id)
        return m.GlobalBeginResponse(xid=xid)

    async def _commit(self, req: m.GlobalCommitRequest, client: ClientInfo) -> m.GlobalCommitResponse:
        return m.GlobalCommitResponse(global_status=await self.commit(req.xid or ""))

    async def commit(self, xid: str) -> GlobalStatus:
        async with self._locks.hold(xid):
            if self._parallel_reads:
                # Both reads at once: a store that reads on another thread serves them in one hop.
                g, branches = await asyncio.gather(self.store.get_global(xid), self.store.get_branches(xid))
            else:
                g = await self.store.get_global(xid)
                branches = await self.store.get_branches(xid) if g is not None else []
            if g is None:
                return self.outcomes.answer(xid)
            if g.status != G.Begin:
                return _COMMIT_ANSWER.get(g.status, g.status)
            if _now_ms() > g.deadline:
                return G.TimeoutRollbacking  # the timeout checker rolls it back
            if not branches:
                # Nothing to drive in phase two (no branch can join: we hold the XID's lock), so
                # the decision and the end are one write instead of a status change and a removal.
                await self.store.remove_global(xid)
                self.outcomes.ended(xid, G.Committed)
                log.debug("xid=%s committed (no branch)", xid)
                return G.Committed
            can_async = all(b.branch_type == BranchType.AT or b.status in _COMMIT_ONE_PHASE_DONE for b in branches)
            decided = G.AsyncCommitting if can_async else G.Committing
            if not await self.store.change_global_status(xid, decided, expected=G.Begin, release_locks=True):
                current = await self.store.get_global(xid)
                return self.outcomes.answer(xid) if current is None else _COMMIT_ANSWER.get(current.status,
                                                                                               current.status)
            log.debug("xid=%s commit decided: %s (%d branches)", xid, decided.name, len(branches))
        g = replace(g, status=decided)
        if decided == G.AsyncCommitting:
            self.schedule_async_commit(xid, g, branches)
            if len(self._async_pending) > self.config.async_commit_backlog:
                await self._wait_for_backlog_room(xid)
            return G.Committed
        status = await self.do_global_commit(g, retrying=False)
        return _COMMIT_ANSWER.get(status, status)

    async def _rollback(self, req: m.GlobalRollbackRequest, client: ClientInfo) -> m.GlobalRollbackResponse:
        return m.GlobalRollbackResponse(global_status=await self.rollback(req.xid or ""))

    async def rollback(self, xid: str) -> GlobalStatus:
        async with self._locks.hold(xid):
            g = await self.store.get_global(xid)
            if g is None:
                return self.outcomes.answer(xid)
            if g.status != G.Begin:
                return g.status
            if not await self.store.change_global_status(xid, G.Rollbacking, expected=G.Begin,
                                                         mark_locks_rollbacking=True):
                current = await self.store.get_global(xid)
                return self.outcomes.answer(xid) if current is None else current.status
        return await self.do_global_rollback(replace(g, status=G.Rollbacking), retrying=False)

    async def _status(self, req: m.GlobalStatusRequest, client: ClientInfo) -> m.GlobalStatusResponse:
        g = await self.store.get_global(req.xid or "")
        return m.GlobalStatusResponse(global_status=G.Finished if g is None else g.status)

    async def _report(self, req: m.GlobalReportRequest, client: ClientInfo) -> m.GlobalReportResponse:
        """SAGA: the engine reports the outcome it reached itself."""
        xid = req.xid or ""
        g = await self.store.get_global(xid)
        if g is None:
            return m.GlobalReportResponse(global_status=G.Finished)
        status = req.global_status
        if status in (G.Committed, G.Rollbacked, G.TimeoutRollbacked, G.Finished):
            await self.store.remove_global(xid)
            if status != G.Finished:
                self.outcomes.ended(xid, status)
            return m.GlobalReportResponse(global_status=status)
        if status is not None and status != g.status:
            # RollbackRetrying/CommitRetrying/UnKnown ask the TC to drive the saga's recovery
            # through its virtual branch (BEHAVIOUR.md 5.3), which this TC does not do yet.
            # Refused by name: taking the status would let the ordinary recovery end the saga
            # with no branch to call, i.e. without compensating it.
            try:
                lifecycle.check_global(g.status, status)
            except lifecycle.IllegalTransitionError as exc:
                raise TransactionError(f"xid = {xid}: {exc} (SAGA recovery by the TC is not supported)",
                                       Code.GlobalTransactionStatusInvalid, xid=xid) from None
            await self.store.change_global_status(xid, status, expected=g.status)
            return m.GlobalReportResponse(global_status=status)
        return m.GlobalReportResponse(global_status=g.status)

    # --- RM requests ------------------------------------------------------------------------------

    async def _branch_register(self, req: m.BranchRegisterRequest, client: ClientInfo) -> m.BranchRegisterResponse:
        xid = req.xid or ""
        try:
            transaction_id = parse_xid(xid).transaction_id
        except InvalidXidError:
            raise TransactionError(f"Could not find global transaction xid = {xid}",
                                   Code.GlobalTransactionNotExist, xid=xid) from None
        resource_id = req.resource_id or ""
        row_keys = (parse_lock_key(resource_id, req.lock_key, xid=xid)
                    if req.branch_type == BranchType.AT and req.lock_key else [])
        flags = _app_flags(req.application_data) if req.branch_type == BranchType.AT else {}
        branch = BranchTransaction(
            branch_id=self.ids.next_id(), xid=xid, transaction_id=transaction_id, resource_id=resource_id,
            branch_type=req.branch_type, status=B.Registered, client_id=client.client_id,
            application_data=req.application_data,
        )
        async with self._locks.hold(xid):
            outcome = await self.store.register_branch(
                branch, row_keys, skip_check=bool(flags.get("skipCheckLock")),
                fail_fast_on_rollbacking=flags.get("autoCommit") is False,
            )
        failure = _REGISTER_FAILURES.get(outcome)
        if failure is not None:
            code, text = failure
            raise TransactionError(text.format(xid=xid, branch_id=branch.branch_id), code, xid=xid)
        log.debug("xid=%s branch %d registered (%s %s)", xid, branch.branch_id, req.branch_type.name, resource_id)
        return m.BranchRegisterResponse(branch_id=branch.branch_id)

    async def _branch_report(self, req: m.BranchReportRequest, client: ClientInfo) -> m.BranchReportResponse:
        xid = req.xid or ""
        branches = {b.branch_id: b for b in await self.store.get_branches(xid)}
        known = branches.get(req.branch_id)
        if known is None:
            if await self.store.get_global(xid) is None:
                raise TransactionError(f"Could not find global transaction xid = {xid}",
                                       Code.GlobalTransactionNotExist, xid=xid)
            raise TransactionError(f"Could not find branch session xid = {xid} branchId = {req.branch_id}",
                                   Code.BranchTransactionNotExist, xid=xid)
        try:
            lifecycle.check_branch(known.status, req.status)
        except lifecycle.IllegalTransitionError as exc:
            raise TransactionError(f"xid = {xid} branchId = {req.branch_id}: {exc}", Code.BranchReportFailed,
                                   xid=xid) from None
        await self.store.update_branch(xid, req.branch_id, req.status, req.application_data)
        return m.BranchReportResponse()

    async def _lock_query(self, req: m.GlobalLockQueryRequest, client: ClientInfo) -> m.GlobalLockQueryResponse:
        if not req.lock_key:
            return m.GlobalLockQueryResponse(lockable=True)
        # LockableCheckFailed, not the default BranchRegisterFailed: the client maps the code to
        # the operation that failed.
        row_keys = parse_lock_key(req.resource_id or "", req.lock_key, code=Code.LockableCheckFailed, xid=req.xid)
        return m.GlobalLockQueryResponse(lockable=await self.store.is_lockable(req.xid or "", row_keys))

    # --- phase two --------------------------------------------------------------------------------

    async def _wait_for_backlog_room(self, xid: str) -> None:
        """Back-pressure: the TM hears Committed once phase two has room again, so phase one
        cannot outrun phase two for good. Bounded, so an RM that hangs (and with it the
        workers) delays commit answers but never blocks them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.async_commit_backlog_wait
        self.held_commits += 1
        try:
            while len(self._async_pending) > self.config.async_commit_backlog:
                self._backlog_room.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.warning("xid=%s answered Committed with %d AT commits still waiting for phase two "
                                "(is an RM hanging?)", xid, len(self._async_pending))
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._backlog_room.wait(), remaining)
        finally:
            self.held_commits -= 1

    def busy(self, xid: str) -> bool:
        """Whether this process drives (or is about to drive) phase two of ``xid`` right now;
        recovery leaves such transactions alone instead of counting them as failed attempts."""
        return xid in self._in_flight or xid in self._async_pending

    def schedule_async_commit(self, xid: str, g: GlobalTransaction | None = None,
                              branches: list[BranchTransaction] | None = None) -> None:
        """Queues ``xid`` for an async-commit worker. ``g`` and ``branches``, when the caller has
        them (the commit decision read them under the XID's lock, and no branch can join after
        it), spare the worker two store reads."""
        if xid not in self._in_flight and xid not in self._async_pending:
            self._async_pending.add(xid)
            self._async_queue.put_nowait((xid, g, branches))

    async def _async_worker(self) -> None:
        while True:
            xid, g, branches = await self._async_queue.get()
            try:
                if g is None:
                    g = await self.store.get_global(xid)
                if g is not None and g.status == G.AsyncCommitting:
                    await self.do_global_commit(g, retrying=True, branches=branches)
            except Exception:
                log.exception("xid=%s async commit failed; recovery will retry", xid)
            finally:
                self._async_pending.discard(xid)
                if len(self._async_pending) <= self.config.async_commit_backlog:
                    self._backlog_room.set()

    async def do_global_commit(self, g: GlobalTransaction, *, retrying: bool,
                               branches: list[BranchTransaction] | None = None) -> GlobalStatus:
        """Sends BranchCommit to the branches in registration order. The synchronous pass leaves
        AT branches to the asynchronous one. Returns the status the transaction is left in.

        Branches done in this pass are removed from the store in one step with the session when
        the pass finishes it (one write instead of one per branch), or one by one before the pass
        stops early. A crash in between re-sends the commit of a branch that had it already,
        which Seata's RMs accept (AT: undo log already gone; TCC: the fence)."""
        xid = g.xid
        if xid in self._in_flight:
            return g.status
        self._in_flight.add(xid)
        done: list[int] = []
        try:
            if branches is None:
                branches = await self.store.get_branches(xid)
            all_at = all(b.branch_type == BranchType.AT or b.status in _COMMIT_ONE_PHASE_DONE for b in branches)
            remaining = 0
            for b in branches:
                if not retrying and b.branch_type == BranchType.AT:
                    remaining += 1
                    continue
                if b.status in _XA_SKIP:
                    done.append(b.branch_id)
                    continue
                status = await self._send_branch(g, b, commit=True)
                if status == B.PhaseTwo_Committed:
                    done.append(b.branch_id)
                    continue
                await self._remove_branches(xid, done)
                if status == B.PhaseTwo_CommitFailed_Unretryable:
                    return await self._give_up(g, G.CommitFailed, f"branch {b.branch_id} commit failed unretryably")
                if not retrying:
                    return await self._set(g, G.CommitRetrying)
                if g.status == G.AsyncCommitting or all_at:
                    remaining += 1
                    continue  # the rest of an async commit need not wait for this branch
                if g.status == G.Committing:
                    # A Committing session re-driven after a crash: from now on it is an ordinary
                    # retry with backoff, not a "dead session" that waits dead_session_ms again.
                    return await self._set(g, G.CommitRetrying)
                return g.status
            if remaining:
                await self._remove_branches(xid, done)
                if g.status in (G.Committing, G.CommitRetrying):
                    return await self._set(g, G.AsyncCommitting, schedule=True)
                return g.status
            await self.store.remove_global(xid)  # with its branches and any lock left
            self.outcomes.ended(xid, G.Committed)
            done.clear()
            log.debug("xid=%s committed", xid)
            return G.Committed
        finally:
            self._in_flight.discard(xid)

    async def do_global_rollback(self, g: GlobalTransaction, *, retrying: bool) -> GlobalStatus:
        """Sends BranchRollback in reverse registration order, stopping at the first failure.

        As for commit, the branches rolled back in this pass leave the store with the session in
        one write when the pass finishes it, or one by one (with their row locks) before it stops
        at a failure."""
        xid = g.xid
        if xid in self._in_flight:
            return g.status
        self._in_flight.add(xid)
        timed_out = g.status in lifecycle.TIMEOUT_STATUSES
        done: list[int] = []
        try:
            for b in reversed(await self.store.get_branches(xid)):
                if b.status == B.PhaseOne_Failed:
                    done.append(b.branch_id)
                    continue
                status = await self._send_branch(g, b, commit=False)
                if status == B.PhaseTwo_Rollbacked:
                    done.append(b.branch_id)
                    continue
                await self._remove_branches(xid, done)
                if status == B.PhaseTwo_RollbackFailed_Unretryable:
                    final = G.TimeoutRollbackFailed if timed_out else G.RollbackFailed
                    return await self._give_up(g, final, f"branch {b.branch_id} rollback failed unretryably "
                                                         "(for AT: the data changed since phase one)")
                retry_status = G.TimeoutRollbackRetrying if timed_out else G.RollbackRetrying
                if g.status != retry_status:
                    return await self._set(g, retry_status)
                return g.status
            await self.store.remove_global(xid)
            outcome = G.TimeoutRollbacked if timed_out else G.Rollbacked
            self.outcomes.ended(xid, outcome)
            log.info("xid=%s %s", xid, outcome.name)
            return outcome
        finally:
            self._in_flight.discard(xid)

    async def _remove_branches(self, xid: str, branch_ids: list[int]) -> None:
        """Removes finished branches (and their row locks) before a pass stops early."""
        for branch_id in branch_ids:
            await self.store.remove_branch(xid, branch_id)
        branch_ids.clear()

    async def _send_branch(self, g: GlobalTransaction, b: BranchTransaction, *, commit: bool) -> BranchStatus:
        cls = m.BranchCommitRequest if commit else m.BranchRollbackRequest
        retryable = B.PhaseTwo_CommitFailed_Retryable if commit else B.PhaseTwo_RollbackFailed_Retryable
        request = cls(xid=g.xid, branch_id=b.branch_id, branch_type=b.branch_type, resource_id=b.resource_id,
                      application_data=b.application_data)
        if self.sender is None:
            return retryable
        rm = (b.resource_id, b.client_id)
        if not self.breaker.allow(rm):
            log.debug("xid=%s branch %d %s held back: its RM %s did not answer lately", g.xid, b.branch_id,
                      cls.__name__, b.client_id)
            return retryable
        try:
            response = await self.sender(b.resource_id, b.client_id, b.branch_type, request,
                                         self.config.branch_request_timeout)
        except TimeoutError:
            if self.breaker.timed_out(rm):
                log.warning("xid=%s branch %d %s: RM %s (resource %r) did not answer in %.1f s; its other "
                            "branches wait %.1f s before one probe, so phase two of other RMs goes on",
                            g.xid, b.branch_id, cls.__name__, b.client_id, b.resource_id,
                            self.config.branch_request_timeout, self.breaker.cooldown)
            else:
                log.warning("xid=%s branch %d %s not delivered: RM %s did not answer in %.1f s", g.xid,
                            b.branch_id, cls.__name__, b.client_id, self.config.branch_request_timeout)
            return retryable
        except (OSError, PyseataError) as exc:
            self.breaker.answered(rm)
            log.warning("xid=%s branch %d %s not delivered: %s", g.xid, b.branch_id, cls.__name__, exc)
            return retryable
        self.breaker.answered(rm)
        if not isinstance(response, m.AbstractBranchEndResponse):
            return retryable
        status = response.branch_status
        if response.result_code == ResultCode.Failed and status in (B.Unknown, B.Registered):
            log.warning("xid=%s branch %d %s failed: %s", g.xid, b.branch_id, cls.__name__, response.msg)
            return retryable
        if status in _XAER_NOTA and _now_ms() > g.begin_time + g.timeout + max(
                self.config.xaer_nota_retry_timeout_ms, g.timeout):
            return B.PhaseTwo_Committed if commit else B.PhaseTwo_Rollbacked
        return status

    async def _set(self, g: GlobalTransaction, new: GlobalStatus, *, schedule: bool = False) -> GlobalStatus:
        lifecycle.check_global(g.status, new)
        if await self.store.change_global_status(g.xid, new, expected=g.status):
            log.info("xid=%s %s -> %s", g.xid, g.status.name, new.name)
            if schedule:
                # After this pass ends: the worker skips an xid still in flight.
                asyncio.get_running_loop().call_soon(self.schedule_async_commit, g.xid, replace(g, status=new))
            return new
        current = await self.store.get_global(g.xid)
        return self.outcomes.answer(g.xid) if current is None else current.status

    async def _give_up(self, g: GlobalTransaction, final: GlobalStatus, reason: str) -> GlobalStatus:
        status = await self._set(g, final)
        if status == final:
            self.alerter.alert(g.xid, final, reason)
        return status


class _XidLocks:
    """One asyncio.Lock per XID, kept only while someone holds or waits for it.

    The entry is dropped when its last user leaves. Dropping it as soon as it is merely
    unlocked is not enough: between a release and the wake-up of the next waiter the lock
    reads as unlocked, and a third caller would then get a fresh lock and run beside the
    waiter (commit deciding on a branch list while a register adds to it).
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, list[Any]] = {}  # xid -> [lock, users]

    def __len__(self) -> int:
        return len(self._entries)

    def hold(self, xid: str) -> _Held:
        return _Held(self._entries, xid)


class _Held:
    """``async with locks.hold(xid)``: a plain class, as every register and commit takes it (a
    generator-based context manager cost several times more per use)."""

    __slots__ = ("_entries", "_entry", "_xid")

    def __init__(self, entries: dict[str, list[Any]], xid: str) -> None:
        self._entries, self._xid = entries, xid
        entry = entries.get(xid)
        if entry is None:
            entry = entries[xid] = [asyncio.Lock(), 0]
        entry[1] += 1
        self._entry = entry

    async def __aenter__(self) -> None:
        try:
            await self._entry[0].acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._entry[0].release()
        self._leave()

    def _leave(self) -> None:
        entry = self._entry
        entry[1] -= 1
        if entry[1] == 0:
            del self._entries[self._xid]
