"""The Resource Manager: the resources of this process, their branches, and phase two.

A *resource* is whatever owns branches of one kind under one id: a TCC action (resource id = the
action's name), an AT data source, an XA connection factory. It implements :class:`Resource`:

* ``resource_id`` and ``branch_type``;
* ``branch_commit(request)`` and ``branch_rollback(request)``, each returning ``None`` / ``True``
  (done), ``False`` (not yet: the TC retries) or a :class:`BranchStatus`; an ``async def`` runs
  on the client runtime's loop, a plain function in the RM's worker pool (never on the loop; a
  plain function may also return a coroutine, which is then awaited on the loop).

Resources are declared once, with :func:`register_resource` (a TCC action declares itself), into
a process-wide :class:`ResourceRegistry`. The runtime's :class:`ResourceManager` registers every
declared id with the TC when it starts and every later one when it is declared; the transport
registers them again after each reconnect, so the TC always knows where to send phase two.

What the TC hears back (BEHAVIOUR.md 1.3, 4.1), one table per phase:

=================================  =============================================
the resource                        the answer
=================================  =============================================
returns None / True                 PhaseTwo_Committed / PhaseTwo_Rollbacked
returns False                       *_Retryable (the TC tries again later)
raises                              *_Retryable, unless the exception is an
                                    :class:`UnretryableError` or one of the
                                    resource's ``unretryable`` classes: *_Unretryable
is unknown here                     *_Retryable, logged by name: another process of
                                    the same application may own it, or it is declared
                                    later in start-up
=================================  =============================================

Every log line about a branch carries ``xid=`` and ``branch=`` (and ``record.xid`` for
:class:`~pyseata.client.context.XidLogFilter` formats).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeAlias, TypeVar

from pyseata.errors import PyseataError, TransactionError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, ResultCode
from pyseata.protocol.enums import TransactionExceptionCode as Code
from pyseata.rpc.client import Role

if TYPE_CHECKING:
    from pyseata.client.runtime import ClientRuntime

__all__ = [
    "DEFAULT_REGISTRY",
    "BranchError",
    "BranchRequest",
    "LockConflictError",
    "PhaseTwoResult",
    "Resource",
    "ResourceManager",
    "ResourceRegistry",
    "UnretryableError",
    "register_resource",
    "unregister_resource",
]

log = logging.getLogger("pyseata.client.rm")

B = BranchStatus
R = TypeVar("R", bound=m.AbstractTransactionResponse)
T = TypeVar("T")
P = ParamSpec("P")

PhaseTwoResult: TypeAlias = BranchStatus | bool | None


class UnretryableError(PyseataError):
    """Raised by a resource's commit or rollback when no retry can ever succeed: the TC stops
    retrying and leaves the global transaction CommitFailed / RollbackFailed for an operator."""


class BranchError(TransactionError):
    """The TC refused a branch request (register, report, lock query); ``.code`` is Seata's
    TransactionExceptionCode (GlobalTransactionNotExist, GlobalTransactionNotActive, ...)."""


class LockConflictError(BranchError):
    """Another global transaction holds one of the row locks (LockKeyConflict, or
    LockKeyConflictFailFast when that one is rolling back): retry later, or give up."""


# TC exception codes with a class of their own; every other code is a plain BranchError.
_ERRORS: dict[Code, type[BranchError]] = {
    Code.LockKeyConflict: LockConflictError,
    Code.LockKeyConflictFailFast: LockConflictError,
}


@dataclass(frozen=True, slots=True)
class BranchRequest:
    """One phase-two request of the TC, as a resource sees it."""

    xid: str
    branch_id: int
    resource_id: str
    branch_type: BranchType
    application_data: str | None


class Resource(Protocol):
    """What the RM dispatches phase two to (see the module doc for the results)."""

    @property
    def resource_id(self) -> str: ...

    @property
    def branch_type(self) -> BranchType: ...

    def branch_commit(self, request: BranchRequest) -> PhaseTwoResult | Awaitable[PhaseTwoResult]: ...

    def branch_rollback(self, request: BranchRequest) -> PhaseTwoResult | Awaitable[PhaseTwoResult]: ...


# --- the registry -------------------------------------------------------------------------------


class ResourceRegistry:
    """resource id -> resource, per branch type; thread-safe. Managers attached to it hear of
    every resource added, so one declared after start-up reaches the TC too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: dict[tuple[BranchType, str], Resource] = {}
        self._managers: list[ResourceManager] = []

    def add(self, resource: Resource) -> None:
        """Adds ``resource``; a second, different resource under the same type and id is an error
        (the TC could not tell them apart)."""
        key = (BranchType(resource.branch_type), _checked_id(resource.resource_id))
        with self._lock:
            known = self._resources.get(key)
            if known is resource:
                return
            if known is not None:
                raise ValueError(f"a {key[0].name} resource named {key[1]!r} is already registered ({known!r}); "
                                 "resource ids must be unique in a process")  # fmt: skip
            self._resources[key] = resource
            managers = list(self._managers)
        for manager in managers:
            manager._announce(key[1])

    def remove(self, branch_type: BranchType, resource_id: str) -> None:
        """Forgets a resource here (the TC keeps routing its id to this process until reconnect)."""
        with self._lock:
            self._resources.pop((BranchType(branch_type), resource_id), None)

    def get(self, branch_type: BranchType, resource_id: str) -> Resource | None:
        with self._lock:
            return self._resources.get((branch_type, resource_id))

    def ids(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(rid for _, rid in self._resources))

    def resources(self) -> list[Resource]:
        with self._lock:
            return list(self._resources.values())

    def _attach(self, manager: ResourceManager) -> list[str]:
        with self._lock:
            if manager not in self._managers:
                self._managers.append(manager)
            return list(dict.fromkeys(rid for _, rid in self._resources))

    def _detach(self, manager: ResourceManager) -> None:
        with self._lock:
            if manager in self._managers:
                self._managers.remove(manager)


DEFAULT_REGISTRY = ResourceRegistry()
"""The process's resources: what :func:`pyseata.client.init` registers with the TC."""


def register_resource(resource: Resource) -> None:
    """Declares ``resource`` in this process (before or after :func:`pyseata.client.init`)."""
    DEFAULT_REGISTRY.add(resource)


def unregister_resource(resource: Resource) -> None:
    DEFAULT_REGISTRY.remove(resource.branch_type, resource.resource_id)


def _checked_id(resource_id: object) -> str:
    if not isinstance(resource_id, str) or not resource_id or "," in resource_id:
        # "," separates ids in RegisterRMRequest (PROTOCOL.md 4.7).
        raise ValueError(f"a resource id must be a non-empty string without ',', not {resource_id!r}")
    return resource_id


# --- phase two: one row per request type ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Phase:
    name: str
    method: str  # the resource's method
    done: BranchStatus
    retryable: BranchStatus
    unretryable: BranchStatus
    xaer_nota: BranchStatus  # XA: the database does not know the branch
    response: type[m.AbstractBranchEndResponse]

    @property
    def answers(self) -> frozenset[BranchStatus]:
        """The statuses a resource may answer in this phase."""
        return frozenset({self.done, self.retryable, self.unretryable, self.xaer_nota})


_PHASES: dict[type[m.Message], _Phase] = {
    m.BranchCommitRequest: _Phase("commit", "branch_commit", B.PhaseTwo_Committed,
                                  B.PhaseTwo_CommitFailed_Retryable, B.PhaseTwo_CommitFailed_Unretryable,
                                  B.PhaseTwo_CommitFailed_XAER_NOTA_Retryable, m.BranchCommitResponse),
    m.BranchRollbackRequest: _Phase("rollback", "branch_rollback", B.PhaseTwo_Rollbacked,
                                    B.PhaseTwo_RollbackFailed_Retryable, B.PhaseTwo_RollbackFailed_Unretryable,
                                    B.PhaseTwo_RollbackFailed_XAER_NOTA_Retryable, m.BranchRollbackResponse),
}  # fmt: skip


def _status_of(phase: _Phase, result: object) -> BranchStatus | None:
    """The answer for a resource's return value; None when the value makes no sense here."""
    if isinstance(result, BranchStatus):
        return result if result in phase.answers else None
    if result is None or result is True:
        return phase.done
    if result is False:
        return phase.retryable
    return None


# --- the two forms of a TC call -----------------------------------------------------------------

_TcCall: TypeAlias = Callable[Concatenate["ResourceManager", P], Coroutine[Any, Any, T]]


def _blocking(call: _TcCall[P, T]) -> Callable[Concatenate[ResourceManager, P], T]:
    """``call`` for synchronous code: blocks until its coroutine has run on the runtime's loop."""

    @functools.wraps(call)
    def blocking(self: ResourceManager, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.runtime.run(call(self, *args, **kwargs))

    return blocking


def _awaitable(call: _TcCall[P, T]) -> _TcCall[P, T]:
    """``call`` for asyncio code: awaits its coroutine on the runtime's loop, the caller's stays free."""

    @functools.wraps(call)
    async def awaitable(self: ResourceManager, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.runtime.arun(call(self, *args, **kwargs))

    return awaitable


# --- the manager ----------------------------------------------------------------------------------


class ResourceManager:
    """The RM of one client runtime: branch requests to the TC, phase two from it.

    Every TC call exists twice: blocking (``branch_register``) for synchronous code, awaitable
    (``abranch_register``) for asyncio code; both run the one coroutine on the runtime's loop.
    """

    def __init__(
        self, runtime: ClientRuntime, registry: ResourceRegistry | None = None, *, worker_threads: int | None = None
    ) -> None:
        self.runtime = runtime
        self.registry = registry if registry is not None else DEFAULT_REGISTRY
        self._threads = worker_threads or runtime.client.config.handler_threads
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._handler_installed = False
        self._pending: set[asyncio.Task[None]] = set()

    # --- lifecycle (called by the runtime) -----------------------------------------------------------

    async def attach(self) -> None:
        """On the runtime's loop: registers the registry's resources with the transport (before
        or after it started) and listens for resources declared later."""
        for resource_id in self.registry._attach(self):
            await self._register_on_loop(resource_id)

    def close(self) -> None:
        """Stops listening and ends the worker pool (after the transport drained its handlers)."""
        self.registry._detach(self)
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def register(self, resource: Resource) -> None:
        """Adds ``resource`` to this manager's registry, which registers it with the TC."""
        self.registry.add(resource)

    def _announce(self, resource_id: str) -> None:
        coro = self._register_on_loop(resource_id)
        thread = self.runtime.loop_thread
        if thread.in_loop_thread():
            task = thread.loop.create_task(coro)  # cannot block the loop on itself
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        try:
            self.runtime.run(coro)
        except PyseataError as exc:  # shut down meanwhile: the next runtime registers it
            log.debug("resource %s not registered now: %s", resource_id, exc)

    async def _register_on_loop(self, resource_id: str) -> None:
        client = self.runtime.client
        if not self._handler_installed:
            # The handler first: the TC may send phase two as soon as it knows the resource.
            client.on_branch_request(self.handle)
            self._handler_installed = True
        await client.register_resource(resource_id)

    # --- requests to the TC --------------------------------------------------------------------------
    # Each is written once, as a method that checks its arguments and builds the request here and
    # returns the coroutine that asks the TC; _blocking and _awaitable make its two public forms.

    def _branch_register(
        self,
        xid: str,
        resource_id: str,
        branch_type: BranchType,
        lock_key: str | None = None,
        application_data: str | None = None,
    ) -> Coroutine[Any, Any, int]:
        """Registers a branch of ``xid``; returns its branch id. Raises :class:`BranchError`
        (:class:`LockConflictError` for a row-lock conflict) when the TC refuses."""
        request = m.BranchRegisterRequest(xid=xid, branch_type=BranchType(branch_type), resource_id=resource_id,
                                          lock_key=lock_key, application_data=application_data)  # fmt: skip
        return self._ask(request, m.BranchRegisterResponse, "register a branch", lambda r: r.branch_id)

    def _branch_report(
        self,
        xid: str,
        branch_id: int,
        status: BranchStatus,
        *,
        resource_id: str | None = None,
        branch_type: BranchType = BranchType.AT,
        application_data: str | None = None,
    ) -> Coroutine[Any, Any, None]:
        """Reports a branch's phase-one outcome, or (TCC, status Registered) new application data."""
        request = m.BranchReportRequest(
            xid=xid,
            branch_id=branch_id,
            status=status,
            resource_id=resource_id,
            application_data=application_data,
            branch_type=BranchType(branch_type),
        )
        return self._ask(request, m.BranchReportResponse, f"report branch {branch_id}", lambda r: None)

    def _global_lock_query(
        self, resource_id: str, lock_key: str, *, xid: str | None = None, branch_type: BranchType = BranchType.AT
    ) -> Coroutine[Any, Any, bool]:
        """True when no other global transaction holds any of ``lock_key``'s rows (checks only)."""
        request = m.GlobalLockQueryRequest(
            xid=xid, branch_type=BranchType(branch_type), resource_id=resource_id, lock_key=lock_key
        )
        return self._ask(request, m.GlobalLockQueryResponse, "query global locks", lambda r: r.lockable)

    async def _ask(self, request: m.Message, expected: type[R], action: str, answer: Callable[[R], T]) -> T:
        """Sends one RM request (on the runtime's loop), checks the response and returns ``answer(response)``."""
        xid: str | None = getattr(request, "xid", None)
        response = await self.runtime.client.request(request, role=Role.RM, xid=xid)
        return answer(_checked(response, expected, action, xid))

    branch_register = _blocking(_branch_register)
    abranch_register = _awaitable(_branch_register)
    branch_report = _blocking(_branch_report)
    abranch_report = _awaitable(_branch_report)
    global_lock_query = _blocking(_global_lock_query)
    aglobal_lock_query = _awaitable(_global_lock_query)

    # --- requests from the TC --------------------------------------------------------------------------

    async def handle(self, request: m.Message) -> m.Message | None:
        """The transport's branch handler: BranchCommit / BranchRollback / UndoLogDelete."""
        phase = _PHASES.get(type(request))
        if phase is None:
            if isinstance(request, m.UndoLogDeleteRequest):
                await self._undo_log_delete(request)
            return None
        assert isinstance(request, m.AbstractBranchEndRequest)
        branch = BranchRequest(
            request.xid or "",
            request.branch_id,
            request.resource_id or "",
            request.branch_type,
            request.application_data,
        )
        status = await self._phase_two(phase, branch)
        return phase.response(xid=branch.xid, branch_id=branch.branch_id, branch_status=status)

    async def _phase_two(self, phase: _Phase, branch: BranchRequest) -> BranchStatus:
        where = {"xid": branch.xid}
        resource = self.registry.get(branch.branch_type, branch.resource_id)
        if resource is None:
            log.warning("xid=%s branch=%d %s: no %s resource %r in this process (another process of this "
                        "application may own it, or it is declared later); answering %s",
                        branch.xid, branch.branch_id, phase.name, branch.branch_type.name, branch.resource_id,
                        phase.retryable.name, extra=where)  # fmt: skip
            return phase.retryable
        try:
            result = await self._call(getattr(resource, phase.method), branch)
        except Exception as exc:
            final = isinstance(exc, (UnretryableError, *getattr(resource, "unretryable", ())))
            status = phase.unretryable if final else phase.retryable
            log.error("xid=%s branch=%d %s of %s failed (%s: %s); answering %s", branch.xid, branch.branch_id,
                      phase.name, branch.resource_id, type(exc).__name__, exc, status.name,
                      exc_info=not final, extra=where)  # fmt: skip
            return status
        answer = _status_of(phase, result)
        if answer is None:
            log.error("xid=%s branch=%d %s of %s returned %r, which is not an answer to a %s; answering %s",
                      branch.xid, branch.branch_id, phase.name, branch.resource_id, result, phase.name,
                      phase.retryable.name, extra=where)  # fmt: skip
            return phase.retryable
        level = logging.DEBUG if answer is phase.done else logging.WARNING
        log.log(level, "xid=%s branch=%d %s of %s: %s", branch.xid, branch.branch_id, phase.name,
                branch.resource_id, answer.name, extra=where)  # fmt: skip
        return answer

    async def _call(self, method: Callable[[BranchRequest], Any], branch: BranchRequest) -> Any:
        if inspect.iscoroutinefunction(method):
            return await method(branch)
        # Phase-two work may block (databases, services): a worker thread, never the loop.
        result = await asyncio.get_running_loop().run_in_executor(self._worker_pool(), method, branch)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _undo_log_delete(self, request: m.UndoLogDeleteRequest) -> None:
        resource = self.registry.get(request.branch_type, request.resource_id or "")
        delete: Callable[[int], Any] | None = getattr(resource, "delete_undo_logs", None)
        if delete is None:
            return  # a broadcast to every RM: most have no undo log for it
        try:
            if inspect.iscoroutinefunction(delete):
                await delete(request.save_days)
            else:
                await asyncio.get_running_loop().run_in_executor(self._worker_pool(), delete, request.save_days)
        except Exception:
            log.exception("deleting old undo logs of %s failed", request.resource_id)

    def _worker_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="pyseata-rm")
            return self._pool


def _checked(response: m.Message, expected: type[R], action: str, xid: str | None) -> R:
    if not isinstance(response, expected):
        raise BranchError(f"the TC answered '{action}' of {xid} with {type(response).__name__}", xid=xid)
    if response.result_code == ResultCode.Failed:
        code = response.transaction_exception_code
        cls = _ERRORS.get(code, BranchError)
        raise cls(f"the TC refused to {action} of {xid}: {response.msg} ({code.name})", code, xid=xid)
    return response
