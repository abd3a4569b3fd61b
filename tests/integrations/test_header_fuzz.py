"""Hostile XID headers through the real ASGI and WSGI middleware: whatever the values (non-ASCII,
huge, control characters, several headers, repeated or joined with commas), the middleware never
raises, binds only a well-formed Seata XID the request carried (and binds one that it carried
alone), and restores what was bound before when the request ends, in the caller's own context."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import Iterable, Iterator
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyseata.client import bind, get_xid, unbind
from pyseata.client.context import bind_branch_type, get_branch_type, unbind_branch_type
from pyseata.integrations.asgi import SeataMiddleware
from pyseata.integrations.http import MAX_XID_LENGTH
from pyseata.integrations.wsgi import SeataWSGIMiddleware
from pyseata.protocol.enums import BranchType

FUZZ = settings(max_examples=250, deadline=None)

# A Seata XID as a TC writes it: ip:port:transactionId, the numbers as Java prints them.
VALID = re.compile(r"[!-~]+:[1-9][0-9]{0,4}:-?(0|[1-9][0-9]{0,18})")
INT64 = 2**63


def well_formed(xid: str) -> bool:
    if len(xid) > MAX_XID_LENGTH or not VALID.fullmatch(xid):
        return False
    _host, port, tx = xid.rsplit(":", 2)
    return int(port) < 65536 and -INT64 <= int(tx) < INT64


def carried(values: Iterable[str]) -> set[str]:
    """The distinct XIDs a request carries: servers join repeated headers with commas."""
    return {part.strip() for value in values for part in value.split(",") if part.strip()}


# --- header values ------------------------------------------------------------------------------------

hosts = st.sampled_from(["127.0.0.1", "10.0.0.7", "tc.local", "[::1]", "::1", "h"])
valid_xids = st.builds(lambda h, p, t: f"{h}:{p}:{t}", hosts, st.integers(1, 65535), st.integers(0, INT64 - 1))
NASTY = ["", " ", ",", "\x00", "\r\n", "\t", "\x7f", "\u00e9", "\u0663", "\u00b2", "\ufeff", "_", "+", "-", "0", ":",
         "\u202e", "\U0001f600", "x" * 200]


@st.composite
def mutated_xids(draw: st.DrawFn) -> str:
    xid = list(draw(valid_xids))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(xid)))
        xid[at:at] = draw(st.sampled_from(NASTY) | st.text(max_size=3))
    return "".join(xid)


header_values = st.one_of(
    valid_xids,
    mutated_xids(),
    st.text(max_size=40),
    st.sampled_from(NASTY),
    st.sampled_from(["h:1:1_2", "h:08091:1", "h:1:+5", "h:1:007", "h:0:1", "h:65536:1", "h:1:9223372036854775808",
                     ":1:1", "h:1:", "h:1:1 ", "h :1:1", "a" * 120 + ":8091:1"]),
    st.builds(lambda x: f"{x}, {x}", valid_xids),  # one XID, twice, joined by a proxy
    st.builds(lambda x: x + "9" * 200, valid_xids),  # huge
)
XID_NAMES = ["TX_XID", "TX-XID", "tx_xid", "Tx-Xid"]
xid_headers = st.lists(st.tuples(st.sampled_from(XID_NAMES), header_values), min_size=1, max_size=4)
branch_types = (
    st.none()
    | st.sampled_from(["TCC", "tcc", "AT", "SAGA", "", "\u0131cc", "TCC, AT"])
    | st.text(max_size=6)
)
PREBOUND = "10.9.9.9:8091:77"
Seen = tuple[str | None, BranchType | None]  # the XID and branch type a piece of code ran with


def check_binding(values: list[str], seen: Seen, prebound: str | None) -> None:
    xid, branch_type = seen
    xids = carried(values)
    if prebound is not None:
        assert xid == prebound  # a transaction bound already is the one the request runs in
        return
    if xid is not None:
        assert well_formed(xid), xid
        assert xids == {xid}, (xid, values)
    elif len(xids) == 1 and well_formed(next(iter(xids))):
        raise AssertionError(f"{values!r} carries the XID {next(iter(xids))!r}, which was not bound")
    if xid is None:
        assert branch_type is None


# --- ASGI ---------------------------------------------------------------------------------------------


def _asgi_round(headers: list[tuple[bytes, bytes]], prebound: str | None, app_binds: bool,
                kind: str = "http") -> tuple[Seen, Seen]:
    seen: list[Seen] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((get_xid(), get_branch_type()))
        if app_binds:  # a handler that binds and forgets to unbind
            bind("1.1.1.1:1:1")
            bind_branch_type(BranchType.SAGA)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def request() -> Seen:
        # In one task: the middleware must restore this task's own context, not rely on a copy.
        token = bind(prebound) if prebound else None
        scope = {"type": kind, "path": "/pay", "headers": headers, "client": ("10.0.0.1", 5)}
        if kind == "http":
            scope["method"] = "POST"
        await SeataMiddleware(app)(scope, receive, send)
        after = (get_xid(), get_branch_type())
        if token is not None:
            unbind(token)
        return after

    after = asyncio.run(request())
    assert len(seen) == 1
    return seen[0], after


@FUZZ
@given(xid_headers, branch_types, st.sampled_from([None, PREBOUND]), st.booleans(),
       st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=20)), max_size=2))
@example([("TX_XID", "h:1:1_2")], None, None, False, []).via("int() reads 1_2 as 12: was bound")
@example([("TX_XID", "h:1:+5")], None, None, False, [])
@example([("TX_XID", "127.0.0.1:8091:1"), ("TX-XID", "127.0.0.1:8091:1")], "TCC", None, True, [])
@example([("TX_XID", "127.0.0.1:8091:1"), ("TX-XID", "127.0.0.1:8091:2")], "TCC", None, False, [])
def test_asgi_headers(xids: list[tuple[str, str]], branch_type: str | None, prebound: str | None, app_binds: bool,
                      noise: list[tuple[bytes, bytes]]) -> None:
    headers = [(name.lower().encode(), value.encode("utf-8", "surrogatepass")) for name, value in xids]
    if branch_type is not None:
        headers.append((b"tx_branch_type", branch_type.encode("utf-8", "surrogatepass")))
    headers += noise
    seen, after = _asgi_round(headers, prebound, app_binds)
    # What the middleware reads: header bytes as latin-1, as ASGI servers hand them over.
    check_binding([value.decode("latin-1") for name, value in headers if name in (b"tx_xid", b"tx-xid")], seen,
                  prebound)
    assert after == (prebound, None)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([b"tx_xid", b"tx-xid", b"TX_XID", b"tx_branch_type"]),
                          st.binary(max_size=150)), min_size=1, max_size=3),
       st.sampled_from(["http", "websocket"]))
def test_asgi_raw_bytes(headers: list[tuple[bytes, bytes]], kind: str) -> None:
    seen, after = _asgi_round(headers, None, False, kind)
    check_binding([v.decode("latin-1") for n, v in headers if n.lower() in (b"tx_xid", b"tx-xid")], seen, None)
    assert after == (None, None)


def test_asgi_a_failing_app_still_unbinds() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert get_xid() == "127.0.0.1:8091:5"
        bind("1.1.1.1:1:1")
        raise RuntimeError("handler failed")

    async def request() -> str | None:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"tx-xid", b"127.0.0.1:8091:5")]}
        with contextlib.suppress(RuntimeError):
            await SeataMiddleware(app)(scope, _no_receive, _no_send)
        return get_xid()

    assert asyncio.run(request()) is None


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _no_send(message: Any) -> None:
    pass


# --- WSGI ---------------------------------------------------------------------------------------------


def _wsgi_round(xid_value: str | None, branch_type: str | None, prebound: str | None, app_binds: bool,
                streamed: bool) -> tuple[list[Seen], Seen]:
    seen: list[Seen] = []

    def body() -> Iterator[bytes]:
        seen.append((get_xid(), get_branch_type()))
        yield b"ok"

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append((get_xid(), get_branch_type()))
        if app_binds:
            bind("1.1.1.1:1:1")
            bind_branch_type(BranchType.SAGA)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body() if streamed else [b"ok"]

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/pay", "REMOTE_ADDR": "10.0.0.1", "SERVER_NAME": "x",
        "SERVER_PORT": "80", "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http",
    }
    if xid_value is not None:
        environ["HTTP_TX_XID"] = xid_value
    if branch_type is not None:
        environ["HTTP_TX_BRANCH_TYPE"] = branch_type
    token = bind(prebound) if prebound else None
    branch_token = bind_branch_type(BranchType.TCC) if prebound else None
    try:
        result = SeataWSGIMiddleware(app)(environ, lambda status, headers, exc_info=None: None)
        between = (get_xid(), get_branch_type())  # the server thread, between the call and the body
        assert between == ((prebound, BranchType.TCC) if prebound else (None, None))
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
        after = (get_xid(), get_branch_type())
    finally:
        if branch_token is not None:
            unbind_branch_type(branch_token)
        if token is not None:
            unbind(token)
    return seen, after


@FUZZ
@given(st.lists(header_values, min_size=1, max_size=3), branch_types, st.sampled_from([None, PREBOUND]),
       st.booleans(), st.booleans())
@example(["h:1:1_2"], None, None, False, False).via("int() reads 1_2 as 12: was bound")
@example(["127.0.0.1:8091:1", "127.0.0.1:8091:1"], "TCC", None, True, True)
@example(["127.0.0.1:8091:1", "127.0.0.1:8091:2"], None, None, False, True)
def test_wsgi_headers(values: list[str], branch_type: str | None, prebound: str | None, app_binds: bool,
                      streamed: bool) -> None:
    # A WSGI server joins repeated headers with ", " and hands values over as latin-1 text.
    joined = ", ".join(v.encode("utf-8", "surrogatepass").decode("latin-1") for v in values)
    bt = None if branch_type is None else branch_type.encode("utf-8", "surrogatepass").decode("latin-1")
    seen, after = _wsgi_round(joined, bt, prebound, app_binds, streamed)
    assert len(seen) == (2 if streamed else 1)
    for one in seen:
        if prebound is not None:
            assert one == (prebound, BranchType.TCC)
        else:
            check_binding([joined], one, None)
    assert seen[-1] == seen[0]  # the body runs with what the call ran with, whatever the call bound
    assert after == ((prebound, BranchType.TCC) if prebound else (None, None))


def test_the_checks_can_fail() -> None:
    """The property's own pieces: a carried valid XID must be bound, an invalid one must not."""
    assert well_formed("127.0.0.1:8091:5") and not well_formed("h:1:1_2") and not well_formed("h:1:+5")
    try:
        check_binding(["127.0.0.1:8091:5"], (None, None), None)
    except AssertionError:
        pass
    else:
        raise AssertionError("an unbound valid XID went unnoticed")
    seen, _after = _wsgi_round("127.0.0.1:8091:5", "TCC", None, False, False)
    assert seen == [("127.0.0.1:8091:5", BranchType.TCC)]
