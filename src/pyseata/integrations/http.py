"""The XID over HTTP: the header names, the outgoing clients, and the reading of incoming values.

Outgoing: while an XID is bound (:func:`pyseata.client.get_xid`), every request a prepared client
sends carries it, as Seata's HTTP executor does, in the header ``TX_XID``::

    session = SeataSession()                              # requests
    install(existing_requests_session)                    # the same, on a session you already have
    httpx.Client(event_hooks=httpx_event_hooks())         # httpx
    httpx.AsyncClient(event_hooks=httpx_async_event_hooks())
    install(existing_httpx_client)                        # Client or AsyncClient
    aiohttp.ClientSession(trace_configs=[aiohttp_trace_config()])
    install(existing_aiohttp_session)

The XID is read when the request is sent, in the sending thread or task, so one client shared by
many threads or tasks sends each one's own XID. With no XID bound nothing is added. A header the
caller set (``TX_XID`` or ``TX-XID``, in any case) is never overwritten: then nothing is added.

**Header names.** ``TX_XID`` is Seata's (``RootContext.KEY_XID``; Spring Cloud Alibaba and
seata-go read the same). Its underscore is a problem in front of WSGI: werkzeug's server (Flask's),
gunicorn >= 22 and nginx (``underscores_in_headers off``) drop headers with underscores, so the
XID would silently vanish. Every request therefore also carries the same value as ``TX-XID``,
which a CGI/WSGI server turns into the same ``HTTP_TX_XID`` key. Java services keep reading
``TX_XID``; pyseata's middleware reads both, case-insensitively.

Seata's HTTP integration carries only the XID. As its Dubbo and gRPC filters do, a TCC branch
type (:func:`pyseata.client.context.get_branch_type` is ``BranchType.TCC``) travels too, as
``TX_BRANCH_TYPE`` / ``TX-BRANCH-TYPE: TCC``; other branch types are not sent.

Incoming values are checked by :func:`xid_from_values` (used by the ASGI and WSGI middleware): an
XID not of Seata's form ``ip:port:transactionId`` is ignored with a warning that shows it.

requests, httpx and aiohttp are optional: this module imports none of them. Using a helper for a
library that is not installed raises :class:`IntegrationUnavailableError` naming the package.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from pyseata.client import context
from pyseata.errors import PyseataError
from pyseata.protocol.enums import BranchType
from pyseata.protocol.xid import InvalidXidError, parse_xid

if TYPE_CHECKING:
    import aiohttp
    import httpx
    import requests
    from multidict import CIMultiDict

__all__ = [
    "BRANCH_TYPE_HEADER",
    "BRANCH_TYPE_HEADER_ALIAS",
    "MAX_XID_LENGTH",
    "XID_HEADER",
    "XID_HEADER_ALIAS",
    "IntegrationUnavailableError",
    "RequestBinding",
    "add_xid_headers",
    "aiohttp_trace_config",
    "branch_type_from_values",
    "httpx_async_event_hooks",
    "httpx_event_hooks",
    "install",
    "xid_from_values",
    "xid_headers",
]

log = logging.getLogger("pyseata.integrations")

XID_HEADER = "TX_XID"  # Seata's RootContext.KEY_XID
XID_HEADER_ALIAS = "TX-XID"  # survives servers and proxies that drop headers with underscores
BRANCH_TYPE_HEADER = "TX_BRANCH_TYPE"  # Seata's RootContext.KEY_BRANCH_TYPE (Dubbo/gRPC, TCC only)
BRANCH_TYPE_HEADER_ALIAS = "TX-BRANCH-TYPE"
MAX_XID_LENGTH = 128  # Seata's xid columns are VARCHAR(128)

XID_HEADER_NAMES = frozenset({XID_HEADER.lower(), XID_HEADER_ALIAS.lower()})
BRANCH_TYPE_HEADER_NAMES = frozenset({BRANCH_TYPE_HEADER.lower(), BRANCH_TYPE_HEADER_ALIAS.lower()})

_SHOWN = 160  # how much of a rejected value a log line shows
# The numbers of an XID as a TC prints them: int() alone would also read "1_2", "+5" or "007", so
# one transaction could arrive under several spellings, none of which the TC wrote.
_XID_NUMBERS = re.compile(r".+:[1-9][0-9]*:-?(?:0|[1-9][0-9]*)")

C = TypeVar("C")


class IntegrationUnavailableError(PyseataError, ImportError):
    """An HTTP integration was used whose library is not installed."""


def _missing(package: str, what: str) -> IntegrationUnavailableError:
    return IntegrationUnavailableError(
        f"{what} needs the optional package {package!r}, which is not installed; "
        f"install it with: pip install {package} (or pip install 'pyseata[http]')"
    )


# --- what goes out ------------------------------------------------------------------------------


def xid_headers() -> dict[str, str]:
    """The headers a request sent now should carry: empty when no XID is bound."""
    xid = context.get_xid()
    if xid is None:
        return {}
    headers = {XID_HEADER: xid, XID_HEADER_ALIAS: xid}
    if context.get_branch_type() is BranchType.TCC:
        headers[BRANCH_TYPE_HEADER] = headers[BRANCH_TYPE_HEADER_ALIAS] = BranchType.TCC.name
    return headers


def add_xid_headers(headers: MutableMapping[str, str]) -> bool:
    """Adds :func:`xid_headers` to ``headers`` unless the caller set an XID header (any case).

    Works on plain dicts and on the clients' case-insensitive mappings. Returns whether it added
    anything. A branch-type header the caller set is kept; the XID is added beside it.
    """
    wanted = xid_headers()
    if not wanted:
        return False
    present = {str(name).lower() for name in headers}
    if present & XID_HEADER_NAMES:
        return False
    keep_branch_type = bool(present & BRANCH_TYPE_HEADER_NAMES)
    for name, value in wanted.items():
        if keep_branch_type and name.lower() in BRANCH_TYPE_HEADER_NAMES:
            continue
        headers[name] = value
    return True


# --- requests -----------------------------------------------------------------------------------

_INSTALLED = "__pyseata_xid__"  # marks a wrapped send, a hook, a trace callback: install is idempotent


def _with_xid(request: requests.PreparedRequest) -> requests.PreparedRequest:
    if not xid_headers():
        return request
    # A copy: a PreparedRequest the caller sends again later must not keep this XID.
    request = request.copy()
    add_xid_headers(request.headers)
    return request


def _requests_send(send: Callable[..., requests.Response]) -> Callable[..., requests.Response]:
    """Wraps ``Session.send``: everything a session sends goes through it, redirects included."""

    @functools.wraps(send)
    def send_with_xid(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        return send(_with_xid(request), **kwargs)

    setattr(send_with_xid, _INSTALLED, True)
    return send_with_xid


def _install_requests(session: requests.Session) -> None:
    if not getattr(session.send, _INSTALLED, False):
        session.send = _requests_send(session.send)  # type: ignore[method-assign]


@functools.cache
def _session_class() -> type[requests.Session]:
    try:
        import requests
    except ImportError as exc:
        raise _missing("requests", "pyseata.integrations.http.SeataSession") from exc

    class SeataSession(requests.Session):
        """A ``requests.Session`` that sends the current XID (see the module doc)."""

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            return super().send(_with_xid(request), **kwargs)

    SeataSession.__module__ = __name__
    SeataSession.__qualname__ = "SeataSession"
    return SeataSession


# Not in __all__: ``from pyseata.integrations.http import *`` must work without requests installed.
if TYPE_CHECKING:

    class SeataSession(requests.Session):
        """A ``requests.Session`` that sends the current XID (see the module doc)."""

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            return super().send(request, **kwargs)

else:

    def __getattr__(name: str) -> Any:
        # SeataSession subclasses requests.Session: built on first use, so importing this module
        # never imports requests.
        if name == "SeataSession":
            return _session_class()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- httpx --------------------------------------------------------------------------------------


def _httpx_request_hook(request: httpx.Request) -> None:
    add_xid_headers(request.headers)


async def _httpx_async_request_hook(request: httpx.Request) -> None:
    add_xid_headers(request.headers)


setattr(_httpx_request_hook, _INSTALLED, True)
setattr(_httpx_async_request_hook, _INSTALLED, True)


def httpx_event_hooks() -> dict[str, list[Callable[..., Any]]]:
    """``event_hooks`` for ``httpx.Client``: the request hook adds the XID (redirects included)."""
    return {"request": [_httpx_request_hook], "response": []}


def httpx_async_event_hooks() -> dict[str, list[Callable[..., Any]]]:
    """``event_hooks`` for ``httpx.AsyncClient`` (its hooks must be coroutines)."""
    return {"request": [_httpx_async_request_hook], "response": []}


def _install_httpx(client: httpx.Client | httpx.AsyncClient, is_async: bool) -> None:
    hooks = client.event_hooks
    if any(getattr(hook, _INSTALLED, False) for hook in hooks.get("request", [])):
        return
    hook = _httpx_async_request_hook if is_async else _httpx_request_hook
    client.event_hooks = {**hooks, "request": [*hooks.get("request", []), hook]}


# --- aiohttp ------------------------------------------------------------------------------------


async def _aiohttp_on_request_start(
    session: aiohttp.ClientSession, trace_config_ctx: Any, params: aiohttp.TraceRequestStartParams
) -> None:
    # params.headers is the request's own header dict (session defaults already merged in):
    # what is added here is sent, on every hop of a redirect chain.
    headers: CIMultiDict[str] = params.headers
    add_xid_headers(headers)


def aiohttp_trace_config() -> aiohttp.TraceConfig:
    """A ``TraceConfig`` for ``aiohttp.ClientSession(trace_configs=[...])`` that adds the XID."""
    try:
        import aiohttp
    except ImportError as exc:
        raise _missing("aiohttp", "pyseata.integrations.http.aiohttp_trace_config") from exc
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_aiohttp_on_request_start)
    return config


def _install_aiohttp(session: aiohttp.ClientSession) -> None:
    configs = session.trace_configs  # the list the session reads on every request
    if any(_aiohttp_on_request_start in config.on_request_start for config in configs):
        return
    config = aiohttp_trace_config()
    config.freeze()
    configs.append(config)


# --- one entry point for existing clients -------------------------------------------------------


def install(client: C) -> C:
    """Makes an existing client send the current XID; returns it. Idempotent.

    Takes a ``requests.Session``, an ``httpx.Client`` or ``httpx.AsyncClient``, or an
    ``aiohttp.ClientSession``. (aiohttp: prefer ``trace_configs=[aiohttp_trace_config()]`` at
    construction; ``install`` appends to the session's trace-config list.)
    """
    # Only libraries already imported can be what ``client`` is: nothing is imported here.
    requests, httpx, aiohttp = (sys.modules.get(name) for name in ("requests", "httpx", "aiohttp"))
    if requests is not None and isinstance(client, requests.Session):
        _install_requests(client)
    elif httpx is not None and isinstance(client, httpx.Client):
        _install_httpx(client, is_async=False)
    elif httpx is not None and isinstance(client, httpx.AsyncClient):
        _install_httpx(client, is_async=True)
    elif aiohttp is not None and isinstance(client, aiohttp.ClientSession):
        _install_aiohttp(client)
    else:
        raise TypeError(
            f"install() takes a requests.Session, an httpx.Client / httpx.AsyncClient or an "
            f"aiohttp.ClientSession, not {type(client).__module__}.{type(client).__qualname__}"
        )
    return client


# --- what comes in ------------------------------------------------------------------------------


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")


def _distinct(values: Iterable[str]) -> list[str]:
    """The distinct non-empty values, also when a server joined repeated headers with commas."""
    seen: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            if part.strip():
                seen[part.strip()] = None
    return list(seen)


def xid_from_values(values: Iterable[str], where: str = "request") -> str | None:
    """The XID carried by a request's XID header values, or None.

    ``values`` are the values of every XID header (``TX_XID``, ``TX-XID``, any case). A value that
    is not a Seata XID (``ip:port:transactionId``, at most 128 characters), or several different
    XIDs, are ignored with a warning naming the values and ``where``.
    """
    candidates = _distinct(values)
    if not candidates:
        return None
    if len(candidates) > 1:
        log.warning("ignoring the XID headers of %s: they carry %d different XIDs (%s)",
                    where, len(candidates), ", ".join(map(_shown, candidates)))  # fmt: skip
        return None
    xid = candidates[0]
    try:
        if len(xid) > MAX_XID_LENGTH:
            raise InvalidXidError(f"longer than {MAX_XID_LENGTH} characters ({len(xid)})")
        if not (xid.isascii() and xid.isprintable()) or " " in xid:
            raise InvalidXidError("not printable ASCII without spaces")
        parse_xid(xid)
        if not _XID_NUMBERS.fullmatch(xid):
            raise InvalidXidError("its port and transaction id are not plain decimal numbers")
    except InvalidXidError as exc:
        log.warning("ignoring the XID header of %s: %s is not a Seata XID (ip:port:transactionId): %s",
                    where, _shown(xid), exc)  # fmt: skip
        return None
    return xid


def branch_type_from_values(values: Iterable[str]) -> BranchType | None:
    """The branch type a request carries: only TCC is honoured, as Seata's RPC filters do."""
    candidates = _distinct(values)
    if len(candidates) == 1 and candidates[0].upper() == BranchType.TCC.name:
        return BranchType.TCC
    return None


class RequestBinding:
    """The XID (and branch type) one incoming request runs with: Seata's ``TransactionPropagationInterceptor``.

    Decided once, when the request arrives: the request's XID, unless one is bound already (as
    Seata does; a different one bound already wins, with a warning); with no XID header, whatever
    is bound already (normally nothing). :meth:`active` binds it for a block, and restores the XID
    and branch type bound before the block when it ends, normally or not, whatever the block bound
    or forgot to unbind: nothing outlives the block. A streamed response enters it once per chunk.
    """

    __slots__ = ("branch_type", "xid")

    def __init__(self, xid: str | None, branch_type: BranchType | None = None, where: str = "request") -> None:
        bound, bound_type = context.get_xid(), context.get_branch_type()
        if xid is None or bound is not None:
            if xid is not None and bound != xid:
                log.warning("%s carries XID %s but %s is bound already: keeping %s", where, xid, bound, bound)
            xid, branch_type = bound, bound_type
        else:
            log.debug("xid=%s bound for %s", xid, where)
        self.xid = xid
        self.branch_type = branch_type

    @contextmanager
    def active(self) -> Iterator[str | None]:
        """Runs the block with this request's XID bound; yields it (None: no XID)."""
        before = context.Suspended(context.get_xid(), context.get_branch_type())
        context.resume(context.Suspended(self.xid, self.branch_type))
        try:
            yield self.xid
        finally:
            context.resume(before)
