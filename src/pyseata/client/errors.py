"""What the TM raises, and the tables from a TC's answer to it.

Every class derives from :class:`~pyseata.errors.TransactionError` (so from
:class:`~pyseata.errors.PyseataError`), carries ``.xid`` and ``.status`` (the TC's answer, when
there was one), and says in its message what the caller should do next::

    try:
        place_order()
    except TimeoutRollbackedError:      # nothing was kept: try again, perhaps with a longer timeout
        ...
    except CommitHeuristicError:        # outcome unknown: check before retrying
        ...

A business exception raised inside a global transaction is never replaced by one of these: it is
re-raised after the rollback, with a note (PEP 678) if the rollback itself went wrong.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TypeAlias

from pyseata.errors import PyseataError, TransactionError
from pyseata.protocol.enums import GlobalStatus
from pyseata.protocol.enums import TransactionExceptionCode as Code

__all__ = [
    "COMMIT_OUTCOMES",
    "ROLLBACK_OUTCOMES",
    "ClientNotStartedError",
    "CommitFailedError",
    "CommitHeuristicError",
    "OutcomeTable",
    "PropagationError",
    "RollbackFailedError",
    "RollbackedByTcError",
    "TcUnreachableError",
    "TimeoutRollbackedError",
    "TransactionOutcomeError",
    "outcome_error",
]

G = GlobalStatus


class ClientNotStartedError(PyseataError, RuntimeError):
    """The client runtime is needed but :func:`pyseata.client.init` was not called (or was shut down)."""


class PropagationError(TransactionError):
    """The propagation kind forbids the current situation (NEVER inside, MANDATORY outside a
    global transaction), or a participant tried to end a transaction it did not begin."""


class TcUnreachableError(TransactionError):
    """No TC answered, after every retry; ``__cause__`` is the last transport error."""


class TransactionOutcomeError(TransactionError):
    """The TC decided something other than what the TM asked for; ``.status`` is its answer."""

    def __init__(self, message: str, *, xid: str | None, status: GlobalStatus | None) -> None:
        super().__init__(message, Code.Unknown, xid=xid)
        self.status = status


class RollbackedByTcError(TransactionOutcomeError):
    """Commit asked, but the transaction was (being) rolled back: nothing it did is kept."""


class TimeoutRollbackedError(RollbackedByTcError):
    """The transaction outlived its timeout and was rolled back (by the TC, or by the TM, which
    checks the timeout itself before asking to commit, as Seata does)."""


class CommitHeuristicError(TransactionOutcomeError):
    """The TC no longer knows the transaction (Finished): committed or rolled back, nobody can say here."""


class CommitFailedError(TransactionOutcomeError):
    """A branch refused to commit for good: the transaction waits for an operator."""


class RollbackFailedError(TransactionOutcomeError):
    """A branch could not be rolled back for good (AT: the data changed since): it waits for an operator."""


#: status -> the error (class, message template) the answer calls for; None: what was asked for.
OutcomeTable: TypeAlias = MappingProxyType[GlobalStatus, tuple[type[TransactionOutcomeError], str] | None]

# --- answers to commit ------------------------------------------------------------------------

_ROLLED_BACK = (
    "the TC rolled {xid} back instead of committing it (status {status}): nothing the transaction "
    "did is kept. Someone rolled it back (an operator, or a TM that reloaded this XID); run the "
    "business operation again if it is still wanted."
)
_TIMED_OUT = (
    "global transaction {xid} outlived its timeout and the TC rolled it back (status {status}): "
    "nothing it did is kept. Run it again, with a larger timeout= if it legitimately takes this long."
)
_HEURISTIC = (
    "the TC no longer knows {xid} (status {status}) when asked to commit: it ended already, maybe "
    "rolled back after a timeout, maybe committed by an earlier attempt whose answer was lost. "
    "Check the data of its branches before running it again."
)
_COMMIT_FAILED = (
    "a branch of {xid} refused to commit and will not be retried (status {status}): the transaction "
    "is left for an operator. The TC's log and console name the branch; its data may be half-committed."
)
_UNEXPECTED = (
    "the TC answered commit of {xid} with status {status}, which no TC should send for a commit; "
    "treat the outcome as unknown and check the TC's log."
)

# None: the commit decision stands (phase two may still be running: the TC finishes it).
# Seata treats "others" as success; here every status has a row, so nothing is success by accident.
COMMIT_OUTCOMES: OutcomeTable = MappingProxyType(
    {
        G.Committed: None,
        G.AsyncCommitting: None,
        G.Committing: None,
        G.CommitRetrying: None,
        G.StopCommitOrCommitRetry: None,  # decided to commit; an operator paused phase two
        G.TimeoutRollbacking: (TimeoutRollbackedError, _TIMED_OUT),
        G.TimeoutRollbackRetrying: (TimeoutRollbackedError, _TIMED_OUT),
        G.TimeoutRollbacked: (TimeoutRollbackedError, _TIMED_OUT),
        G.TimeoutRollbackFailed: (TimeoutRollbackedError, _TIMED_OUT),
        G.Rollbacking: (RollbackedByTcError, _ROLLED_BACK),
        G.RollbackRetrying: (RollbackedByTcError, _ROLLED_BACK),
        G.Rollbacked: (RollbackedByTcError, _ROLLED_BACK),
        G.RollbackFailed: (RollbackedByTcError, _ROLLED_BACK),
        G.RollbackRetryTimeout: (RollbackedByTcError, _ROLLED_BACK),
        G.StopRollbackOrRollbackRetry: (RollbackedByTcError, _ROLLED_BACK),
        G.Finished: (CommitHeuristicError, _HEURISTIC),
        G.Deleting: (CommitHeuristicError, _HEURISTIC),
        G.CommitFailed: (CommitFailedError, _COMMIT_FAILED),
        G.CommitRetryTimeout: (CommitFailedError, _COMMIT_FAILED),
        G.UnKnown: (TransactionOutcomeError, _UNEXPECTED),
        G.Begin: (TransactionOutcomeError, _UNEXPECTED),
    }
)

# --- answers to rollback ----------------------------------------------------------------------

_ROLLBACK_FAILED = (
    "a branch of {xid} could not be rolled back and will not be retried (status {status}): the "
    "transaction keeps its locks and waits for an operator (AT: its rows changed since phase one)."
)
_ROLLBACK_UNEXPECTED = (
    "the TC answered rollback of {xid} with status {status}: it was committed (or decided to commit) "
    "before the rollback arrived. Check the data of its branches."
)

# None: rolled back, or being rolled back by the TC's retry loop (Seata: RollbackDone / Rollbacking).
ROLLBACK_OUTCOMES: OutcomeTable = MappingProxyType(
    {
        G.Rollbacked: None,
        G.TimeoutRollbacked: None,
        G.Finished: None,  # already gone: Seata counts it as RollbackDone
        G.Rollbacking: None,
        G.RollbackRetrying: None,
        G.TimeoutRollbacking: None,
        G.TimeoutRollbackRetrying: None,
        G.StopRollbackOrRollbackRetry: None,
        G.Deleting: None,
        G.RollbackFailed: (RollbackFailedError, _ROLLBACK_FAILED),
        G.TimeoutRollbackFailed: (RollbackFailedError, _ROLLBACK_FAILED),
        G.RollbackRetryTimeout: (RollbackFailedError, _ROLLBACK_FAILED),
        G.Committed: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
        G.AsyncCommitting: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
        G.Committing: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
        G.CommitRetrying: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
        G.CommitFailed: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
        G.CommitRetryTimeout: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
        G.StopCommitOrCommitRetry: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
        G.UnKnown: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
        G.Begin: (TransactionOutcomeError, _ROLLBACK_UNEXPECTED),
    }
)


def outcome_error(table: OutcomeTable, status: GlobalStatus, xid: str) -> TransactionOutcomeError | None:
    """The error ``table`` prescribes for the TC's answer ``status``, or None when all is well."""
    row = table[status]
    if row is None:
        return None
    cls, template = row
    return cls(template.format(xid=xid, status=status.name), xid=xid, status=status)
