"""Incoming, ASGI: FastAPI and Starlette apps on uvicorn bind a request's XID for that request only.

What a handler saw is what it answers; the middleware itself is also driven directly, in the
test's own task, to show it restores the context whatever the app does (over a real server each
request runs in a task of its own, which would hide a leak).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route

import pyseata.client as seata
from pyseata.client import TxRole, bind, bound, get_xid, global_transaction
from pyseata.client.context import bind_branch_type, get_branch_type
from pyseata.integrations.asgi import SeataMiddleware
from pyseata.integrations.fastapi import install
from pyseata.protocol.enums import BranchType, GlobalStatus

from .conftest import OTHER_XID, XID, UvicornThread, xid_number


class BusinessError(Exception):
    pass


def seen() -> dict[str, Any]:
    branch_type = get_branch_type()
    return {"xid": get_xid(), "branch_type": None if branch_type is None else branch_type.name}


def make_fastapi() -> FastAPI:
    app = FastAPI()
    install(app)
    install(app)  # once is enough; twice changes nothing

    @app.get("/xid")
    async def xid_async() -> dict[str, Any]:
        return seen()

    @app.get("/xid-sync")
    def xid_sync() -> dict[str, Any]:  # runs in the thread pool
        return seen()

    @app.get("/slow")
    async def slow(delay: float) -> dict[str, Any]:
        before = get_xid()
        await asyncio.sleep(delay)
        return {"before": before, "after": get_xid()}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for _ in range(3):
                await asyncio.sleep(0.01)
                yield json.dumps(seen()) + "\n"

        return StreamingResponse(chunks(), media_type="application/x-ndjson")

    @app.get("/stream-sync")
    def stream_sync() -> StreamingResponse:
        def chunks() -> Iterator[str]:  # Starlette iterates it in the thread pool
            for _ in range(3):
                yield json.dumps(seen()) + "\n"

        return StreamingResponse(chunks(), media_type="application/x-ndjson")

    @app.get("/business-error")
    async def business_error() -> None:
        raise BusinessError

    @app.exception_handler(BusinessError)
    async def on_business_error(request: Request, exc: BusinessError) -> JSONResponse:
        return JSONResponse(seen(), status_code=409)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("crash on purpose")

    @app.get("/leak")
    async def leak() -> dict[str, Any]:
        bind(OTHER_XID)  # a careless handler: binds and never unbinds
        bind_branch_type(BranchType.TCC)
        return seen()

    @app.get("/join")
    async def join() -> dict[str, Any]:
        async with global_transaction(name="service-b") as tx:
            return {"xid": tx.xid, "role": tx.role}

    return app


@pytest.fixture(scope="module")
def fastapi_url() -> Iterator[str]:
    server = UvicornThread(make_fastapi()).start()
    yield server.url
    server.stop()


@pytest.fixture
def http(fastapi_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fastapi_url, timeout=10) as client:
        yield client


def get(http: httpx.Client, path: str, xid: str | None = None, **headers: str) -> Any:
    if xid is not None:
        headers["TX_XID"] = xid
    response = http.get(path, headers=headers)
    return response.json() if response.headers.get("content-type") == "application/json" else response


NOTHING = {"xid": None, "branch_type": None}


# --- binding during the request, and only then ----------------------------------------------------


@pytest.mark.parametrize("path", ["/xid", "/xid-sync"])
def test_a_request_with_an_xid_runs_with_it_bound(http: httpx.Client, path: str) -> None:
    assert get(http, path, XID) == {"xid": XID, "branch_type": None}
    assert get(http, path) == NOTHING


@pytest.mark.parametrize("name", ["TX_XID", "tx_xid", "Tx-Xid", "TX-XID"])
def test_the_header_name_is_matched_case_insensitively_in_both_spellings(http: httpx.Client, name: str) -> None:
    assert get(http, "/xid", **{name: XID}) == {"xid": XID, "branch_type": None}


def test_a_tcc_branch_type_is_bound_with_the_xid(http: httpx.Client) -> None:
    assert get(http, "/xid", XID, TX_BRANCH_TYPE="TCC") == {"xid": XID, "branch_type": "TCC"}
    assert get(http, "/xid", XID, **{"tx-branch-type": "AT"}) == {"xid": XID, "branch_type": None}


@pytest.mark.parametrize("path", ["/stream", "/stream-sync"])
def test_a_streamed_response_runs_with_the_xid_for_every_chunk(http: httpx.Client, path: str) -> None:
    with http.stream("GET", path, headers={"TX_XID": XID}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines == [{"xid": XID, "branch_type": None}] * 3
    with http.stream("GET", path) as response:
        assert [json.loads(line) for line in response.iter_lines() if line] == [NOTHING] * 3


def test_exception_handlers_see_the_xid_and_nothing_survives_a_crash(http: httpx.Client) -> None:
    response = http.get("/business-error", headers={"TX_XID": XID})
    assert (response.status_code, response.json()) == (409, {"xid": XID, "branch_type": None})
    assert http.get("/crash", headers={"TX_XID": XID}).status_code == 500
    assert get(http, "/xid") == NOTHING


def test_what_a_handler_leaves_bound_goes_with_its_request(http: httpx.Client) -> None:
    assert get(http, "/leak", XID) == {"xid": OTHER_XID, "branch_type": "TCC"}
    assert get(http, "/xid") == NOTHING


async def test_concurrent_requests_with_different_xids_stay_apart(fastapi_url: str) -> None:
    async with httpx.AsyncClient(base_url=fastapi_url, timeout=10) as client:

        async def call(n: int) -> tuple[str | None, Any]:
            xid = xid_number(n) if n % 4 else None
            headers = {"TX_XID": xid} if xid else {}
            response = await client.get("/slow", params={"delay": 0.005 * (n % 5)}, headers=headers)
            return xid, response.json()

        results = await asyncio.gather(*(call(n) for n in range(40)))
    for xid, answer in results:
        assert answer == {"before": xid, "after": xid}


# --- what is not a usable XID -----------------------------------------------------------------------


def test_a_value_that_is_not_a_seata_xid_is_ignored_with_a_warning(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pyseata.integrations")
    for value in ["not-an-xid", "127.0.0.1:8091", "127.0.0.1:99999:5", "host:8091:12x", "h:1:" + "9" * 200]:
        assert get(http, "/xid", value) == NOTHING
    # Only this module's logger: a session-wide TC of other tests may log on its own meanwhile.
    ours = [record for record in caplog.records if record.name == "pyseata.integrations"]
    messages = "\n".join(record.getMessage() for record in ours)
    for shown in ["'not-an-xid'", "'127.0.0.1:8091'", "'127.0.0.1:99999:5'", "'host:8091:12x'", "longer than 128"]:
        assert shown in messages
    assert len(ours) == 5
    assert all("GET /xid from 127.0.0.1" in record.getMessage() for record in ours)


def test_two_different_xids_are_refused_and_repeats_of_one_accepted(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pyseata.integrations")
    assert get(http, "/xid", XID, **{"TX-XID": OTHER_XID}) == NOTHING
    assert "2 different XIDs" in caplog.text and XID in caplog.text and OTHER_XID in caplog.text
    assert get(http, "/xid", XID, **{"TX-XID": XID}) == {"xid": XID, "branch_type": None}
    assert get(http, "/xid", f"{XID}, {XID}") == {"xid": XID, "branch_type": None}


# --- joining as a participant against a real TC -----------------------------------------------------


@pytest.mark.usefixtures("runtime")
def test_global_transaction_in_a_handler_joins_and_leaves_the_end_to_the_caller(http: httpx.Client) -> None:
    with global_transaction(name="service-a") as tx:
        answer = get(http, "/join", tx.xid)
        assert answer == {"xid": tx.xid, "role": TxRole.PARTICIPANT}
        assert seata.reload(tx.xid).status() == GlobalStatus.Begin, "the participant must not end it"
    assert seata.reload(tx.xid).status() == GlobalStatus.Finished


# --- plain Starlette ------------------------------------------------------------------------------


def test_a_starlette_app_with_the_middleware_in_its_stack() -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(seen())

    app = Starlette(routes=[Route("/xid", endpoint)], middleware=[Middleware(SeataMiddleware)])
    server = UvicornThread(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert get(client, "/xid", XID) == {"xid": XID, "branch_type": None}
            assert get(client, "/xid") == NOTHING
    finally:
        server.stop()


# --- the middleware in the caller's own task --------------------------------------------------------


def scope(*headers: tuple[bytes, bytes], kind: str = "http") -> dict[str, Any]:
    return {"type": kind, "method": "GET", "path": "/direct", "headers": list(headers), "client": ("10.0.0.9", 5)}


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    pass


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_the_middleware_restores_the_context_after_an_exception_and_a_leak(kind: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert seen() == {"xid": XID, "branch_type": "TCC"}
        bind(OTHER_XID)
        bind_branch_type(BranchType.AT)
        raise BusinessError

    with pytest.raises(BusinessError):
        headers = (b"TX_XID", XID.encode()), (b"TX_BRANCH_TYPE", b"tcc")
        await SeataMiddleware(app)(scope(*headers, kind=kind), receive, send)
    assert seen() == NOTHING


async def test_the_middleware_restores_the_context_when_the_request_is_cancelled() -> None:
    entered = asyncio.Event()
    after: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await asyncio.sleep(60)

    async def request() -> None:  # the request's task: its context is what must be clean after
        try:
            await SeataMiddleware(app)(scope((b"tx-xid", XID.encode())), receive, send)
        finally:
            after.append(seen())

    task = asyncio.create_task(request())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == [NOTHING]


async def test_an_xid_bound_already_wins_over_a_different_header_as_in_seata(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pyseata.integrations")
    observed: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        observed.append(get_xid())

    with bound(OTHER_XID):
        await SeataMiddleware(app)(scope((b"TX_XID", XID.encode())), receive, send)
        assert get_xid() == OTHER_XID
    assert observed == [OTHER_XID]
    assert f"carries XID {XID} but {OTHER_XID} is bound already" in caplog.text


async def test_lifespan_passes_through_untouched() -> None:
    observed: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        observed.append((scope["type"], get_xid()))

    await SeataMiddleware(app)({"type": "lifespan"}, receive, send)
    assert observed == [("lifespan", None)]
