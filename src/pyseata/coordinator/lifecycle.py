"""Legal status changes of global transactions and branches, as tables (BEHAVIOUR.md 1.6).

Anything not in a table is a bug in the coordinator (or a corrupted store) and raises
:class:`IllegalTransitionError`; the TC never writes a status change it cannot justify here.
"""

from __future__ import annotations

from pyseata.errors import PyseataError
from pyseata.protocol.enums import BranchStatus, GlobalStatus

__all__ = [
    "ASYNC_COMMITTABLE_STATUSES",
    "BRANCH_TRANSITIONS",
    "GLOBAL_TRANSITIONS",
    "NEEDS_OPERATOR",
    "RETRY_COMMIT_STATUSES",
    "RETRY_ROLLBACK_STATUSES",
    "TIMEOUT_STATUSES",
    "IllegalTransitionError",
    "check_branch",
    "check_global",
]

G = GlobalStatus
B = BranchStatus


class IllegalTransitionError(PyseataError):
    def __init__(self, kind: str, old: str, new: str) -> None:
        super().__init__(f"illegal {kind} status change {old} -> {new}")


GLOBAL_TRANSITIONS: dict[GlobalStatus, frozenset[GlobalStatus]] = {
    G.Begin: frozenset({G.Committing, G.AsyncCommitting, G.Rollbacking, G.TimeoutRollbacking}),
    # Committing/Rollbacking/TimeoutRollbacking -> *RetryTimeout: a session whose first pass was
    # cut off (TC crash) and is found again only after the maximum retry time.
    G.Committing: frozenset({G.AsyncCommitting, G.CommitRetrying, G.CommitFailed, G.Committed,
                             G.CommitRetryTimeout}),
    G.AsyncCommitting: frozenset({G.Committed, G.CommitRetryTimeout, G.CommitFailed}),
    G.CommitRetrying: frozenset({G.AsyncCommitting, G.Committed, G.CommitFailed, G.CommitRetryTimeout}),
    G.Rollbacking: frozenset({G.RollbackRetrying, G.RollbackFailed, G.Rollbacked, G.RollbackRetryTimeout}),
    G.RollbackRetrying: frozenset({G.Rollbacked, G.RollbackFailed, G.RollbackRetryTimeout}),
    G.TimeoutRollbacking: frozenset({G.TimeoutRollbackRetrying, G.TimeoutRollbackFailed, G.TimeoutRollbacked,
                                     G.RollbackRetryTimeout}),
    G.TimeoutRollbackRetrying: frozenset({G.TimeoutRollbacked, G.TimeoutRollbackFailed, G.RollbackRetryTimeout}),
}
"""From a status, the statuses the TC may move a global transaction to."""

BRANCH_TRANSITIONS: dict[BranchStatus, frozenset[BranchStatus]] = {
    B.Registered: frozenset({B.PhaseOne_Done, B.PhaseOne_Failed, B.PhaseOne_Timeout, B.PhaseOne_RDONLY,
                             B.Registered}),
    B.PhaseOne_Done: frozenset({B.PhaseOne_Done, B.PhaseOne_Failed}),
    B.PhaseOne_Failed: frozenset({B.PhaseOne_Failed}),
}
"""What a branch report may change (phase two outcomes remove the branch instead)."""

RETRY_COMMIT_STATUSES = frozenset({G.CommitRetrying, G.Committing})
RETRY_ROLLBACK_STATUSES = frozenset({G.Rollbacking, G.RollbackRetrying, G.TimeoutRollbacking,
                                     G.TimeoutRollbackRetrying})
ASYNC_COMMITTABLE_STATUSES = frozenset({G.AsyncCommitting})
TIMEOUT_STATUSES = frozenset({G.TimeoutRollbacking, G.TimeoutRollbackRetrying, G.TimeoutRollbacked,
                              G.TimeoutRollbackFailed})
NEEDS_OPERATOR = frozenset({G.CommitFailed, G.RollbackFailed, G.TimeoutRollbackFailed, G.CommitRetryTimeout,
                            G.RollbackRetryTimeout})
"""Final statuses that keep the session (and, for rollback failures, the locks) for a person."""


def check_global(old: GlobalStatus, new: GlobalStatus) -> None:
    if new not in GLOBAL_TRANSITIONS.get(old, frozenset()):
        raise IllegalTransitionError("global", old.name, new.name)


def check_branch(old: BranchStatus, new: BranchStatus) -> None:
    if new not in BRANCH_TRANSITIONS.get(old, frozenset()):
        raise IllegalTransitionError("branch", old.name, new.name)
