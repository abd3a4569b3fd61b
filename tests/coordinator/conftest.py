"""Shared pieces of the coordinator tests: how ``async def`` tests run, a real TC on 127.0.0.1
port 0, a TM and scripted RMs built on the real client runtime, and polling helpers.

Every test talks to a real :class:`TransactionCoordinator` over real sockets. RMs are
:class:`pyseata.rpc.client.RpcClient` instances whose branch handler follows a script (an answer
per request, optionally held at a gate) and records every BranchCommit/BranchRollback it runs.
Waits are for events or for conditions with generous deadlines, never for fixed times.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from asyncsupport import eventually
from pyseata.coordinator.app import TransactionCoordinator
from pyseata.coordinator.settings import ServerSettings
from pyseata.coordinator.store.base import SessionStore
from pyseata.protocol import messages as m
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus, ResultCode
from pyseata.rpc.client import ClientTransportConfig, RpcClient

SRC = Path(__file__).resolve().parents[2] / "src"

B = BranchStatus
G = GlobalStatus


# --- a TC -------------------------------------------------------------------------------------------


def tc_settings(**overrides: Any) -> ServerSettings:
    """Settings for a test TC: port 0, memory store, quick recovery loops."""
    values: dict[str, Any] = {
        "port": 0, "store": "memory://", "retry_period": 0.05, "retry_backoff_max": 0.2,
        "drain_timeout": 2.0, "idle_timeout": 60.0, "branch_request_timeout": 10.0, "dead_session_ms": 10_000,
    }
    values.update(overrides)
    return ServerSettings(**values)


@contextlib.asynccontextmanager
async def running_tc(url: str = "memory://", *, given_store: SessionStore | None = None,
                     manual_recovery: bool = False, **overrides: Any) -> AsyncIterator[TransactionCoordinator]:
    """A TC on ``url``. With ``manual_recovery`` its recovery loops are stopped at once, so the
    test runs them by hand (``tc.recovery.retry_rollbacking()``...) and nothing runs behind it."""
    async with TransactionCoordinator(tc_settings(store=url, **overrides), store=given_store) as tc:
        if manual_recovery:
            assert tc.recovery is not None
            await tc.recovery.stop()
        yield tc


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'tc.db'}"


# --- clients ------------------------------------------------------------------------------------------


def client_config(port: int, app: str, **overrides: Any) -> ClientTransportConfig:
    values: dict[str, Any] = {"reconnect_initial": 0.02, "reconnect_max": 0.3, "connect_timeout": 5.0}
    values.update(overrides)
    return ClientTransportConfig(application_id=app, grouplist={"default": f"127.0.0.1:{port}"}, **values)


class TM:
    """A transaction manager on its own connection."""

    def __init__(self, port: int, app: str = "tm-app") -> None:
        self.client = RpcClient(client_config(port, app))

    async def __aenter__(self) -> TM:
        await self.client.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def begin(self, timeout: int = 60_000, name: str = "test-tx") -> str:
        answer = await self.client.request(m.GlobalBeginRequest(timeout=timeout, transaction_name=name))
        assert isinstance(answer, m.GlobalBeginResponse), answer
        assert answer.result_code == ResultCode.Success and answer.xid, answer
        return answer.xid

    async def commit(self, xid: str) -> GlobalStatus:
        return _global_status(await self.client.request(m.GlobalCommitRequest(xid=xid)))

    async def rollback(self, xid: str) -> GlobalStatus:
        return _global_status(await self.client.request(m.GlobalRollbackRequest(xid=xid)))

    async def status(self, xid: str) -> GlobalStatus:
        return _global_status(await self.client.request(m.GlobalStatusRequest(xid=xid)))


def _global_status(answer: m.Message) -> GlobalStatus:
    assert isinstance(answer, m.AbstractGlobalEndResponse), answer
    assert answer.result_code == ResultCode.Success, answer
    return answer.global_status


@dataclass
class Call:
    """One phase-two request an RM received."""

    kind: str  # "commit" or "rollback"
    xid: str
    branch_id: int
    resource_id: str
    application_data: str | None


Answer = BranchStatus | BaseException
Script = Callable[[Call], Answer | Awaitable[Answer]]


@dataclass
class RM:
    """A scripted resource manager: registers branches, answers phase two from ``script``.

    ``script(call)`` gives the branch status to answer (or an exception, which the client turns
    into a failed response). By default every commit and rollback succeeds. ``calls`` lists every
    request received, ``done`` the ones answered with PhaseTwo_Committed/Rollbacked.
    """

    port: int
    resources: list[str]
    app: str = "rm-app"
    script: Script | None = None
    calls: list[Call] = field(default_factory=list)
    done: list[Call] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set: every phase-two request waits for it first
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set by each phase-two request

    def __post_init__(self) -> None:
        self.client = RpcClient(client_config(self.port, self.app), resource_ids=self.resources,
                                branch_handler=self._handle)

    async def __aenter__(self) -> RM:
        await self.client.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.gate is not None:
            self.gate.set()
        await self.client.close()

    async def _handle(self, request: m.Message) -> m.Message | None:
        if not isinstance(request, m.AbstractBranchEndRequest):
            return None
        commit = isinstance(request, m.BranchCommitRequest)
        call = Call("commit" if commit else "rollback", request.xid or "", request.branch_id,
                    request.resource_id or "", request.application_data)
        self.calls.append(call)
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        answer: Answer | Awaitable[Answer]
        if self.script is not None:
            answer = self.script(call)
            if inspect.isawaitable(answer):
                answer = await answer
        else:
            answer = B.PhaseTwo_Committed if commit else B.PhaseTwo_Rollbacked
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, BranchStatus)
        if answer in (B.PhaseTwo_Committed, B.PhaseTwo_Rollbacked):
            self.done.append(call)
        cls = m.BranchCommitResponse if commit else m.BranchRollbackResponse
        return cls(xid=request.xid, branch_id=request.branch_id, branch_status=answer)

    async def register_raw(self, xid: str, resource_id: str | None = None, lock_key: str | None = None,
                           branch_type: BranchType = BranchType.AT,
                           application_data: str | None = None) -> m.BranchRegisterResponse:
        answer = await self.client.request(m.BranchRegisterRequest(
            xid=xid, branch_type=branch_type, resource_id=resource_id or self.resources[0], lock_key=lock_key,
            application_data=application_data), role="RM")
        assert isinstance(answer, m.BranchRegisterResponse), answer
        return answer

    async def register(self, xid: str, resource_id: str | None = None, lock_key: str | None = None,
                       branch_type: BranchType = BranchType.AT, application_data: str | None = None) -> int:
        answer = await self.register_raw(xid, resource_id, lock_key, branch_type, application_data)
        assert answer.result_code == ResultCode.Success, answer
        return answer.branch_id

    async def report(self, xid: str, branch_id: int, status: BranchStatus,
                     application_data: str | None = None) -> m.BranchReportResponse:
        answer = await self.client.request(m.BranchReportRequest(
            xid=xid, branch_id=branch_id, status=status, resource_id=self.resources[0],
            application_data=application_data), role="RM")
        assert isinstance(answer, m.BranchReportResponse), answer
        return answer

    async def lock_query(self, xid: str | None, lock_key: str, resource_id: str | None = None) -> m.Message:
        return await self.client.request(m.GlobalLockQueryRequest(
            xid=xid, resource_id=resource_id or self.resources[0], lock_key=lock_key), role="RM")

    def done_for(self, xid: str) -> list[tuple[str, int]]:
        return [(c.kind, c.branch_id) for c in self.done if c.xid == xid]

    def calls_for(self, xid: str) -> list[tuple[str, int]]:
        return [(c.kind, c.branch_id) for c in self.calls if c.xid == xid]


async def store_empty(store: SessionStore) -> bool:
    return await store.count_globals() == 0 and await store.count_locks() == 0


async def status_in_store(store: SessionStore, xid: str) -> GlobalStatus | None:
    g = await store.get_global(xid)
    return None if g is None else g.status


async def has_status(store: SessionStore, xid: str, status: GlobalStatus | None) -> bool:
    return await status_in_store(store, xid) == status


async def until_timed_out(store: SessionStore, xid: str) -> None:
    """Waits until ``xid``'s timeout has passed, by the wall clock the TC's timeout check uses."""
    g = await store.get_global(xid)
    assert g is not None
    await eventually(lambda: time.time() * 1000 > g.deadline + 1, what=f"{xid} times out")


class LogRecords(logging.Handler):
    """Collects log records of one logger (caplog does not see records of other threads' loggers
    reliably when handlers are reconfigured; this is explicit)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogRecords:
        self._logger.addHandler(self)
        self._old_level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)


# --- a TC in its own process ----------------------------------------------------------------------------

SERVER_COMMAND = [sys.executable, "-c", "from pyseata.cli.main import main; main()", "server"]
READY = "pyseata TC ready on "


class TcProcess:
    """``pyseata server`` in a subprocess: started until its ready line, stopped by SIGTERM or
    SIGKILL, always reaped (use it as an async context manager). Its log goes to a file, so a
    chatty TC can never block on a full pipe."""

    def __init__(self, log_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
        self.env.update(env or {})
        self.log_dir = log_dir
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"tc-{self.runs}.log"

    async def start(self, *extra: str) -> int:
        """Starts it; returns the port from the ready line."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        with open(self.log_path, "w") as log_file:
            self.process = subprocess.Popen(
                [*SERVER_COMMAND, *self.args, *extra], stdout=subprocess.PIPE, stderr=log_file, text=True,
                env=self.env,
            )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 30)
        except TimeoutError:
            line = ""
        if not line.startswith(READY):
            await self.kill()
            raise AssertionError(f"the TC did not start: {line!r}\n{self.log_path.read_text()}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        return self.port

    async def kill(self) -> None:
        """SIGKILL: no chance to flush, close or say goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        await self.wait()

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        code = await asyncio.to_thread(self.process.wait, timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    async def __aenter__(self) -> TcProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            await self.wait()
