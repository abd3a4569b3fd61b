"""The BusinessActionContext: what a TCC try leaves for its confirm and cancel.

It travels in the branch's application data, in the JSON shape Seata uses (BEHAVIOUR.md 4.1)::

    {"actionContext": {"sku": "A-1", "qty": 2,                 # the try's arguments, by name
                       "reservation": 17,                       # what the try added (ctx.add(...))
                       "action-start-time": 1718000000000, "sys::prepare": "reserve",
                       "sys::commit": "confirm", "sys::rollback": "cancel",
                       "actionName": "reserve-stock", "useTCCFence": true, "host-name": "shop-1"}}

The TC stores it with the branch and sends it back with BranchCommit / BranchRollback, so
confirm and cancel get the same context in any process, also after a restart.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyseata.protocol.enums import BranchType

__all__ = [
    "ACTION_CONTEXT",
    "ACTION_NAME",
    "ACTION_START_TIME",
    "COMMIT_METHOD",
    "HOST_NAME",
    "PREPARE_METHOD",
    "RESERVED_KEYS",
    "ROLLBACK_METHOD",
    "USE_TCC_FENCE",
    "BusinessActionContext",
    "action_context",
]

# Seata's keys (core/.../common/Constants.java).
ACTION_CONTEXT = "actionContext"
ACTION_START_TIME = "action-start-time"
ACTION_NAME = "actionName"
USE_TCC_FENCE = "useTCCFence"
PREPARE_METHOD = "sys::prepare"
COMMIT_METHOD = "sys::commit"
ROLLBACK_METHOD = "sys::rollback"
HOST_NAME = "host-name"
RESERVED_KEYS = frozenset({ACTION_START_TIME, ACTION_NAME, USE_TCC_FENCE, PREPARE_METHOD, COMMIT_METHOD,
                           ROLLBACK_METHOD, HOST_NAME})  # fmt: skip


@dataclass(eq=False)
class BusinessActionContext(Mapping[str, Any]):
    """One TCC branch's context. Read it as a mapping (``ctx["sku"]``, ``ctx.get("qty")``); in the
    try, :meth:`add` entries for phase two. ``connection`` is the fence's database connection
    (the local transaction the fence row is in), None without a fence; it never travels."""

    action_name: str
    action_context: dict[str, Any] = field(default_factory=dict)
    xid: str | None = None
    branch_id: int | None = None
    branch_type: BranchType = BranchType.TCC
    is_delay_report: bool = True  # entries added in the try are reported once, when it returns
    is_updated: bool = False
    connection: Any = field(default=None, repr=False)

    # --- mapping ---------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.action_context[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.action_context)

    def __len__(self) -> int:
        return len(self.action_context)

    # --- enrichment ------------------------------------------------------------------------------

    def add(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Adds entries for confirm and cancel (Seata's BusinessActionContextUtil.addContext).
        They must be JSON values; Seata's own keys cannot be replaced."""
        entries = {**(values or {}), **more}
        taken = RESERVED_KEYS.intersection(entries)
        if taken:
            raise ValueError(f"{', '.join(sorted(taken))}: reserved by the TCC action context")
        to_json(entries, what="a TCC action context entry")
        changed = {k: v for k, v in entries.items() if self.action_context.get(k, _MISSING) != v}
        if changed:
            self.action_context.update(changed)
            self.is_updated = True

    # --- application data ------------------------------------------------------------------------

    def application_data(self) -> str:
        """The branch's application data: ``{"actionContext": {...}}``."""
        return to_json({ACTION_CONTEXT: self.action_context}, what="the TCC action context")

    @classmethod
    def from_application_data(cls, data: str | None, *, action_name: str, xid: str | None = None,
                              branch_id: int | None = None) -> BusinessActionContext:  # fmt: skip
        """Rebuilds the context the try left, from what the TC sent back. Raises ValueError for
        data that is not Seata's shape (a Java RM's, or damaged)."""
        context: dict[str, Any] = {}
        if data:
            try:
                parsed = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ValueError(f"the application data of branch {branch_id} of {xid} is not JSON: {exc}") from None
            except RecursionError:
                raise ValueError(f"the application data of branch {branch_id} of {xid} is JSON nested too "
                                 "deeply to read") from None
            inner = parsed.get(ACTION_CONTEXT, {}) if isinstance(parsed, dict) else None
            if not isinstance(inner, dict):
                raise ValueError(f"the application data of branch {branch_id} of {xid} has no "
                                 f"{ACTION_CONTEXT!r} object: {data[:200]!r}")  # fmt: skip
            context = inner
        name = context.get(ACTION_NAME)
        return cls(name if isinstance(name, str) and name else action_name, context, xid, branch_id)


_MISSING = object()


def to_json(value: Any, *, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON (str, int, float, bool, None, list, dict): {exc}") from None


# --- the current context --------------------------------------------------------------------------

_current: contextvars.ContextVar[BusinessActionContext | None] = contextvars.ContextVar(
    "pyseata_tcc_action_context", default=None
)


def action_context() -> BusinessActionContext:
    """The context of the TCC try, confirm or cancel running now (raises LookupError elsewhere)."""
    ctx = _current.get()
    if ctx is None:
        raise LookupError("no TCC action is running here: action_context() works inside a try, confirm or cancel")
    return ctx


def _enter(ctx: BusinessActionContext) -> contextvars.Token[BusinessActionContext | None]:
    return _current.set(ctx)


def _leave(token: contextvars.Token[BusinessActionContext | None]) -> None:
    _current.reset(token)
