"""TCC actions: a try that registers a branch, and the confirm / cancel the TC calls later.

As a decorator::

    fence = Fence(lambda: psycopg.connect(DSN), "postgresql")

    @tcc.action(name="reserve-stock", fence=fence)
    def reserve(sku: str, qty: int) -> None:                 # the try, called as usual
        conn = tcc.action_context().connection              # the fence's local transaction
        conn.execute("UPDATE stock SET free = free - %s, held = held + %s WHERE sku = %s", (qty, qty, sku))

    @reserve.confirm
    def _(ctx: tcc.BusinessActionContext) -> None:
        ctx.connection.execute("UPDATE stock SET held = held - %s WHERE sku = %s", (ctx["qty"], ctx["sku"]))

    @reserve.cancel
    def _(ctx: tcc.BusinessActionContext) -> None: ...

(or ``@tcc_action(name=..., confirm=confirm_fn, cancel=cancel_fn)``), or as a class::

    class ReserveStock(tcc.LocalTcc):
        name = "reserve-stock"
        def prepare(self, sku: str, qty: int) -> None: ...  # the try: stock.prepare("A-1", 2)
        def confirm(self, ctx: tcc.BusinessActionContext) -> None: ...
        def cancel(self, ctx: tcc.BusinessActionContext) -> None: ...

    stock = ReserveStock(fence=fence)

Inside a global transaction the try registers a TCC branch (resource id = the action's name)
whose application data carries the try's arguments, by name, and Seata's own keys
(:mod:`pyseata.tcc.context`); entries the try adds with ``action_context().add(...)`` are
reported to the TC once, when it returns (before the fence's local commit, so a failed report
undoes the try). Confirm and cancel get the rebuilt :class:`BusinessActionContext`, in this
process or in another one after a restart: declare the action at import time in every process
of the application, and :func:`pyseata.client.init` registers it with the TC.

Outside a global transaction the try just runs (with a fence: in a plain local transaction), as
in Seata, or raises :class:`~pyseata.client.errors.PropagationError` with
``require_transaction=True``. A try, confirm or cancel may be ``async def`` (the try runs on the
caller's loop, confirm and cancel on the client runtime's), except with a fence, whose DB-API
connections are blocking.

Confirm and cancel return None/True (done), False (retry later) or a BranchStatus; an exception
means "retry later" too, unless it is an :class:`~pyseata.client.rm.UnretryableError` or one of
``unretryable``. Without a fence they must be idempotent and handle a cancel without a try
themselves; with one, the fence does (:mod:`pyseata.tcc.fence`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, ParamSpec, TypeAlias, TypeVar, cast, overload

from pyseata.client import context
from pyseata.client.errors import PropagationError
from pyseata.client.rm import BranchRequest, PhaseTwoResult, ResourceManager, register_resource, unregister_resource
from pyseata.client.runtime import get_resource_manager
from pyseata.protocol.enums import BranchStatus, BranchType
from pyseata.tcc import context as tcc_context
from pyseata.tcc.context import BusinessActionContext, to_json
from pyseata.tcc.fence import Fence

__all__ = ["LocalTcc", "PhaseFunction", "TccAction", "action", "tcc_action"]

log = logging.getLogger("pyseata.tcc")

P = ParamSpec("P")
R = TypeVar("R")
PhaseFunction: TypeAlias = Callable[[BusinessActionContext], PhaseTwoResult | Awaitable[PhaseTwoResult]]

_HOST = socket.gethostname()


class TccAction(Generic[P, R]):
    """One TCC action: calling it runs the try; the RM calls :meth:`branch_commit` /
    :meth:`branch_rollback`, which run the confirm / cancel."""

    branch_type = BranchType.TCC
    __wrapped__: Callable[P, R]  # the try as written (set by functools.update_wrapper)

    def __init__(
        self,
        prepare: Callable[P, R],
        *,
        name: str,
        confirm: PhaseFunction | None = None,
        cancel: PhaseFunction | None = None,
        fence: Fence | None = None,
        params: Sequence[str] | None = None,
        require_transaction: bool = False,
        unretryable: tuple[type[BaseException], ...] = (),
        register: bool = True,
    ) -> None:
        self.name = name
        self.fence = fence
        self.require_transaction = require_transaction
        self.unretryable = unretryable
        self._prepare = prepare
        self._async = inspect.iscoroutinefunction(prepare)
        self._signature = inspect.signature(prepare)
        self._params = self._checked_params(params)
        self._confirm: PhaseFunction | None = None
        self._cancel: PhaseFunction | None = None
        self._check_fence(prepare, "try")
        if confirm is not None:
            self.confirm(confirm)
        if cancel is not None:
            self.cancel(cancel)
        functools.update_wrapper(self, prepare)
        if register:
            register_resource(self)

    def __repr__(self) -> str:
        return f"<TCC action {self.name!r}{' with fence' if self.fence else ''}>"

    @property
    def resource_id(self) -> str:
        return self.name

    # --- declaration -----------------------------------------------------------------------------------

    def confirm(self, fn: PhaseFunction) -> PhaseFunction:
        """Sets the confirm (phase two, commit); usable as a decorator."""
        self._check_fence(fn, "confirm")
        self._confirm = fn
        return fn

    def cancel(self, fn: PhaseFunction) -> PhaseFunction:
        """Sets the cancel (phase two, rollback); usable as a decorator."""
        self._check_fence(fn, "cancel")
        self._cancel = fn
        return fn

    def unregister(self) -> None:
        """Takes the action out of this process's resources (tests, hot reload)."""
        unregister_resource(self)

    def _check_fence(self, fn: Callable[..., Any], role: str) -> None:
        if self.fence is not None and inspect.iscoroutinefunction(fn):
            raise TypeError(f"TCC action {self.name!r}: the {role} is async, but a fence runs on blocking DB-API "
                            "connections; make it a plain function, or drop the fence")  # fmt: skip

    def _checked_params(self, params: Sequence[str] | None) -> frozenset[str] | None:
        names = set(self._signature.parameters)
        chosen = names if params is None else set(params)
        unknown = chosen - names
        if unknown:
            raise ValueError(f"TCC action {self.name!r}: params {sorted(unknown)} are not parameters of the try")
        taken = chosen & tcc_context.RESERVED_KEYS
        if taken:
            raise ValueError(f"TCC action {self.name!r}: parameter(s) {sorted(taken)} clash with Seata's context "
                             "keys; rename them or leave them out with params=[...]")  # fmt: skip
        return None if params is None else frozenset(chosen)

    # --- phase one: the try ----------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._async:
            return cast(R, self._atry(args, kwargs))
        xid = context.get_xid()
        if xid is None:
            return self._outside(args, kwargs)
        rm = get_resource_manager()
        ctx = self._context(args, kwargs)
        ctx.xid = xid
        ctx.branch_id = rm.branch_register(xid, self.name, BranchType.TCC, application_data=ctx.application_data())
        log.debug("xid=%s branch=%d TCC try of %s", xid, ctx.branch_id, self.name, extra={"xid": xid})
        with _Running(ctx):
            if self.fence is None:
                return self._run_try(rm, ctx, None, args, kwargs)
            return self.fence.prepare(xid, ctx.branch_id, self.name,
                                      lambda conn: self._run_try(rm, ctx, conn, args, kwargs))  # fmt: skip

    def _run_try(self, rm: ResourceManager, ctx: BusinessActionContext, conn: Any, args: Any, kwargs: Any) -> R:
        ctx.connection = conn
        try:
            result = self._prepare(*args, **kwargs)
            if ctx.is_updated:
                assert ctx.xid is not None and ctx.branch_id is not None
                rm.branch_report(ctx.xid, ctx.branch_id, BranchStatus.Registered, resource_id=self.name,
                                 branch_type=BranchType.TCC, application_data=ctx.application_data())  # fmt: skip
                ctx.is_updated = False
            return result
        finally:
            ctx.connection = None

    async def _atry(self, args: Any, kwargs: Any) -> Any:
        prepare = cast(Callable[..., Awaitable[Any]], self._prepare)
        xid = context.get_xid()
        if xid is None:
            self._refuse_outside()
            with _Running(self._context(args, kwargs)):
                return await prepare(*args, **kwargs)
        rm = get_resource_manager()
        ctx = self._context(args, kwargs)
        ctx.xid = xid
        ctx.branch_id = await rm.abranch_register(xid, self.name, BranchType.TCC,
                                                  application_data=ctx.application_data())  # fmt: skip
        log.debug("xid=%s branch=%d TCC try of %s", xid, ctx.branch_id, self.name, extra={"xid": xid})
        with _Running(ctx):
            result = await prepare(*args, **kwargs)
            if ctx.is_updated:
                data = ctx.application_data()
                await rm.abranch_report(xid, ctx.branch_id, BranchStatus.Registered, resource_id=self.name,
                                        branch_type=BranchType.TCC, application_data=data)  # fmt: skip
            return result

    def _outside(self, args: Any, kwargs: Any) -> R:
        self._refuse_outside()
        ctx = self._context(args, kwargs)
        with _Running(ctx):
            if self.fence is None:
                return self._prepare(*args, **kwargs)
            with self.fence.transaction() as conn:  # the same code path as inside: a connection to use
                ctx.connection = conn
                return self._prepare(*args, **kwargs)

    def _refuse_outside(self) -> None:
        if self.require_transaction:
            raise PropagationError(f"TCC action {self.name!r} requires a global transaction and none is bound: "
                                   "call it inside global_transaction(...)")  # fmt: skip

    def _context(self, args: Any, kwargs: Any) -> BusinessActionContext:
        """The context a try starts with: its arguments by name, and Seata's keys."""
        if self._confirm is None or self._cancel is None:
            missing = "confirm" if self._confirm is None else "cancel"
            # A branch without one could never end: refuse before registering it.
            raise TypeError(f"TCC action {self.name!r} has no {missing}: declare it with @{self.name}.{missing} "
                            f"or {missing}=...")  # fmt: skip
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = {k: v for k, v in bound.arguments.items() if self._params is None or k in self._params}
        for key, value in values.items():
            to_json(value, what=f"argument {key!r} of TCC action {self.name!r} (or leave it out with params=[...])")
        values.update({
            tcc_context.ACTION_START_TIME: int(time.time() * 1000),
            tcc_context.PREPARE_METHOD: getattr(self._prepare, "__name__", "prepare"),
            tcc_context.COMMIT_METHOD: getattr(self._confirm, "__name__", "commit"),
            tcc_context.ROLLBACK_METHOD: getattr(self._cancel, "__name__", "rollback"),
            tcc_context.ACTION_NAME: self.name,
            tcc_context.USE_TCC_FENCE: self.fence is not None,
            tcc_context.HOST_NAME: _HOST,
        })  # fmt: skip
        return BusinessActionContext(self.name, values)

    # --- phase two: the resource side ------------------------------------------------------------------

    def branch_commit(self, request: BranchRequest) -> PhaseTwoResult | Awaitable[PhaseTwoResult]:
        fence = self.fence
        return self._phase_two(request, self._confirm, "confirm", fence.commit if fence else None)

    def branch_rollback(self, request: BranchRequest) -> PhaseTwoResult | Awaitable[PhaseTwoResult]:
        fence = self.fence
        return self._phase_two(request, self._cancel, "cancel", fence.rollback if fence else None)

    def _phase_two(self, request: BranchRequest, fn: PhaseFunction | None, phase: str,
                   fenced: Callable[[str, int, str, Callable[[Any], PhaseTwoResult]], PhaseTwoResult] | None,
                   ) -> PhaseTwoResult | Awaitable[PhaseTwoResult]:  # fmt: skip
        if fn is None:
            raise LookupError(f"TCC action {self.name!r} has no {phase} function in this process")
        ctx = BusinessActionContext.from_application_data(request.application_data, action_name=self.name,
                                                          xid=request.xid, branch_id=request.branch_id)  # fmt: skip
        if inspect.iscoroutinefunction(fn):
            return _arun_phase(fn, ctx)  # awaited by the RM on the runtime's loop
        if fenced is None:
            return _run_phase(fn, ctx, None)
        return fenced(request.xid, request.branch_id, self.name, lambda conn: _run_phase(fn, ctx, conn))


class _Running:
    """Makes ``ctx`` the current action context (and TCC the branch type) for a block."""

    def __init__(self, ctx: BusinessActionContext) -> None:
        self.ctx = ctx

    def __enter__(self) -> BusinessActionContext:
        self._token = tcc_context._enter(self.ctx)
        self._type = context.bind_branch_type(BranchType.TCC)
        return self.ctx

    def __exit__(self, *exc: object) -> None:
        context.unbind_branch_type(self._type)
        tcc_context._leave(self._token)


def _run_phase(fn: PhaseFunction, ctx: BusinessActionContext, conn: Any) -> PhaseTwoResult:
    ctx.connection = conn
    try:
        with _Running(ctx):
            return cast(PhaseTwoResult, fn(ctx))
    finally:
        ctx.connection = None


async def _arun_phase(fn: PhaseFunction, ctx: BusinessActionContext) -> PhaseTwoResult:
    with _Running(ctx):
        return await cast(Awaitable[PhaseTwoResult], fn(ctx))


# --- the decorator --------------------------------------------------------------------------------


@overload
def action(fn: Callable[P, R], /) -> TccAction[P, R]: ...


@overload
def action(
    *,
    name: str | None = None,
    confirm: PhaseFunction | None = None,
    cancel: PhaseFunction | None = None,
    fence: Fence | None = None,
    params: Sequence[str] | None = None,
    require_transaction: bool = False,
    unretryable: tuple[type[BaseException], ...] = (),
) -> Callable[[Callable[P, R]], TccAction[P, R]]: ...


def action(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    confirm: PhaseFunction | None = None,
    cancel: PhaseFunction | None = None,
    fence: Fence | None = None,
    params: Sequence[str] | None = None,
    require_transaction: bool = False,
    unretryable: tuple[type[BaseException], ...] = (),
) -> TccAction[P, R] | Callable[[Callable[P, R]], TccAction[P, R]]:
    """Declares a TCC action around its try (Seata's ``@TwoPhaseBusinessAction``).

    ``name`` is the resource id (default: the function's qualified name), unique in the process
    and the same in every process of the application. ``params`` limits which arguments travel
    (default: all; they must be JSON). See the module doc for the rest.
    """

    def declare(prepare: Callable[P, R]) -> TccAction[P, R]:
        return TccAction(prepare, name=name or prepare.__qualname__, confirm=confirm, cancel=cancel, fence=fence,
                         params=params, require_transaction=require_transaction, unretryable=unretryable)  # fmt: skip

    return declare if fn is None else declare(fn)


tcc_action = action


# --- the class form -------------------------------------------------------------------------------


class LocalTcc:
    """A TCC action as a class (Seata's ``@LocalTCC``): ``prepare`` (the try), ``confirm`` and
    ``cancel`` methods. Calling ``instance.prepare(...)`` runs the try as the decorator does.
    Options are class attributes, or keyword arguments of ``__init__`` (which win)."""

    name: ClassVar[str | None] = None
    fence: Fence | None = None
    params: ClassVar[Sequence[str] | None] = None
    require_transaction: ClassVar[bool] = False
    unretryable: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        prepare = cls.__dict__.get("prepare")
        if prepare is not None:
            cls.prepare = _intercepted(prepare)  # type: ignore[attr-defined]

    def __init__(self, *, name: str | None = None, fence: Fence | None = None) -> None:
        cls = type(self)
        wrapper = getattr(cls, "prepare", None)
        if wrapper is None:
            raise TypeError(f"{cls.__qualname__} has no prepare method (the try)")
        if fence is not None:
            self.fence = fence
        self.tcc: TccAction[..., Any] = TccAction(
            wrapper.__wrapped__.__get__(self), name=name or cls.name or cls.__qualname__, confirm=self.confirm,
            cancel=self.cancel, fence=self.fence, params=cls.params, require_transaction=cls.require_transaction,
            unretryable=cls.unretryable,
        )  # fmt: skip

    def confirm(self, ctx: BusinessActionContext) -> PhaseTwoResult | Awaitable[PhaseTwoResult]:
        raise NotImplementedError(f"{type(self).__qualname__}.confirm")

    def cancel(self, ctx: BusinessActionContext) -> PhaseTwoResult | Awaitable[PhaseTwoResult]:
        raise NotImplementedError(f"{type(self).__qualname__}.cancel")

    def unregister(self) -> None:
        self.tcc.unregister()


def _intercepted(prepare: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(prepare)
    def run(self: LocalTcc, *args: Any, **kwargs: Any) -> Any:
        return self.tcc(*args, **kwargs)

    return run
