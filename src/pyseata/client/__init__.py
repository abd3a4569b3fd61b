"""The pyseata client SDK: the TM API, the RM core, the XID context and the client runtime.

::

    import pyseata.client as seata

    seata.init(application_id="shop", grouplist="127.0.0.1:8091")

    @seata.global_transaction(timeout=30)
    def purchase(order):
        stock.deduct(order)        # services called here see seata.get_xid()
        account.debit(order)       # an exception rolls everything back, then propagates

    async def purchase_async(order):
        async with seata.global_transaction(name="purchase") as tx:
            await stock.deduct(order, xid=tx.xid)

Resources (TCC actions: :mod:`pyseata.tcc`) declare themselves; ``init`` registers them with the
TC, and :mod:`pyseata.client.rm` answers the TC's phase-two requests for them.

See :mod:`pyseata.client.tm` for propagation and rollback rules, :mod:`pyseata.client.context`
for how the XID follows threads, tasks and pools, :mod:`pyseata.client.config` for settings.
"""

from pyseata.client.config import ClientConfig, load_config
from pyseata.client.context import (
    ContextExecutor,
    XidLogFilter,
    bind,
    bound,
    get_xid,
    in_global_transaction,
    resume,
    suspend,
    unbind,
    with_context,
)
from pyseata.client.errors import (
    ClientNotStartedError,
    CommitFailedError,
    CommitHeuristicError,
    PropagationError,
    RollbackedByTcError,
    RollbackFailedError,
    TcUnreachableError,
    TimeoutRollbackedError,
    TransactionOutcomeError,
)
from pyseata.client.rm import (
    BranchError,
    BranchRequest,
    LockConflictError,
    PhaseTwoResult,
    Resource,
    ResourceManager,
    ResourceRegistry,
    UnretryableError,
    register_resource,
    unregister_resource,
)
from pyseata.client.runtime import (
    ClientRuntime,
    ainit,
    ashutdown,
    get_resource_manager,
    get_runtime,
    init,
    shutdown,
)
from pyseata.client.tm import (
    GlobalTransaction,
    GlobalTransactional,
    Propagation,
    RollbackRules,
    TxRole,
    abegin,
    begin,
    current,
    global_transaction,
    reload,
)

__all__ = [
    "BranchError",
    "BranchRequest",
    "ClientConfig",
    "ClientNotStartedError",
    "ClientRuntime",
    "CommitFailedError",
    "CommitHeuristicError",
    "ContextExecutor",
    "GlobalTransaction",
    "GlobalTransactional",
    "LockConflictError",
    "PhaseTwoResult",
    "Propagation",
    "PropagationError",
    "Resource",
    "ResourceManager",
    "ResourceRegistry",
    "RollbackFailedError",
    "RollbackRules",
    "RollbackedByTcError",
    "TcUnreachableError",
    "TimeoutRollbackedError",
    "TransactionOutcomeError",
    "TxRole",
    "UnretryableError",
    "XidLogFilter",
    "abegin",
    "ainit",
    "ashutdown",
    "begin",
    "bind",
    "bound",
    "current",
    "get_resource_manager",
    "get_runtime",
    "get_xid",
    "global_transaction",
    "in_global_transaction",
    "init",
    "load_config",
    "register_resource",
    "reload",
    "resume",
    "shutdown",
    "suspend",
    "unbind",
    "unregister_resource",
    "with_context",
]
