"""Shared pieces of the client SDK tests: a real TC, a scripted RM, the process's client runtime.

* ``tc_address``: one TransactionCoordinator (memory://, port 0) on a LoopThread for the session,
  with a fast recovery period so its timeout checker acts within ~0.1 s.
* ``rm``: an RM (a real :class:`SyncRpcClient`) owning one TCC resource; it registers branches
  and records every BranchCommit / BranchRollback the TC sends, answering as scripted.
* ``runtime``: ``pyseata.client.init(...)`` against that TC for one test, shut down after.
* ``async def`` tests run on a fresh event loop each (not the runtime's), with a deadline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.client.config import ClientConfig
from pyseata.coordinator.app import TransactionCoordinator
from pyseata.coordinator.settings import ServerSettings
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, ResultCode
from pyseata.rpc.client import ClientTransportConfig, SyncRpcClient
from pyseata.rpc.loop_thread import LoopThread

TEST_DEADLINE = 30.0
RESOURCE = "tcc-test-action"


# --- a real TC ----------------------------------------------------------------------------------------


class RunningTc:
    """A TransactionCoordinator on its own loop thread, for synchronous fixtures."""

    def __init__(self, **settings: Any) -> None:
        settings = {"port": 0, "store": "memory://", "retry_period": 0.1, "drain_timeout": 0.5, **settings}
        self.thread = LoopThread(name="test-tc")
        self.tc = TransactionCoordinator(ServerSettings(**settings))

    def start(self) -> str:
        self.thread.start()
        self.thread.run(self.tc.start())
        host, port = self.tc.address
        return f"{host}:{port}"

    def stop(self) -> None:
        if self.thread.is_running:
            try:
                self.thread.run(self.tc.stop())
            finally:
                self.thread.stop()


@pytest.fixture(scope="session")
def tc_address() -> Iterator[str]:
    tc = RunningTc()
    address = tc.start()
    yield address
    tc.stop()


def client_config(address: str, **overrides: Any) -> ClientConfig:
    values: dict[str, Any] = {
        "application_id": "tm-tests", "grouplist": {"default": address}, "tm_request_timeout": 5.0,
        "retry_interval": 0.05,
    }  # fmt: skip
    values.update(overrides)
    return ClientConfig(**values)


@pytest.fixture
def runtime(tc_address: str) -> Iterator[seata.ClientRuntime]:
    started = seata.init(client_config(tc_address))
    yield started
    seata.shutdown()


# --- a scripted RM ------------------------------------------------------------------------------------


class ScriptedRm:
    """Registers TCC branches and records what the TC asks of them.

    ``answers[(kind, xid)]`` overrides the branch status answered ("commit" / "rollback");
    clearing ``gate`` holds every phase-two request until it is set again.
    """

    def __init__(self, address: str) -> None:
        config = ClientTransportConfig(application_id="scripted-rm", grouplist={"default": address})
        self.client = SyncRpcClient(config, resource_ids=[RESOURCE], branch_handler=self._handle)
        self.gate = threading.Event()
        self.answers: dict[tuple[str, str], BranchStatus] = {}
        self._changed = threading.Condition()
        self.received: list[tuple[str, str, int]] = []  # (kind, xid, branch id) on arrival
        self.answered: list[tuple[str, str, int]] = []  # the same, once answered

    def reset(self) -> None:
        self.gate.set()
        self.answers.clear()

    def register(self, xid: str | None) -> int:
        assert xid is not None, "no XID bound"
        request = m.BranchRegisterRequest(xid=xid, branch_type=BranchType.TCC, resource_id=RESOURCE)
        response = self.client.request(request, role="RM", xid=xid)
        assert isinstance(response, m.BranchRegisterResponse), response
        assert response.result_code == ResultCode.Success, response
        return response.branch_id

    async def aregister(self, xid: str | None) -> int:
        return await asyncio.to_thread(self.register, xid)

    def outcomes(self, xid: str) -> list[str]:
        with self._changed:
            return [kind for kind, x, _ in self.answered if x == xid]

    def wait_for(self, xid: str, kind: str, *, arrived: bool = False, timeout: float = 10.0) -> None:
        """Waits until a ``kind`` request for ``xid`` arrived (or was answered)."""
        seen = self.received if arrived else self.answered
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(k == kind and x == xid for k, x, _ in seen):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no branch {kind} for {xid} within {timeout} s; answered: {self.answered}")
                self._changed.wait(left)

    def _handle(self, request: m.Message) -> m.Message:
        assert isinstance(request, m.AbstractBranchEndRequest)
        kind = "commit" if isinstance(request, m.BranchCommitRequest) else "rollback"
        xid = request.xid or ""
        self._note(self.received, (kind, xid, request.branch_id))
        self.gate.wait(TEST_DEADLINE)
        default = BranchStatus.PhaseTwo_Committed if kind == "commit" else BranchStatus.PhaseTwo_Rollbacked
        status = self.answers.get((kind, xid), default)
        self._note(self.answered, (kind, xid, request.branch_id))
        cls = m.BranchCommitResponse if kind == "commit" else m.BranchRollbackResponse
        return cls(xid=xid, branch_id=request.branch_id, branch_status=status)

    def _note(self, where: list[tuple[str, str, int]], event: tuple[str, str, int]) -> None:
        with self._changed:
            where.append(event)
            self._changed.notify_all()


@pytest.fixture(scope="session")
def session_rm(tc_address: str) -> Iterator[ScriptedRm]:
    rm = ScriptedRm(tc_address)
    rm.client.start()
    yield rm
    rm.reset()
    rm.client.close()


@pytest.fixture
def rm(session_rm: ScriptedRm) -> Iterator[ScriptedRm]:
    session_rm.reset()
    yield session_rm
    session_rm.reset()
