"""TCC mode: two-phase actions (try / confirm / cancel) and the fence that makes them safe.

::

    from pyseata import tcc

    fence = tcc.Fence(lambda: sqlite3.connect("shop.db"), "sqlite")

    @tcc.action(name="reserve-stock", fence=fence)
    def reserve(sku: str, qty: int) -> None: ...       # the try

    @reserve.confirm
    def _(ctx: tcc.BusinessActionContext) -> None: ...

    @reserve.cancel
    def _(ctx: tcc.BusinessActionContext) -> None: ...

See :mod:`pyseata.tcc.action` for actions (decorator and class), :mod:`pyseata.tcc.context` for
the action context and its JSON, :mod:`pyseata.tcc.fence` for the fence table and algorithm.
"""

from pyseata.tcc.action import LocalTcc, PhaseFunction, TccAction, action, tcc_action
from pyseata.tcc.context import BusinessActionContext, action_context
from pyseata.tcc.fence import (
    DIALECTS,
    Dialect,
    Fence,
    FenceError,
    FenceRaceError,
    FenceRowMissingError,
    FenceStateError,
    FenceStatus,
    TryRefusedError,
)

__all__ = [
    "DIALECTS",
    "BusinessActionContext",
    "Dialect",
    "Fence",
    "FenceError",
    "FenceRaceError",
    "FenceRowMissingError",
    "FenceStateError",
    "FenceStatus",
    "LocalTcc",
    "PhaseFunction",
    "TccAction",
    "TryRefusedError",
    "action",
    "action_context",
    "tcc_action",
]
