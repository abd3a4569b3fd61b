"""End to end: service A begins a global transaction and calls service B (FastAPI on uvicorn), which
calls service C (Flask on werkzeug); B and C join as participants and each registers a TCC branch
with the real TC. A's commit or rollback reaches both branches, and the TC ends the transaction.

A sends with requests; B's async endpoint calls C with httpx, its sync endpoint with requests
(in the thread pool), its aiohttp endpoint with aiohttp: each hop carries the XID by itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import pytest
from fastapi import FastAPI
from flask import Flask

import pyseata.client as seata
from pyseata.client import TxRole, get_xid, global_transaction
from pyseata.integrations.fastapi import SeataMiddleware
from pyseata.integrations.flask import SeataFlask
from pyseata.integrations.http import SeataSession, aiohttp_trace_config, httpx_async_event_hooks
from pyseata.protocol.enums import GlobalStatus

from .conftest import ScriptedRm, UvicornThread, WsgiThread

pytestmark = pytest.mark.usefixtures("runtime")


class ChangedMindError(Exception):
    pass


def service_c(rm: ScriptedRm) -> Flask:
    app = Flask("service-c")
    SeataFlask(app)

    @app.post("/c")
    def c() -> dict[str, Any]:
        with global_transaction(name="service-c") as tx:
            branch = rm.register(get_xid())
            return {"xid": get_xid(), "role": tx.role, "branch": branch}

    return app


def service_b(rm: ScriptedRm, c_url: str) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SeataMiddleware)

    @app.post("/b-httpx")
    async def b_httpx() -> dict[str, Any]:
        async with global_transaction(name="service-b") as tx:
            branch = await rm.aregister(get_xid())
            async with httpx.AsyncClient(event_hooks=httpx_async_event_hooks(), timeout=10) as client:
                c = (await client.post(c_url + "/c")).json()
            return {"xid": get_xid(), "role": tx.role, "branch": branch, "c": c}

    @app.post("/b-requests")
    def b_requests() -> dict[str, Any]:  # a sync endpoint: FastAPI runs it in its thread pool
        with global_transaction(name="service-b") as tx, SeataSession() as session:
            branch = rm.register(get_xid())
            c = session.post(c_url + "/c", timeout=10).json()
            return {"xid": get_xid(), "role": tx.role, "branch": branch, "c": c}

    @app.post("/b-aiohttp")
    async def b_aiohttp() -> dict[str, Any]:
        async with global_transaction(name="service-b") as tx:
            branch = await rm.aregister(get_xid())
            session = aiohttp.ClientSession(trace_configs=[aiohttp_trace_config()])
            async with session, session.post(c_url + "/c") as response:
                c = await response.json()
            return {"xid": get_xid(), "role": tx.role, "branch": branch, "c": c}

    return app


@dataclass
class Chain:
    b_url: str
    rm: ScriptedRm


@pytest.fixture(scope="module")
def chain(session_rm: ScriptedRm) -> Iterator[Chain]:
    c = WsgiThread(service_c(session_rm), threaded=True).start()
    b = UvicornThread(service_b(session_rm, c.url)).start()
    try:
        yield Chain(b.url, session_rm)
    finally:
        b.stop()
        c.stop()


def answered(rm: ScriptedRm, xid: str, count: int, timeout: float = 10.0) -> list[tuple[str, int]]:
    """The (kind, branch id) phase-two answers for ``xid``, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        seen = [(kind, branch) for kind, x, branch in list(rm.answered) if x == xid]
        if len(seen) >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.01)


def wait_finished(xid: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (status := seata.reload(xid).status()) != GlobalStatus.Finished:
        assert time.monotonic() < deadline, f"{xid} is still {status.name}"
        time.sleep(0.01)


def check_joined(answer: dict[str, Any], xid: str) -> tuple[int, int]:
    assert (answer["xid"], answer["role"]) == (xid, TxRole.PARTICIPANT), "B did not join A's transaction"
    assert (answer["c"]["xid"], answer["c"]["role"]) == (xid, TxRole.PARTICIPANT), "C did not join A's transaction"
    return answer["branch"], answer["c"]["branch"]


HOPS = ["/b-httpx", "/b-requests", "/b-aiohttp"]


@pytest.mark.parametrize("hop", HOPS)
def test_a_commit_in_a_reaches_the_branches_of_b_and_c(chain: Chain, rm: ScriptedRm, hop: str) -> None:
    with SeataSession() as session, global_transaction(name="service-a") as tx:
        answer = session.post(chain.b_url + hop, timeout=20).json()
        assert seata.reload(tx.xid).status() == GlobalStatus.Begin, "only A ends the transaction"
    b_branch, c_branch = check_joined(answer, tx.xid)
    assert sorted(answered(rm, tx.xid, 2)) == sorted([("commit", b_branch), ("commit", c_branch)])
    wait_finished(tx.xid)
    assert get_xid() is None


@pytest.mark.parametrize("hop", HOPS)
def test_a_rollback_in_a_undoes_b_and_c_in_reverse_order(chain: Chain, rm: ScriptedRm, hop: str) -> None:
    answers: list[Any] = []
    with pytest.raises(ChangedMindError), SeataSession() as session, global_transaction(name="service-a") as tx:
        answers.append(session.post(chain.b_url + hop, timeout=20).json())
        raise ChangedMindError("A changes its mind after B and C did their part")
    xid = tx.xid
    b_branch, c_branch = check_joined(answers[0], xid)
    assert answered(rm, xid, 2) == [("rollback", c_branch), ("rollback", b_branch)]
    wait_finished(xid)
    assert get_xid() is None
