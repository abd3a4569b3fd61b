"""The Transaction Manager: begin, commit and roll back global transactions.

As a decorator (plain functions and coroutines) or a block (``with`` / ``async with``)::

    @global_transaction
    def purchase(order): ...

    @global_transaction(name="purchase", timeout=30, no_rollback_for=InsufficientPoints)
    async def purchase(order): ...

    with global_transaction(propagation=Propagation.REQUIRES_NEW) as tx:
        audit(tx.xid)

The block that begins a transaction (the *launcher*) commits it when it ends normally and rolls it
back when it raises; the exception is then re-raised unchanged. A block that joins a transaction
already bound (the *participant*) does neither: its exception just propagates to the launcher.

Rollback rules: ``rollback_for`` / ``no_rollback_for`` take exception classes; the class closest
to the raised exception in its MRO decides. **An exception that matches no rule rolls back**, with
or without rules (Seata commits in that case when any rule is given, which surprises; BEHAVIOUR.md
10.3). An exception whose rule says "no rollback" commits, then is re-raised.

When the TC decides otherwise, a typed error from :mod:`pyseata.client.errors` says so: the
transaction timed out (:class:`TimeoutRollbackedError`, also raised when the TM itself sees the
timeout has passed before committing, after rolling back), was rolled back by someone else
(:class:`RollbackedByTcError`), is unknown to the TC (:class:`CommitHeuristicError`), failed to
commit for good (:class:`CommitFailedError`); or no TC answered after the retries
(:class:`TcUnreachableError`). Commit and rollback are retried on transport errors only: an
answer from the TC is final.

For code that cannot use a block, :func:`begin` returns a :class:`GlobalTransaction` with
``commit()``, ``rollback()``, ``status()`` (and ``acommit()``... for asyncio); it does not bind the
XID (use :func:`pyseata.client.context.bound`). :func:`reload` makes a handle for a known XID.

Each enter/exit is written once, as a generator that yields the TC calls to make (psycopg's
pattern); a synchronous and an asynchronous driver run it, so sync and async users share one logic.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import TracebackType
from typing import Any, Generic, Literal, ParamSpec, TypeAlias, TypeVar, cast, overload

from pyseata.client import context
from pyseata.client.errors import (
    COMMIT_OUTCOMES,
    ROLLBACK_OUTCOMES,
    OutcomeTable,
    PropagationError,
    TcUnreachableError,
    TimeoutRollbackedError,
    outcome_error,
)
from pyseata.client.runtime import ClientRuntime, get_runtime
from pyseata.errors import PyseataError, RpcTimeoutError, TransactionError, TransportError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import GlobalStatus, ResultCode
from pyseata.protocol.enums import TransactionExceptionCode as Code

__all__ = [
    "GlobalTransaction",
    "GlobalTransactional",
    "Propagation",
    "RollbackRules",
    "TxRole",
    "abegin",
    "begin",
    "current",
    "global_transaction",
    "reload",
]

log = logging.getLogger("pyseata.client.tm")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DEFAULT_NAME = "default"  # Seata's name for a programmatic transaction without one
# What a failed attempt to reach the TC looks like; anything else (an answer) is final.
_TRANSPORT_ERRORS = (TransportError, RpcTimeoutError, OSError, TimeoutError)


class Propagation(StrEnum):
    """How a block relates to a global transaction already bound (Seata's, BEHAVIOUR.md 7.2)."""

    REQUIRED = "REQUIRED"  # join it, or begin one
    REQUIRES_NEW = "REQUIRES_NEW"  # put it aside and begin a new one, or begin one
    NOT_SUPPORTED = "NOT_SUPPORTED"  # put it aside and run without, or run without
    SUPPORTS = "SUPPORTS"  # join it, or run without
    NEVER = "NEVER"  # refuse, or run without
    MANDATORY = "MANDATORY"  # join it, or refuse


class TxRole(StrEnum):
    LAUNCHER = "LAUNCHER"  # began it: ends it
    PARTICIPANT = "PARTICIPANT"  # joined it: never ends it


@dataclass(frozen=True, slots=True)
class _Step:
    suspend: bool = False
    begin: bool = False
    join: bool = False
    refuse: str | None = None


_JOIN, _BEGIN, _WITHOUT = _Step(join=True), _Step(begin=True), _Step()
_NEW, _SUSPEND = _Step(suspend=True, begin=True), _Step(suspend=True)
_NEVER = _Step(refuse="{name!r} has propagation NEVER but runs inside global transaction {xid}: "
                      "call it outside the transaction, or give it another propagation")  # fmt: skip
_MANDATORY = _Step(refuse="{name!r} has propagation MANDATORY but no global transaction is bound: "
                          "call it inside one, or use REQUIRED to begin one")  # fmt: skip

# propagation -> (step when a transaction is bound, step when none is)
_PLAN: dict[Propagation, tuple[_Step, _Step]] = {
    Propagation.REQUIRED: (_JOIN, _BEGIN),
    Propagation.REQUIRES_NEW: (_NEW, _BEGIN),
    Propagation.NOT_SUPPORTED: (_SUSPEND, _WITHOUT),
    Propagation.SUPPORTS: (_JOIN, _WITHOUT),
    Propagation.NEVER: (_NEVER, _WITHOUT),
    Propagation.MANDATORY: (_JOIN, _MANDATORY),
}


# --- rollback rules -----------------------------------------------------------------------------

ExceptionTypes: TypeAlias = type[BaseException] | tuple[type[BaseException], ...]


def _classes(value: ExceptionTypes, name: str) -> frozenset[type[BaseException]]:
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"{name} takes exception classes, not {item!r}")
    return frozenset(items)


@dataclass(frozen=True, slots=True)
class RollbackRules:
    """Which exceptions roll back: the closest rule in the exception's MRO wins; no rule: roll back."""

    rollback_for: frozenset[type[BaseException]] = frozenset()
    no_rollback_for: frozenset[type[BaseException]] = frozenset()

    @classmethod
    def of(cls, rollback_for: ExceptionTypes = (), no_rollback_for: ExceptionTypes = ()) -> RollbackRules:
        rules = cls(_classes(rollback_for, "rollback_for"), _classes(no_rollback_for, "no_rollback_for"))
        both = rules.rollback_for & rules.no_rollback_for
        if both:
            names = ", ".join(sorted(c.__name__ for c in both))
            raise ValueError(f"{names} cannot be in both rollback_for and no_rollback_for")
        return rules

    def rolls_back(self, exc: BaseException) -> bool:
        for cls in type(exc).__mro__:
            if cls in self.no_rollback_for:
                return False
            if cls in self.rollback_for:
                return True
        return True  # explicit and safe: an exception nobody foresaw undoes the transaction


# --- one global transaction ---------------------------------------------------------------------


@dataclass(eq=False)
class GlobalTransaction:
    """A handle on one global transaction. ``commit``/``rollback``/``status`` block; the ``a``-prefixed
    twins are awaitable. Only the launcher may end it."""

    xid: str
    role: TxRole = TxRole.LAUNCHER
    name: str | None = None
    timeout: float | None = None  # seconds; None: unknown (a reloaded or joined transaction)
    began_at: float | None = None  # time.monotonic() just before begin was sent
    runtime: ClientRuntime | None = field(default=None, repr=False)
    ended: bool = field(default=False, repr=False)  # commit or rollback was sent

    @property
    def elapsed(self) -> float | None:
        return None if self.began_at is None else time.monotonic() - self.began_at

    def expired(self) -> bool:
        """Has the timeout passed (as seen from here, a little before the TC sees it)?"""
        elapsed = self.elapsed
        return self.timeout is not None and elapsed is not None and elapsed > self.timeout

    def commit(self) -> GlobalStatus:
        """Commits; returns the TC's answer, or raises the typed error for an answer that is not a commit."""
        self._launcher_only("commit")
        return self._runtime().run(self._commit())

    def rollback(self) -> GlobalStatus:
        """Rolls back; returns the TC's answer (Rollbacked, or Rollbacking while it retries)."""
        self._launcher_only("roll back")
        return self._runtime().run(self._rollback())

    def status(self) -> GlobalStatus:
        """The TC's status of the transaction; Finished once it has ended (or if it never existed)."""
        return self._runtime().run(self._status())

    async def acommit(self) -> GlobalStatus:
        self._launcher_only("commit")
        return await self._runtime().arun(self._commit())

    async def arollback(self) -> GlobalStatus:
        self._launcher_only("roll back")
        return await self._runtime().arun(self._rollback())

    async def astatus(self) -> GlobalStatus:
        return await self._runtime().arun(self._status())

    # --- the TC calls (coroutines on the runtime's loop) ---------------------------------------------

    async def _commit(self) -> GlobalStatus:
        self.ended = True
        if self.expired():
            raise await self._rollback_expired()
        status = await self._send(m.GlobalCommitRequest, "commit", self._runtime().config.commit_retry_count)
        return self._outcome(COMMIT_OUTCOMES, status, "commit", "committed", logging.WARNING)

    async def _rollback(self) -> GlobalStatus:
        self.ended = True
        status = await self._send(m.GlobalRollbackRequest, "roll back", self._runtime().config.rollback_retry_count)
        return self._outcome(ROLLBACK_OUTCOMES, status, "rollback", "rolled back", logging.ERROR)

    def _outcome(self, table: OutcomeTable, status: GlobalStatus, asked: str, done: str, level: int) -> GlobalStatus:
        """``status`` when ``table`` says it is what was ``asked`` for; else logs it at ``level`` and raises."""
        error = outcome_error(table, status, self.xid)
        if error is not None:
            log.log(level, "xid=%s %s answered %s", self.xid, asked, status.name)
            raise error
        log.info("xid=%s %s (%s)", self.xid, done, status.name)
        return status

    async def _status(self) -> GlobalStatus:
        return await self._send(m.GlobalStatusRequest, "get the status of", self._runtime().config.commit_retry_count)

    async def _rollback_expired(self) -> TimeoutRollbackedError:
        # Seata 1.9: committing now would only hear TimeoutRollbacking; roll back at once instead.
        elapsed, timeout = self.elapsed or 0.0, self.timeout or 0.0
        log.warning("xid=%s ran %.3f s, past its timeout of %g s: rolling back instead of committing",
                    self.xid, elapsed, timeout)  # fmt: skip
        error = TimeoutRollbackedError(
            f"global transaction {self.xid} ({self.name!r}) ran {elapsed:.3f} s, past its timeout of "
            f"{timeout:g} s, so it was rolled back instead of committed: nothing it did is kept. Run it "
            f"again, with a larger timeout= if it legitimately takes this long.",
            xid=self.xid,
            status=None,
        )
        try:
            error.status = await self._rollback()
        except PyseataError as exc:
            error.add_note(f"the rollback did not go through ({exc}); the TC rolls it back by itself, "
                           "as its own timeout check sees it too")  # fmt: skip
        return error

    async def _send(self, request: type[m.AbstractGlobalEndRequest], action: str, attempts: int) -> GlobalStatus:
        runtime = self._runtime()
        client, xid = runtime.client, self.xid
        last: BaseException | None = None
        attempt = 0
        while attempt < attempts and not (attempt and client.closed):
            attempt += 1
            try:
                response = await client.request(request(xid=xid), xid=xid)
            except _TRANSPORT_ERRORS as exc:
                last = exc
                log.warning("xid=%s %s: attempt %d of %d failed: %s", xid, action, attempt, attempts, exc)
                if attempt < attempts:
                    await asyncio.sleep(runtime.config.retry_interval)
                continue
            return _global_status(response, action, xid)
        raise TcUnreachableError(
            f"could not {action} global transaction {xid}: no TC answered in {attempt} attempt(s) (last: {last}). "
            f"{_UNREACHABLE_HINT[action]} Check that the TC runs and that grouplist "
            f"({', '.join(map(str, client.config.tc_addresses()))}) reaches it.",
            Code.IO,
            xid=xid,
        ) from last

    def _runtime(self) -> ClientRuntime:
        return self.runtime if self.runtime is not None else get_runtime()

    def _launcher_only(self, action: str) -> None:
        if self.role is not TxRole.LAUNCHER:
            raise PropagationError(
                f"cannot {action} global transaction {self.xid}: this code joined it as a participant, "
                "and only the code that began it ends it",
                xid=self.xid,
            )


_UNREACHABLE_HINT = {
    "commit": "Its outcome is unknown: unless a commit got through, the TC rolls it back when its timeout passes.",
    "roll back": "The TC rolls it back by itself when its timeout passes.",
    "get the status of": "Its status is unknown here.",
}


def _global_status(response: m.Message, action: str, xid: str) -> GlobalStatus:
    if not isinstance(response, m.AbstractGlobalEndResponse):
        raise TransactionError(f"the TC answered '{action}' of {xid} with {type(response).__name__}", xid=xid)
    if response.result_code == ResultCode.Failed:
        raise TransactionError(f"the TC refused to {action} {xid}: {response.msg}",
                               response.transaction_exception_code, xid=xid)  # fmt: skip
    return response.global_status


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


async def _begin(runtime: ClientRuntime, name: str, timeout: float) -> GlobalTransaction:
    began_at = time.monotonic()
    try:
        response = await runtime.client.request(m.GlobalBeginRequest(timeout=_ms(timeout), transaction_name=name))
    except _TRANSPORT_ERRORS as exc:
        addresses = ", ".join(map(str, runtime.client.config.tc_addresses()))
        raise TcUnreachableError(
            f"could not begin global transaction {name!r}: no TC answered ({exc}). Nothing ran; should the TC "
            f"have begun it after all, it rolls back by itself at its timeout. Check that the TC runs and that "
            f"grouplist ({addresses}) reaches it.",
            Code.BeginFailed,
        ) from exc
    if not isinstance(response, m.GlobalBeginResponse) or response.result_code == ResultCode.Failed or not response.xid:
        code = getattr(response, "transaction_exception_code", Code.BeginFailed)
        raise TransactionError(f"the TC refused to begin {name!r}: {getattr(response, 'msg', response)}", code)
    tx = GlobalTransaction(response.xid, TxRole.LAUNCHER, name, timeout, began_at, runtime)
    log.info("xid=%s begun: %r, timeout %g s", tx.xid, name, timeout)
    return tx


def begin(
    name: str | None = None, timeout: float | None = None, *, runtime: ClientRuntime | None = None
) -> GlobalTransaction:
    """Begins a global transaction and returns its handle (the XID is not bound: see module doc)."""
    runtime = runtime or get_runtime()
    return runtime.run(_begin(runtime, name or DEFAULT_NAME, _timeout(timeout, runtime)))


async def abegin(
    name: str | None = None, timeout: float | None = None, *, runtime: ClientRuntime | None = None
) -> GlobalTransaction:
    runtime = runtime or get_runtime()
    return await runtime.arun(_begin(runtime, name or DEFAULT_NAME, _timeout(timeout, runtime)))


def reload(xid: str, *, runtime: ClientRuntime | None = None) -> GlobalTransaction:
    """A launcher's handle on a transaction begun elsewhere (Seata's GlobalTransactionContext.reload),
    e.g. to finish one after a crash. Its timeout is unknown here, so commit does not check it."""
    if not isinstance(xid, str) or not xid:
        raise ValueError(f"an XID must be a non-empty string, not {xid!r}")
    return GlobalTransaction(xid, TxRole.LAUNCHER, runtime=runtime)


def current() -> GlobalTransaction | None:
    """A participant's handle on the transaction bound here, or None."""
    xid = context.get_xid()
    return None if xid is None else GlobalTransaction(xid, TxRole.PARTICIPANT)


def _timeout(timeout: float | None, runtime: ClientRuntime) -> float:
    value = runtime.config.default_timeout if timeout is None else timeout
    _check_timeout(value)
    return value


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds (or None for the configured default), not {timeout!r}")


# --- one entry into a block: written once, driven sync or async -----------------------------------

_Call: TypeAlias = tuple[ClientRuntime, Coroutine[Any, Any, Any]]
_Flow: TypeAlias = Generator[_Call, Any, T]


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    timeout: float | None
    propagation: Propagation
    rules: RollbackRules
    runtime: ClientRuntime | None


class _Scope:
    """What one entry into a block did (began? joined? suspended?), so that its exit undoes it."""

    __slots__ = ("_held", "_token", "spec", "tx")

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.tx: GlobalTransaction | None = None
        self._token: Any = None
        self._held: context.Suspended | None = None

    def enter(self) -> _Flow[GlobalTransaction | None]:
        spec, xid = self.spec, context.get_xid()
        step = _PLAN[spec.propagation][0 if xid is not None else 1]
        if step.refuse is not None:
            raise PropagationError(step.refuse.format(name=spec.name, xid=xid), xid=xid)
        if step.join and xid is not None:
            log.debug("xid=%s %r joins as participant", xid, spec.name)
            self.tx = GlobalTransaction(xid, TxRole.PARTICIPANT, spec.name, runtime=spec.runtime)
            return self.tx
        if step.suspend:
            self._held = context.suspend()
            log.debug("xid=%s suspended for %r (%s)", xid, spec.name, spec.propagation)
        if not step.begin:
            return None
        try:
            runtime = spec.runtime or get_runtime()
            tx: GlobalTransaction = yield runtime, _begin(runtime, spec.name, _timeout(spec.timeout, runtime))
        except BaseException:
            self._restore()
            raise
        self.tx = tx
        self._token = context.bind(tx.xid)
        return tx

    def exit(self, exc: BaseException | None) -> _Flow[None]:
        tx = self.tx
        try:
            if tx is None or tx.role is not TxRole.LAUNCHER or tx.ended:
                return
            runtime = tx._runtime()
            if exc is not None and self.spec.rules.rolls_back(exc):
                log.info("xid=%s rolling back: %s raised %s", tx.xid, self.spec.name, type(exc).__name__)
                try:
                    yield runtime, tx._rollback()
                except PyseataError as error:
                    # The business exception stays the one raised; what went wrong rides along.
                    log.error("xid=%s rollback after %s failed: %s", tx.xid, type(exc).__name__, error)
                    exc.add_note(f"pyseata: global transaction {tx.xid} was not rolled back cleanly: {error}")
                return
            if exc is not None:
                log.info("xid=%s committing despite %s (no_rollback_for)", tx.xid, type(exc).__name__)
            yield runtime, tx._commit()
        finally:
            self._restore()

    def _restore(self) -> None:
        if self._token is not None:
            context.unbind(self._token)
            self._token = None
        if self._held is not None:
            context.resume(self._held)
            self._held = None


def _drive(flow: _Flow[T]) -> T:
    """Runs ``flow`` for a synchronous caller: each TC call blocks on the runtime's loop."""
    try:
        runtime, call = next(flow)
        while True:
            try:
                result = runtime.run(call)
            except BaseException as exc:
                runtime, call = flow.throw(exc)
            else:
                runtime, call = flow.send(result)
    except StopIteration as stop:
        return cast(T, stop.value)


async def _adrive(flow: _Flow[T]) -> T:
    """Runs ``flow`` for an asyncio caller: each TC call is awaited, the caller's loop stays free."""
    try:
        runtime, call = next(flow)
        while True:
            try:
                result = await runtime.arun(call)
            except BaseException as exc:
                runtime, call = flow.throw(exc)
            else:
                runtime, call = flow.send(result)
    except StopIteration as stop:
        return cast(T, stop.value)


# --- the public decorator / context manager ----------------------------------------------------


# What ``with`` gives: propagation kinds that always run in a transaction give its handle.
TxT_co = TypeVar("TxT_co", covariant=True)
_Begins: TypeAlias = Literal[
    Propagation.REQUIRED, Propagation.REQUIRES_NEW, Propagation.MANDATORY, "REQUIRED", "REQUIRES_NEW", "MANDATORY"
]


class GlobalTransactional(Generic[TxT_co]):
    """What :func:`global_transaction` returns: a decorator, and a (sync or async) context manager.

    As a context manager, one object runs one block at a time; create one per block
    (``with global_transaction(...)``). As a decorator, every call gets a block of its own.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        timeout: float | None = None,
        propagation: Propagation | str = Propagation.REQUIRED,
        rollback_for: ExceptionTypes = (),
        no_rollback_for: ExceptionTypes = (),
        runtime: ClientRuntime | None = None,
    ) -> None:
        _check_timeout(timeout)
        try:
            kind = Propagation(propagation)
        except ValueError:
            raise ValueError(f"propagation must be one of {', '.join(Propagation)}, not {propagation!r}") from None
        rules = RollbackRules.of(rollback_for, no_rollback_for)
        self.spec = _Spec(name or DEFAULT_NAME, timeout, kind, rules, runtime)
        self._named = name is not None
        self._scope: _Scope | None = None

    # --- decorator ---------------------------------------------------------------------------------

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"{fn.__qualname__} is a generator function: the transaction would end before "
                            "it runs; decorate the function that does the work")  # fmt: skip
        spec = self.spec if self._named else replace(self.spec, name=fn.__qualname__)
        if inspect.iscoroutinefunction(fn):
            return cast(Callable[P, R], _async_wrapper(spec, fn))
        return _sync_wrapper(spec, fn)

    # --- context manager ---------------------------------------------------------------------------

    def __enter__(self) -> TxT_co:
        return cast(TxT_co, _drive(self._open().enter()))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        _drive(self._close().exit(exc))
        return False

    async def __aenter__(self) -> TxT_co:
        return cast(TxT_co, await _adrive(self._open().enter()))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        await _adrive(self._close().exit(exc))
        return False

    def _open(self) -> _Scope:
        if self._scope is not None:
            raise RuntimeError("this global_transaction(...) block is already running; "
                               "create one object per block, or use it as a decorator")  # fmt: skip
        self._scope = _Scope(self.spec)
        return self._scope

    def _close(self) -> _Scope:
        scope, self._scope = self._scope, None
        if scope is None:
            raise RuntimeError("__exit__ without __enter__")
        return scope


def _sync_wrapper(spec: _Spec, fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        scope = _Scope(spec)
        _drive(scope.enter())
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _drive(scope.exit(exc))
            raise
        _drive(scope.exit(None))
        return result

    return run


def _async_wrapper(spec: _Spec, fn: Callable[P, Any]) -> Callable[P, Any]:
    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> Any:
        scope = _Scope(spec)
        await _adrive(scope.enter())
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await _adrive(scope.exit(exc))
            raise
        await _adrive(scope.exit(None))
        return result

    return run


@overload
def global_transaction(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def global_transaction(
    *,
    name: str | None = None,
    timeout: float | None = None,
    propagation: _Begins = Propagation.REQUIRED,
    rollback_for: ExceptionTypes = (),
    no_rollback_for: ExceptionTypes = (),
    runtime: ClientRuntime | None = None,
) -> GlobalTransactional[GlobalTransaction]: ...


@overload
def global_transaction(
    *,
    name: str | None = None,
    timeout: float | None = None,
    propagation: Propagation | str,
    rollback_for: ExceptionTypes = (),
    no_rollback_for: ExceptionTypes = (),
    runtime: ClientRuntime | None = None,
) -> GlobalTransactional[GlobalTransaction | None]: ...


def global_transaction(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | None = None,
    propagation: Propagation | str = Propagation.REQUIRED,
    rollback_for: ExceptionTypes = (),
    no_rollback_for: ExceptionTypes = (),
    runtime: ClientRuntime | None = None,
) -> Callable[P, R] | GlobalTransactional[GlobalTransaction | None]:
    """A global transaction around a function or a block (Seata's ``@GlobalTransactional``).

    The block gets the transaction's handle (None where the propagation kind runs it without
    one). ``name`` defaults to the function's qualified name (``"default"`` for a block); ``timeout`` is
    in seconds (default: ``ClientConfig.default_timeout``, 60 s); ``propagation`` is a
    :class:`Propagation`; ``rollback_for`` / ``no_rollback_for`` are exception classes (see the
    module doc); ``runtime`` defaults to the process's (:func:`pyseata.client.init`).
    """
    tm: GlobalTransactional[GlobalTransaction | None] = GlobalTransactional(
        name=name,
        timeout=timeout,
        propagation=propagation,
        rollback_for=rollback_for,
        no_rollback_for=no_rollback_for,
        runtime=runtime,
    )
    return tm if fn is None else tm(fn)
