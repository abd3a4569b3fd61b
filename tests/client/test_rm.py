"""The RM core against a real TC: resources reach the TC, branch requests and their errors, and
phase two dispatched to the right resource with the answers Seata expects."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import pyseata.client as seata
from pyseata.client.rm import BranchError, BranchRequest, LockConflictError, PhaseTwoResult, UnretryableError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus
from pyseata.protocol.enums import TransactionExceptionCode as Code
from services import wait_until

from .conftest import client_config

B = BranchStatus
_names = itertools.count()
Behaviour = Callable[[BranchRequest], PhaseTwoResult]


@dataclass
class FakeResource:
    """Records each phase-two call (and the thread it ran on); answers with ``commit`` / ``rollback``."""

    resource_id: str
    branch_type: BranchType = BranchType.TCC
    commit: list[Behaviour] = field(default_factory=list)  # one per call; the last one repeats
    rollback: list[Behaviour] = field(default_factory=list)
    calls: list[tuple[str, BranchRequest, str]] = field(default_factory=list)
    unretryable: tuple[type[BaseException], ...] = ()

    def branch_commit(self, request: BranchRequest) -> PhaseTwoResult:
        return self._answer("commit", self.commit, request)

    def branch_rollback(self, request: BranchRequest) -> PhaseTwoResult:
        return self._answer("rollback", self.rollback, request)

    def _answer(self, kind: str, script: list[Behaviour], request: BranchRequest) -> PhaseTwoResult:
        self.calls.append((kind, request, threading.current_thread().name))
        if not script:
            return None
        return (script.pop(0) if len(script) > 1 else script[0])(request)

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.calls]


class AsyncResource(FakeResource):
    async def branch_commit(self, request: BranchRequest) -> PhaseTwoResult:  # type: ignore[override]
        await asyncio.sleep(0)
        return self._answer("commit", self.commit, request)


def fail(exc: BaseException) -> Behaviour:
    def raise_it(_: BranchRequest) -> PhaseTwoResult:
        raise exc

    return raise_it


@pytest.fixture
def declare(runtime: seata.ClientRuntime) -> Iterator[Callable[[FakeResource], FakeResource]]:
    """Declares resources after init (the late path: the RM registers each with the TC at once)."""
    declared: list[FakeResource] = []

    def add(resource: FakeResource) -> FakeResource:
        seata.register_resource(resource)
        declared.append(resource)
        return resource

    yield add
    for resource in declared:
        seata.unregister_resource(resource)


def name(prefix: str = "rm-test") -> str:
    return f"{prefix}-{next(_names)}-{time.monotonic_ns()}"


def register(resource: FakeResource, xid: str, data: str | None = None, lock_key: str | None = None) -> int:
    return seata.get_resource_manager().branch_register(
        xid, resource.resource_id, resource.branch_type, lock_key=lock_key, application_data=data
    )


# --- phase two dispatch ----------------------------------------------------------------------------


def test_commit_reaches_the_resource_in_a_worker_thread(declare: Callable[[FakeResource], FakeResource]) -> None:
    resource = declare(FakeResource(name()))
    with seata.global_transaction(name="rm-commit") as tx:
        branch = register(resource, tx.xid, data='{"actionContext":{"k":1}}')
    assert resource.kinds() == ["commit"]
    _, request, thread = resource.calls[0]
    assert request == BranchRequest(tx.xid, branch, resource.resource_id, BranchType.TCC, '{"actionContext":{"k":1}}')
    assert thread.startswith("pyseata-rm"), thread  # never the runtime's I/O loop


def test_rollback_reaches_the_resource(declare: Callable[[FakeResource], FakeResource]) -> None:
    resource = declare(FakeResource(name()))
    with pytest.raises(KeyError), seata.global_transaction(name="rm-rollback") as tx:
        register(resource, tx.xid)
        raise KeyError("business failure")
    assert resource.kinds() == ["rollback"]


def test_async_resource_runs_on_the_runtime_loop(declare: Callable[[FakeResource], FakeResource]) -> None:
    resource = declare(AsyncResource(name()))
    with seata.global_transaction(name="rm-async"):
        register(resource, seata.get_xid() or "")
    assert resource.calls[0][2] == seata.get_runtime().loop_thread.name


def test_a_failing_commit_is_retried_by_the_tc_until_it_succeeds(
    declare: Callable[[FakeResource], FakeResource],
) -> None:
    resource = declare(FakeResource(name(), commit=[fail(OSError("db down")), lambda _: False, lambda _: True]))
    with seata.global_transaction(name="rm-retry") as tx:
        register(resource, tx.xid)
    wait_until(lambda: resource.kinds() == ["commit"] * 3, "three commit attempts")
    wait_until(lambda: tx.status() == GlobalStatus.Finished, "the transaction ends")


def test_a_failing_rollback_is_retried_by_the_tc(declare: Callable[[FakeResource], FakeResource]) -> None:
    resource = declare(FakeResource(name(), rollback=[fail(RuntimeError("later")), lambda _: None]))
    with pytest.raises(ValueError), seata.global_transaction(name="rm-rollback-retry") as tx:
        register(resource, tx.xid)
        raise ValueError("business failure")
    wait_until(lambda: resource.kinds() == ["rollback"] * 2, "two rollback attempts")
    wait_until(lambda: tx.status() == GlobalStatus.Finished, "the transaction ends")


@pytest.mark.parametrize("error", [UnretryableError("never"), LookupError("declared unretryable")])
def test_an_unretryable_error_stops_the_tc(declare: Callable[[FakeResource], FakeResource], error: Exception) -> None:
    resource = declare(FakeResource(name(), commit=[fail(error)], unretryable=(LookupError,)))
    with pytest.raises(seata.CommitFailedError) as raised, seata.global_transaction(name="rm-unretryable") as tx:
        register(resource, tx.xid)
    assert raised.value.status == GlobalStatus.CommitFailed
    time.sleep(0.3)  # several TC retry periods: nothing is retried
    assert resource.kinds() == ["commit"]
    assert tx.status() == GlobalStatus.CommitFailed


async def test_answers_per_result_and_unknown_resources(declare: Callable[[FakeResource], FakeResource]) -> None:
    """The answer table, straight through the handler: results, exceptions, wrong statuses."""
    rm = seata.get_resource_manager()
    unretryable = B.PhaseTwo_RollbackFailed_Unretryable
    cases: list[tuple[type[m.AbstractBranchEndRequest], Behaviour | None, BranchStatus]] = [
        (m.BranchCommitRequest, lambda _: None, B.PhaseTwo_Committed),
        (m.BranchCommitRequest, lambda _: True, B.PhaseTwo_Committed),
        (m.BranchCommitRequest, lambda _: False, B.PhaseTwo_CommitFailed_Retryable),
        (m.BranchCommitRequest, fail(OSError()), B.PhaseTwo_CommitFailed_Retryable),
        (m.BranchCommitRequest, fail(UnretryableError()), B.PhaseTwo_CommitFailed_Unretryable),
        (m.BranchCommitRequest, lambda _: B.PhaseTwo_Rollbacked, B.PhaseTwo_CommitFailed_Retryable),  # wrong phase
        (m.BranchCommitRequest, lambda _: "yes", B.PhaseTwo_CommitFailed_Retryable),  # type: ignore[list-item,return-value]
        (m.BranchRollbackRequest, lambda _: None, B.PhaseTwo_Rollbacked),
        (m.BranchRollbackRequest, lambda _: False, B.PhaseTwo_RollbackFailed_Retryable),
        (m.BranchRollbackRequest, fail(UnretryableError()), B.PhaseTwo_RollbackFailed_Unretryable),
        (m.BranchRollbackRequest, lambda _: unretryable, unretryable),
        (m.BranchCommitRequest, None, B.PhaseTwo_CommitFailed_Retryable),  # no such resource here
        (m.BranchRollbackRequest, None, B.PhaseTwo_RollbackFailed_Retryable),
    ]
    for number, (kind, behaviour, expected) in enumerate(cases):
        resource_id = name("answers")
        if behaviour is not None:
            declare(FakeResource(resource_id, commit=[behaviour], rollback=[behaviour]))
        request = kind(xid="127.0.0.1:1:9", branch_id=number, branch_type=BranchType.TCC, resource_id=resource_id)
        answer = await rm.handle(request)
        assert isinstance(answer, m.RESPONSE_FOR[kind]), answer
        assert isinstance(answer, m.AbstractBranchEndResponse)
        assert (answer.branch_status, answer.xid, answer.branch_id) == (expected, "127.0.0.1:1:9", number), number


async def test_an_unknown_resource_is_logged_by_name(runtime: seata.ClientRuntime) -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("pyseata.client.rm")
    logger.addHandler(handler)
    try:
        request = m.BranchCommitRequest(xid="127.0.0.1:1:77", branch_id=5, branch_type=BranchType.TCC,
                                        resource_id="nobody-here")  # fmt: skip
        answer = await runtime.rm.handle(request)
    finally:
        logger.removeHandler(handler)
    assert isinstance(answer, m.BranchCommitResponse)
    assert answer.branch_status == B.PhaseTwo_CommitFailed_Retryable
    text = [r.getMessage() for r in records]
    assert any("nobody-here" in t and "xid=127.0.0.1:1:77 branch=5" in t for t in text), text
    assert records[-1].xid == "127.0.0.1:1:77"  # type: ignore[attr-defined]


# --- requests to the TC ----------------------------------------------------------------------------


def test_register_in_an_unknown_transaction_carries_the_tc_code(
    declare: Callable[[FakeResource], FakeResource], tc_address: str
) -> None:
    resource = declare(FakeResource(name()))
    host, port = tc_address.rsplit(":", 1)
    with pytest.raises(BranchError) as raised:
        register(resource, f"{host}:{port}:424242")
    assert raised.value.code == Code.GlobalTransactionNotExist
    assert raised.value.xid == f"{host}:{port}:424242"


def test_lock_conflict_and_lock_query(declare: Callable[[FakeResource], FakeResource]) -> None:
    resource = declare(FakeResource(name("jdbc:mysql://db/at"), branch_type=BranchType.AT))
    rm = seata.get_resource_manager()
    first = seata.begin(name="holder")
    second = seata.begin(name="waiter")
    try:
        register(resource, first.xid, lock_key="t_stock:1,2")
        assert not rm.global_lock_query(resource.resource_id, "t_stock:2", xid=second.xid)
        assert rm.global_lock_query(resource.resource_id, "t_stock:3", xid=second.xid)
        with pytest.raises(LockConflictError) as raised:
            register(resource, second.xid, lock_key="t_stock:2")
        assert raised.value.code == Code.LockKeyConflict
    finally:
        second.rollback()
        first.rollback()
    assert rm.global_lock_query(resource.resource_id, "t_stock:2")


async def test_a_report_changes_what_phase_two_receives(declare: Callable[[FakeResource], FakeResource]) -> None:
    resource = declare(FakeResource(name()))
    rm = seata.get_resource_manager()
    async with seata.global_transaction(name="rm-report") as tx:
        branch = await rm.abranch_register(tx.xid, resource.resource_id, BranchType.TCC, application_data='{"a":1}')
        await rm.abranch_report(tx.xid, branch, B.Registered, resource_id=resource.resource_id,
                                branch_type=BranchType.TCC, application_data='{"a":2}')  # fmt: skip
    assert [request.application_data for _, request, _ in resource.calls] == ['{"a":2}']


def test_a_report_for_an_unknown_branch_is_refused(declare: Callable[[FakeResource], FakeResource]) -> None:
    resource = declare(FakeResource(name()))
    with pytest.raises(BranchError) as raised, seata.global_transaction(name="rm-bad-report") as tx:
        seata.get_resource_manager().branch_report(tx.xid, 987654321, B.PhaseOne_Done,
                                                   resource_id=resource.resource_id)  # fmt: skip
    assert raised.value.code == Code.BranchTransactionNotExist


# --- the registry ----------------------------------------------------------------------------------


def test_two_resources_cannot_share_an_id(declare: Callable[[FakeResource], FakeResource]) -> None:
    resource = declare(FakeResource(name()))
    declare(resource)  # the same object again: fine
    with pytest.raises(ValueError, match="already registered"):
        seata.register_resource(FakeResource(resource.resource_id))
    declare(FakeResource(resource.resource_id, branch_type=BranchType.AT))  # another branch type: fine


def test_resources_declared_before_init_are_registered_at_start(tc_address: str) -> None:
    resource = FakeResource(name())
    seata.register_resource(resource)
    try:
        runtime = seata.init(client_config(tc_address))
        try:
            assert resource.resource_id in runtime.client.resource_ids
            with seata.global_transaction(name="rm-early") as tx:
                register(resource, tx.xid)
            assert resource.kinds() == ["commit"]
        finally:
            seata.shutdown()
    finally:
        seata.unregister_resource(resource)


def test_a_process_without_resources_opens_no_rm_connection(runtime: seata.ClientRuntime) -> None:
    assert runtime.client.connected("TM")
    assert runtime.client.connected("RM") == ()
