"""Incoming, WSGI: Flask (and a bare WSGI app) on werkzeug's server bind a request's XID for that
request only, on servers that reuse their threads.

Requests are sent with the ``TX-XID`` spelling where they must reach the app: werkzeug drops
header names with underscores, so ``TX_XID`` alone never gets there (which is why pyseata's
clients send both; see test_chain for them at work).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask import Flask, Response

import pyseata.client as seata
from pyseata.client import TxRole, bind, get_xid, global_transaction
from pyseata.client.context import bind_branch_type, get_branch_type
from pyseata.integrations.flask import SeataFlask
from pyseata.integrations.wsgi import SeataWSGIMiddleware
from pyseata.protocol.enums import BranchType, GlobalStatus

from .conftest import OTHER_XID, XID, WsgiThread, xid_number

NOTHING = {"xid": None, "branch_type": None}


class BusinessError(Exception):
    pass


def seen() -> dict[str, Any]:
    branch_type = get_branch_type()
    return {"xid": get_xid(), "branch_type": None if branch_type is None else branch_type.name}


def make_flask() -> Flask:
    app = Flask("pyseata-wsgi-test")
    SeataFlask(app)
    SeataFlask().init_app(app)  # once is enough; twice changes nothing
    app.config["teardowns"] = []

    @app.get("/xid")
    def xid() -> dict[str, Any]:
        return {**seen(), "thread": threading.get_ident()}

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:  # runs after the view returned, while the server sends
            for _ in range(3):
                yield json.dumps(seen()) + "\n"

        return Response(chunks(), mimetype="application/x-ndjson")

    @app.get("/business-error")
    def business_error() -> None:
        raise BusinessError

    @app.errorhandler(BusinessError)
    def on_business_error(exc: BusinessError) -> tuple[dict[str, Any], int]:
        return seen(), 409

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("crash on purpose")

    @app.get("/leak")
    def leak() -> dict[str, Any]:
        bind(OTHER_XID)  # a careless view: binds and never unbinds
        bind_branch_type(BranchType.TCC)
        return {**seen(), "thread": threading.get_ident()}

    @app.get("/join")
    def join() -> dict[str, Any]:
        with global_transaction(name="service-c") as tx:
            return {"xid": tx.xid, "role": tx.role}

    @app.teardown_request
    def teardown(exc: BaseException | None) -> None:
        app.config["teardowns"].append(get_xid())

    return app


def get(url: str, xid: str | None = None, **headers: str) -> Any:
    if xid is not None:
        headers["TX-XID"] = xid
    response = requests.get(url, headers=headers, timeout=10)
    if response.headers.get("content-type") == "application/json":
        return response.json()
    return response


@pytest.fixture(scope="module")
def app() -> Flask:
    return make_flask()


@pytest.fixture(scope="module")
def one_thread(app: Flask) -> Iterator[str]:
    """A server that handles every request on one and the same thread."""
    server = WsgiThread(app).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def pooled(app: Flask) -> Iterator[str]:
    """A server with two worker threads, reused request after request."""
    server = WsgiThread(app, workers=2).start()
    yield server.url
    server.stop()


def without_thread(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "thread"}


# --- binding during the request, and only then ----------------------------------------------------


@pytest.mark.parametrize("name", ["TX-XID", "tx-xid", "Tx-Xid"])
def test_a_request_with_an_xid_runs_with_it_bound(one_thread: str, name: str) -> None:
    assert without_thread(get(one_thread + "/xid", **{name: XID})) == {"xid": XID, "branch_type": None}
    assert without_thread(get(one_thread + "/xid")) == NOTHING


def test_a_tcc_branch_type_is_bound_with_the_xid(one_thread: str) -> None:
    answer = get(one_thread + "/xid", XID, **{"TX-BRANCH-TYPE": "TCC"})
    assert without_thread(answer) == {"xid": XID, "branch_type": "TCC"}


def test_a_streamed_response_runs_with_the_xid_for_every_chunk(one_thread: str) -> None:
    response = get(one_thread + "/stream", XID)
    assert [json.loads(line) for line in response.text.splitlines()] == [{"xid": XID, "branch_type": None}] * 3
    response = get(one_thread + "/stream")
    assert [json.loads(line) for line in response.text.splitlines()] == [NOTHING] * 3


def test_error_handlers_and_teardown_see_the_xid(app: Flask, one_thread: str) -> None:
    del app.config["teardowns"][:]
    response = requests.get(one_thread + "/business-error", headers={"TX-XID": XID}, timeout=10)
    assert (response.status_code, response.json()) == (409, {"xid": XID, "branch_type": None})
    assert app.config["teardowns"] == [XID]


def test_nothing_leaks_into_the_next_request_on_the_same_thread(one_thread: str) -> None:
    first = get(one_thread + "/xid", XID)
    assert without_thread(get(one_thread + "/leak", XID)) == {"xid": OTHER_XID, "branch_type": "TCC"}
    assert requests.get(one_thread + "/crash", headers={"TX-XID": XID}, timeout=10).status_code == 500
    assert get(one_thread + "/stream", XID).status_code == 200
    after = get(one_thread + "/xid")
    assert without_thread(after) == NOTHING
    assert after["thread"] == first["thread"], "the same server thread handled both"


def test_a_pool_of_reused_threads_keeps_every_request_to_its_own_xid(pooled: str) -> None:
    def call(n: int) -> tuple[str, str | None, dict[str, Any]]:
        path = "/leak" if n % 5 == 0 else "/xid"
        xid = xid_number(n) if n % 3 else None
        return path, xid, get(pooled + path, xid)

    with ThreadPoolExecutor(8) as clients:
        results = list(clients.map(call, range(60)))
    for path, xid, answer in results:
        expected = {"xid": OTHER_XID, "branch_type": "TCC"} if path == "/leak" else {"xid": xid, "branch_type": None}
        assert without_thread(answer) == expected, (path, xid)
    threads = {answer["thread"] for _, _, answer in results}
    assert len(threads) <= 2, "two workers served everything, so each was reused"


# --- what is not a usable XID -----------------------------------------------------------------------


def test_a_value_that_is_not_a_seata_xid_is_ignored_with_a_warning(
    one_thread: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pyseata.integrations")
    assert without_thread(get(one_thread + "/xid", "no:such:xid")) == NOTHING
    assert "'no:such:xid'" in caplog.text and "GET /xid from 127.0.0.1" in caplog.text


# --- joining as a participant against a real TC -----------------------------------------------------


@pytest.mark.usefixtures("runtime")
def test_global_transaction_in_a_view_joins_and_leaves_the_end_to_the_caller(one_thread: str) -> None:
    with global_transaction(name="service-a") as tx:
        assert get(one_thread + "/join", tx.xid) == {"xid": tx.xid, "role": TxRole.PARTICIPANT}
        assert seata.reload(tx.xid).status() == GlobalStatus.Begin, "the participant must not end it"
    assert seata.reload(tx.xid).status() == GlobalStatus.Finished


# --- a bare WSGI app whose response fails half-way ---------------------------------------------------


def failing_stream_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/raise-in-call":
        bind(OTHER_XID)
        raise BusinessError

    def body() -> Iterator[bytes]:
        yield (get_xid() or "-").encode() + b"\n"
        bind(OTHER_XID)
        raise BusinessError

    return body()


def state_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({**seen(), "thread": threading.get_ident()}).encode()]


def routes(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    app = state_app if environ["PATH_INFO"] == "/xid" else failing_stream_app
    return app(environ, start_response)


def test_a_bare_wsgi_app_failing_in_the_call_or_in_the_stream_leaks_nothing() -> None:
    server = WsgiThread(SeataWSGIMiddleware(routes)).start()
    try:
        first = get(server.url + "/xid", XID)
        assert requests.get(server.url + "/raise-in-call", headers={"TX-XID": XID}, timeout=10).status_code == 500
        # HTTP/1.0, no length: the body is what was sent before the failure closed the connection.
        cut = requests.get(server.url + "/raise-in-stream", headers={"TX-XID": XID}, timeout=10)
        assert cut.text == XID + "\n"
        after = get(server.url + "/xid")
        assert without_thread(after) == NOTHING
        assert after["thread"] == first["thread"]
    finally:
        server.stop()


# --- the middleware on the caller's own thread -------------------------------------------------------


def test_the_caller_thread_is_clean_after_a_streamed_and_closed_response() -> None:
    closed: list[Any] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield (get_xid() or "-").encode()
            bind(OTHER_XID)
            yield (get_xid() or "-").encode()

        def close(self) -> None:
            closed.append(get_xid())

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [])
        return Body()

    result = SeataWSGIMiddleware(app)({"HTTP_TX_XID": XID, "PATH_INFO": "/"}, lambda *args: None)
    assert get_xid() is None, "nothing is bound between the call and the iteration"
    chunks = []
    for chunk in result:
        chunks.append(chunk)
        assert get_xid() is None, "nor between two chunks"
    result.close()  # type: ignore[attr-defined]
    assert chunks == [XID.encode(), OTHER_XID.encode()]
    assert closed == [XID]
    assert seen() == NOTHING


def test_the_flask_test_client_in_a_thread_with_an_xid_of_its_own_keeps_it() -> None:
    app = make_flask()
    with seata.bound(OTHER_XID):
        answer = app.test_client().get("/xid", headers={"TX-XID": XID}).get_json()
        assert get_xid() == OTHER_XID
    assert without_thread(answer) == {"xid": OTHER_XID, "branch_type": None}, "as Seata: a bound XID wins"
    assert without_thread(app.test_client().get("/xid", headers={"TX-XID": XID}).get_json())["xid"] == XID
    assert get_xid() is None
