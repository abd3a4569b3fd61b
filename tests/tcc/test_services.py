"""TCC across real processes: a TC (``pyseata server``), account services each on its own database
(SQLite, PostgreSQL, MariaDB) and this process as the TM. The XID travels in the ``TX_XID``
header through pyseata.integrations (SeataSession out, SeataWSGIMiddleware in).

Also the crashes: the TC killed while a confirm is in flight, and a service SIGKILLed inside its
confirm or cancel, each restarted; the fence and the business tables prove that every confirm or
cancel took effect exactly once in the end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pyseata.client as seata
from pyseata.protocol.enums import GlobalStatus
from pyseata.tcc import FenceStatus
from services import wait_until

from .conftest import (
    Bank,
    Database,
    ServiceProcess,
    TcProcess,
    client_settings,
    create_database,
    drop_database,
    http_session,
)

S = FenceStatus
pytestmark = pytest.mark.slow


class ChangedMindError(Exception):
    pass


@dataclass
class Service:
    process: ServiceProcess
    db: Database

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def bank(self) -> Bank:
        return Bank(self.db)

    def fence_rows(self, xid: str) -> list[FenceStatus]:
        rows = self.db.run(f"SELECT status FROM tcc_fence_log WHERE xid = {self.db.p}", (xid,))
        return [S(int(row[0])) for row in rows]

    def stats(self) -> dict[str, int]:
        with closing(http_session()) as session:
            answer: dict[str, int] = session.get(self.url + "/stats", timeout=10).json()
        return answer


def post_try(first: Service, account: str, amount: int, *rest: Service) -> Any:
    """Calls ``first``'s try, which calls the next service's, and so on, in the bound transaction."""
    with closing(http_session()) as session:
        answer = session.post(first.url + "/try", json={"account": account, "amount": amount,
                                                        "next": [s.url for s in rest]}, timeout=60)  # fmt: skip
    if answer.status_code != 200:
        raise ChangedMindError(f"{first.process.name}: {answer.text}")
    return answer.json()


@pytest.fixture
def tm_for() -> Iterator[Any]:
    """Starts this process's client runtime (the TM) against a TC process."""

    def start(tc: TcProcess, **overrides: Any) -> seata.ClientRuntime:
        return seata.init(**client_settings(tc.address, application_id="tcc-tm", **overrides))

    yield start
    seata.shutdown()


def start_service(log_dir: Path, name: str, tc: TcProcess, db: Database, *options: str) -> Service:
    service = Service(ServiceProcess(log_dir, name, tc.address, db), db)
    service.process.start_service(*options)
    return service


def wait_finished(xid: str) -> None:
    wait_until(lambda: seata.reload(xid).status() == GlobalStatus.Finished, f"the TC ends {xid}")


# --- two and three services ---------------------------------------------------------------------


@dataclass
class Shop:
    tc: TcProcess
    services: list[Service]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A TC and three services, on SQLite, PostgreSQL and MariaDB, for the whole module."""
    log_dir = tmp_path_factory.mktemp("shop")
    tc = TcProcess(log_dir)
    dbs: list[Database] = []
    services: list[Service] = []
    try:
        dbs = [create_database(kind, log_dir) for kind in ("sqlite", "postgresql", "mysql")]
        tc.start_tc()
        services = [start_service(log_dir, name, tc, db) for name, db in zip("abc", dbs, strict=True)]
        yield Shop(tc, services)
    finally:
        for service in services:
            service.process.stop()
        tc.stop()
        for db in dbs:
            drop_database(db)


@pytest.fixture
def tm(shop: Shop, tm_for: Any) -> seata.ClientRuntime:
    runtime: seata.ClientRuntime = tm_for(shop.tc)
    return runtime


def open_accounts(services: list[Service], account: str, balance: int) -> None:
    for service in services:
        service.bank.open(account, balance)


@pytest.mark.usefixtures("tm")
def test_two_services_commit(shop: Shop) -> None:
    a, b = shop.services[:2]
    open_accounts([a, b], "two-commit", 100)
    with seata.global_transaction(name="two-commit") as tx:
        assert post_try(a, "two-commit", 30) == {"xid": tx.xid}
        post_try(b, "two-commit", 20)
    wait_finished(tx.xid)
    assert (a.bank.state("two-commit"), b.bank.state("two-commit")) == ((70, 0), (80, 0))
    for service in (a, b):
        assert dict(service.bank.events(tx.xid)) == {"try": 1, "confirm": 1}
        assert service.fence_rows(tx.xid) == [S.COMMITTED]


@pytest.mark.usefixtures("tm")
def test_two_services_roll_back_when_the_second_try_fails(shop: Shop) -> None:
    a, b = shop.services[:2]
    open_accounts([a, b], "two-rollback", 50)
    with pytest.raises(ChangedMindError, match="InsufficientFunds"), seata.global_transaction() as tx:
        post_try(a, "two-rollback", 30)
        post_try(b, "two-rollback", 80)  # b cannot pay: its try fails after registering its branch
    wait_finished(tx.xid)
    assert (a.bank.state("two-rollback"), b.bank.state("two-rollback")) == ((50, 0), (50, 0))
    assert dict(a.bank.events(tx.xid)) == {"try": 1, "cancel": 1}
    assert (dict(b.bank.events(tx.xid)), b.fence_rows(tx.xid)) == ({}, [S.SUSPENDED])  # an empty rollback


@pytest.mark.usefixtures("tm")
def test_three_services_in_a_chain_commit(shop: Shop) -> None:
    a, b, c = shop.services
    open_accounts([a, b, c], "chain-commit", 100)
    with seata.global_transaction(name="chain") as tx:
        post_try(a, "chain-commit", 10, b, c)  # a calls b, b calls c: each joins tx through TX_XID
    wait_finished(tx.xid)
    for service in (a, b, c):
        assert service.bank.state("chain-commit") == (90, 0)
        assert dict(service.bank.events(tx.xid)) == {"try": 1, "confirm": 1}
        assert service.fence_rows(tx.xid) == [S.COMMITTED]


@pytest.mark.usefixtures("tm")
def test_three_services_in_a_chain_roll_back(shop: Shop) -> None:
    a, b, c = shop.services
    open_accounts([a, b, c], "chain-rollback", 100)
    with pytest.raises(ChangedMindError), seata.global_transaction(name="chain") as tx:
        post_try(a, "chain-rollback", 10, b, c)
        raise ChangedMindError("the TM changes its mind after every try succeeded")
    wait_finished(tx.xid)
    for service in (a, b, c):
        assert service.bank.state("chain-rollback") == (100, 0)
        assert dict(service.bank.events(tx.xid)) == {"try": 1, "cancel": 1}
        assert service.fence_rows(tx.xid) == [S.ROLLBACKED]


# --- crashes ---------------------------------------------------------------------------------------


@pytest.fixture
def crash_site(tmp_path: Path) -> Iterator[tuple[Path, TcProcess, list[Service]]]:
    tc = TcProcess(tmp_path)
    services: list[Service] = []
    try:
        tc.start_tc()
        yield tmp_path, tc, services
    finally:
        for service in services:
            service.process.stop()
        tc.stop()


def test_the_tc_killed_during_phase_two_restarts_and_the_branch_is_confirmed_once(
    crash_site: tuple[Path, TcProcess, list[Service]], make_db: Any, tm_for: Any
) -> None:
    log_dir, tc, services = crash_site
    service = start_service(log_dir, "slow", tc, make_db("sqlite"), "--pause-confirm", "1.5")
    services.append(service)
    service.bank.open("tc-crash", 100)
    tm_for(tc, retry_interval=0.5, commit_retry_count=20, tm_request_timeout=20.0)
    tx = seata.begin(name="tc-crash")
    with seata.bound(tx.xid):
        post_try(service, "tc-crash", 40)
    outcome: list[Any] = []
    committing = _in_thread(lambda: outcome.append(_attempt(tx.commit)))
    wait_until(lambda: service.stats().get("confirm") == 1, "the confirm starts")
    tc.kill()  # the confirm is in flight: its answer will find no TC
    tc.restart()
    committing.join(60)
    # Either the commit is still being retried (CommitRetrying/Committing: fine), or the restarted TC
    # finished phase two before the TM asked again: then it no longer knows the XID (heuristic).
    assert isinstance(outcome[0], (GlobalStatus, seata.CommitHeuristicError)), outcome
    wait_finished(tx.xid)
    assert service.bank.state("tc-crash") == (60, 0)
    assert dict(service.bank.events(tx.xid)) == {"try": 1, "confirm": 1}
    assert service.fence_rows(tx.xid) == [S.COMMITTED]
    assert service.stats() == {"confirm": 1}  # the TC's second BranchCommit found the fence row committed


@pytest.mark.parametrize("phase", ["confirm", "cancel"])
def test_a_service_killed_in_phase_two_finishes_it_once_after_restart(
    crash_site: tuple[Path, TcProcess, list[Service]], make_db: Any, tm_for: Any, phase: str
) -> None:
    log_dir, tc, services = crash_site
    service = start_service(log_dir, f"doomed-{phase}", tc, make_db("postgresql"), "--kill-in", phase)
    services.append(service)
    service.bank.open("rm-crash", 100)
    tm_for(tc)
    tx = seata.begin(name="rm-crash")
    with seata.bound(tx.xid):
        post_try(service, "rm-crash", 25)
    # The TC's phase two kills the service inside the business step, before its local commit; the
    # TC answers the TM that it keeps retrying.
    status = tx.commit() if phase == "confirm" else tx.rollback()
    assert status in (GlobalStatus.CommitRetrying, GlobalStatus.RollbackRetrying), status
    assert service.process.process is not None and service.process.process.wait(10) == -9
    assert dict(service.bank.events(tx.xid)) == {"try": 1}  # nothing of the killed step was kept
    assert service.fence_rows(tx.xid) == [S.TRIED]
    service.process.start_service()  # the same application, without the kill: the TC's retry lands
    wait_finished(tx.xid)
    assert dict(service.bank.events(tx.xid)) == {"try": 1, phase: 1}
    assert service.fence_rows(tx.xid) == [S.COMMITTED if phase == "confirm" else S.ROLLBACKED]
    assert service.bank.state("rm-crash") == ((75, 0) if phase == "confirm" else (100, 0))


def _in_thread(fn: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def _attempt(fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:
        return exc
