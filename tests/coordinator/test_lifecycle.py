"""The transition tables of lifecycle.py: every entry is allowed, everything else raises."""

from __future__ import annotations

import itertools

import pytest

from pyseata.coordinator import lifecycle
from pyseata.coordinator.lifecycle import (
    BRANCH_TRANSITIONS,
    GLOBAL_TRANSITIONS,
    IllegalTransitionError,
    check_branch,
    check_global,
)
from pyseata.errors import PyseataError
from pyseata.protocol.enums import BranchStatus, GlobalStatus

G = GlobalStatus
B = BranchStatus

GLOBAL_ALLOWED = sorted((old, new) for old, targets in GLOBAL_TRANSITIONS.items() for new in targets)
GLOBAL_REFUSED = sorted(set(itertools.product(GlobalStatus, GlobalStatus)) - set(GLOBAL_ALLOWED))
BRANCH_ALLOWED = sorted((old, new) for old, targets in BRANCH_TRANSITIONS.items() for new in targets)
BRANCH_REFUSED = sorted(set(itertools.product(BranchStatus, BranchStatus)) - set(BRANCH_ALLOWED))


def _id(pair: tuple[GlobalStatus | BranchStatus, GlobalStatus | BranchStatus]) -> str:
    return f"{pair[0].name}->{pair[1].name}"


@pytest.mark.parametrize("pair", GLOBAL_ALLOWED, ids=_id)
def test_every_global_table_entry_is_allowed(pair: tuple[GlobalStatus, GlobalStatus]) -> None:
    check_global(*pair)


@pytest.mark.parametrize("pair", BRANCH_ALLOWED, ids=_id)
def test_every_branch_table_entry_is_allowed(pair: tuple[BranchStatus, BranchStatus]) -> None:
    check_branch(*pair)


def test_every_other_global_change_raises() -> None:
    assert len(GLOBAL_REFUSED) + len(GLOBAL_ALLOWED) == len(GlobalStatus) ** 2
    for old, new in GLOBAL_REFUSED:
        with pytest.raises(IllegalTransitionError, match=f"global status change {old.name} -> {new.name}"):
            check_global(old, new)


def test_every_other_branch_change_raises() -> None:
    assert len(BRANCH_REFUSED) + len(BRANCH_ALLOWED) == len(BranchStatus) ** 2
    for old, new in BRANCH_REFUSED:
        with pytest.raises(IllegalTransitionError, match=f"branch status change {old.name} -> {new.name}"):
            check_branch(old, new)


def test_illegal_transition_is_a_pyseata_error() -> None:
    with pytest.raises(PyseataError):
        check_global(G.Committed, G.Begin)


def test_the_diagram_of_behaviour_1_6() -> None:
    """The paths of Seata's state diagram, end to end."""
    paths = [
        [G.Begin, G.AsyncCommitting, G.Committed],
        [G.Begin, G.Committing, G.AsyncCommitting, G.Committed],
        [G.Begin, G.Committing, G.Committed],
        [G.Begin, G.Committing, G.CommitRetrying, G.Committed],
        [G.Begin, G.Committing, G.CommitRetrying, G.CommitRetryTimeout],
        [G.Begin, G.Committing, G.CommitFailed],
        [G.Begin, G.Rollbacking, G.Rollbacked],
        [G.Begin, G.Rollbacking, G.RollbackRetrying, G.Rollbacked],
        [G.Begin, G.Rollbacking, G.RollbackRetrying, G.RollbackRetryTimeout],
        [G.Begin, G.Rollbacking, G.RollbackFailed],
        [G.Begin, G.TimeoutRollbacking, G.TimeoutRollbacked],
        [G.Begin, G.TimeoutRollbacking, G.TimeoutRollbackRetrying, G.TimeoutRollbacked],
        [G.Begin, G.TimeoutRollbacking, G.TimeoutRollbackRetrying, G.RollbackRetryTimeout],
        [G.Begin, G.TimeoutRollbacking, G.TimeoutRollbackFailed],
    ]
    for path in paths:
        for old, new in itertools.pairwise(path):
            check_global(old, new)


def test_final_states_lead_nowhere_and_working_states_lead_somewhere() -> None:
    final = {G.Committed, G.Rollbacked, G.TimeoutRollbacked, G.Finished} | lifecycle.NEEDS_OPERATOR
    for status in final:
        assert not GLOBAL_TRANSITIONS.get(status), status
    working = (lifecycle.RETRY_COMMIT_STATUSES | lifecycle.RETRY_ROLLBACK_STATUSES
               | lifecycle.ASYNC_COMMITTABLE_STATUSES | {G.Begin})
    for status in working:
        assert GLOBAL_TRANSITIONS[status], status
    # a timed-out transaction can only end in a timeout status or the shared retry timeout
    for status in lifecycle.TIMEOUT_STATUSES:
        for new in GLOBAL_TRANSITIONS.get(status, ()):
            assert new in lifecycle.TIMEOUT_STATUSES | {G.RollbackRetryTimeout}


def test_no_status_returns_to_begin_and_nothing_goes_to_finished_or_unknown() -> None:
    for targets in GLOBAL_TRANSITIONS.values():
        assert not targets & {G.Begin, G.Finished, G.UnKnown}


def test_branch_reports_never_set_a_phase_two_outcome() -> None:
    phase_two = {s for s in BranchStatus if s.name.startswith("PhaseTwo")}
    for targets in BRANCH_TRANSITIONS.values():
        assert not targets & phase_two
