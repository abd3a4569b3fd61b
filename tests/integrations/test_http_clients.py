"""Outgoing: requests, httpx (sync and async) and aiohttp send the bound XID, and only then.

Every request goes to a real HTTP server that answers with the header lines it received, as they
came over the wire.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import pytest
import requests

from pyseata.client import bound
from pyseata.client.context import bind_branch_type, unbind_branch_type
from pyseata.integrations.http import (
    SeataSession,
    aiohttp_trace_config,
    httpx_async_event_hooks,
    httpx_event_hooks,
    install,
)
from pyseata.protocol.enums import BranchType

from .conftest import XID, EchoServer, xid_number

Headers = list[tuple[str, str]]
XID_NAMES = {"tx_xid", "tx-xid"}
BRANCH_NAMES = {"tx_branch_type", "tx-branch-type"}


def seata_headers(received: Headers) -> Headers:
    return [(name, value) for name, value in received if name.lower() in XID_NAMES | BRANCH_NAMES]


# --- one way to send a GET per client kind: url, extra headers -> the header lines received ------


def via_requests_session(url: str, headers: dict[str, str]) -> Headers:
    with SeataSession() as session:
        return [tuple(item) for item in session.get(url, headers=headers, timeout=5).json()]


def via_requests_install(url: str, headers: dict[str, str]) -> Headers:
    with requests.Session() as session:
        install(session)
        install(session)  # idempotent
        return [tuple(item) for item in session.get(url, headers=headers, timeout=5).json()]


def via_httpx_hooks(url: str, headers: dict[str, str]) -> Headers:
    with httpx.Client(event_hooks=httpx_event_hooks(), follow_redirects=True, timeout=5) as client:
        return [tuple(item) for item in client.get(url, headers=headers).json()]


def via_httpx_install(url: str, headers: dict[str, str]) -> Headers:
    with httpx.Client(follow_redirects=True, timeout=5) as client:
        install(install(client))
        return [tuple(item) for item in client.get(url, headers=headers).json()]


def via_httpx_async(url: str, headers: dict[str, str]) -> Headers:
    async def get() -> Headers:
        hooks = httpx_async_event_hooks()
        async with httpx.AsyncClient(event_hooks=hooks, follow_redirects=True, timeout=5) as client:
            return [tuple(item) for item in (await client.get(url, headers=headers)).json()]

    return asyncio.run(get())  # the task starts with a copy of this context: it sees the XID


def via_httpx_async_install(url: str, headers: dict[str, str]) -> Headers:
    async def get() -> Headers:
        async with httpx.AsyncClient(follow_redirects=True, timeout=5) as client:
            install(install(client))
            return [tuple(item) for item in (await client.get(url, headers=headers)).json()]

    return asyncio.run(get())


def via_aiohttp_trace(url: str, headers: dict[str, str]) -> Headers:
    async def get() -> Headers:
        session = aiohttp.ClientSession(trace_configs=[aiohttp_trace_config()])
        async with session, session.get(url, headers=headers) as response:
            return [tuple(item) for item in await response.json()]

    return asyncio.run(get())


def via_aiohttp_install(url: str, headers: dict[str, str]) -> Headers:
    async def get() -> Headers:
        async with aiohttp.ClientSession(headers={"X-Session-Default": "1"}) as session:
            install(install(session))
            async with session.get(url, headers=headers) as response:
                return [tuple(item) for item in await response.json()]

    return asyncio.run(get())


CLIENTS: dict[str, Callable[[str, dict[str, str]], Headers]] = {
    "requests-SeataSession": via_requests_session,
    "requests-install": via_requests_install,
    "httpx-hooks": via_httpx_hooks,
    "httpx-install": via_httpx_install,
    "httpx-async-hooks": via_httpx_async,
    "httpx-async-install": via_httpx_async_install,
    "aiohttp-trace-config": via_aiohttp_trace,
    "aiohttp-install": via_aiohttp_install,
}


@pytest.fixture(params=list(CLIENTS))
def send(request: pytest.FixtureRequest, echo: EchoServer) -> Callable[..., Headers]:
    get = CLIENTS[request.param]

    def send(path: str = "/echo", headers: dict[str, str] | None = None) -> Headers:
        return get(echo.url + path, headers or {})

    return send


def test_no_header_without_an_xid(send: Callable[..., Headers]) -> None:
    received = send()
    assert received, "the echo answered nothing"
    assert seata_headers(received) == []


def test_seata_header_and_its_dashed_twin_while_an_xid_is_bound(send: Callable[..., Headers]) -> None:
    with bound(XID):
        received = send()
    assert seata_headers(received) == [("TX_XID", XID), ("TX-XID", XID)]
    assert seata_headers(send()) == [], "the XID is sent while bound, and only then"


def test_tcc_branch_type_travels_with_the_xid(send: Callable[..., Headers]) -> None:
    with bound(XID):
        token = bind_branch_type(BranchType.TCC)
        try:
            received = dict(seata_headers(send()))
        finally:
            unbind_branch_type(token)
        assert received == {"TX_XID": XID, "TX-XID": XID, "TX_BRANCH_TYPE": "TCC", "TX-BRANCH-TYPE": "TCC"}
        token = bind_branch_type(BranchType.AT)
        try:
            assert dict(seata_headers(send())) == {"TX_XID": XID, "TX-XID": XID}, "only TCC is sent (as Seata's RPC)"
        finally:
            unbind_branch_type(token)


@pytest.mark.parametrize("name", ["TX_XID", "tx_xid", "Tx-Xid"])
def test_an_explicit_header_is_never_overwritten(send: Callable[..., Headers], name: str) -> None:
    explicit = "10.1.1.1:8091:77"
    with bound(XID):
        received = seata_headers(send(headers={name: explicit}))
    assert [(n.lower(), v) for n, v in received] == [(name.lower(), explicit)]


def test_the_xid_follows_redirects_once(send: Callable[..., Headers]) -> None:
    with bound(XID):
        received = send("/redirect")
    assert seata_headers(received) == [("TX_XID", XID), ("TX-XID", XID)]


def test_a_prepared_request_sent_again_later_does_not_keep_an_old_xid(echo: EchoServer) -> None:
    with SeataSession() as session:
        prepared = session.prepare_request(requests.Request("GET", echo.url + "/echo"))
        with bound(XID):
            first = session.send(prepared, timeout=5).json()
        later = session.send(prepared, timeout=5).json()
    assert seata_headers([tuple(h) for h in first]) == [("TX_XID", XID), ("TX-XID", XID)]
    assert seata_headers([tuple(h) for h in later]) == []


# --- one client, many threads or tasks: each sends its own XID ------------------------------------


def test_one_requests_session_shared_by_threads_sends_each_threads_xid(echo: EchoServer) -> None:
    results: dict[int, Headers] = {}

    with SeataSession() as session:

        def call(n: int) -> None:
            xid = xid_number(n) if n % 3 else None
            with bound(xid):
                results[n] = seata_headers([tuple(h) for h in session.get(echo.url, timeout=5).json()])

        threads = [threading.Thread(target=call, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    for n in range(12):
        assert results[n] == ([("TX_XID", xid_number(n)), ("TX-XID", xid_number(n))] if n % 3 else [])


async def _concurrently(get: Callable[[], Any]) -> dict[int, Headers]:
    results: dict[int, Headers] = {}

    async def call(n: int) -> None:
        with bound(xid_number(n) if n % 3 else None):
            await asyncio.sleep(0.001 * (n % 4))
            results[n] = seata_headers([tuple(h) for h in await get()])

    async with asyncio.TaskGroup() as group:
        for n in range(20):
            group.create_task(call(n))
    return results


def _assert_each_own(results: dict[int, Headers]) -> None:
    for n in range(20):
        assert results[n] == ([("TX_XID", xid_number(n)), ("TX-XID", xid_number(n))] if n % 3 else [])


async def test_one_httpx_async_client_shared_by_tasks_sends_each_tasks_xid(echo: EchoServer) -> None:
    async with httpx.AsyncClient(event_hooks=httpx_async_event_hooks(), timeout=5) as client:

        async def get() -> Any:
            return (await client.get(echo.url)).json()

        _assert_each_own(await _concurrently(get))


async def test_one_aiohttp_session_shared_by_tasks_sends_each_tasks_xid(echo: EchoServer) -> None:
    async with aiohttp.ClientSession(trace_configs=[aiohttp_trace_config()]) as session:

        async def get() -> Any:
            async with session.get(echo.url) as response:
                return await response.json()

        _assert_each_own(await _concurrently(get))


# --- setup errors ---------------------------------------------------------------------------------


def test_install_names_what_it_takes() -> None:
    with pytest.raises(TypeError, match=r"requests\.Session.*not builtins\.object"):
        install(object())


def test_importing_without_the_http_libraries_works_and_using_one_says_what_is_missing() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        for name in ("requests", "httpx", "aiohttp"):
            sys.modules[name] = None  # as if not installed: importing it raises ImportError
        import pyseata.integrations, pyseata.integrations.http as http
        import pyseata.integrations.asgi, pyseata.integrations.wsgi
        import pyseata.integrations.fastapi, pyseata.integrations.flask
        out = {"headers": http.xid_headers()}
        for what in ("SeataSession", "aiohttp_trace_config"):
            try:
                obj = getattr(http, what)
                obj() if what != "SeataSession" else None
            except ImportError as exc:
                out[what] = [type(exc).__name__, str(exc)]
        print(json.dumps(out))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["headers"] == {}
    assert out["SeataSession"][0] == "IntegrationUnavailableError"
    assert "'requests'" in out["SeataSession"][1] and "pip install" in out["SeataSession"][1]
    assert out["aiohttp_trace_config"][0] == "IntegrationUnavailableError"
    assert "'aiohttp'" in out["aiohttp_trace_config"][1]
