"""ASGI middleware: a request that carries an XID runs inside that global transaction.

::

    app.add_middleware(SeataMiddleware)          # FastAPI / Starlette
    app = SeataMiddleware(app)                   # any ASGI application

For each HTTP or WebSocket connection whose headers carry an XID (``TX_XID`` or ``TX-XID``, any
case; see :mod:`pyseata.integrations.http`) the XID is bound while the application handles it, so
``global_transaction()`` (REQUIRED) in a handler joins the caller's transaction as a participant
and neither commits nor rolls it back; the launcher does.

The binding lasts exactly as long as the application's call for that request, response streaming
included, and is undone when the call ends, normally, by an exception or by cancellation (a
disconnect). It never outlives the request: whatever the handler bound, the XID and branch type
that were bound before the request are restored. Code the framework runs in threads for the
request (FastAPI ``def`` endpoints, ``run_in_threadpool``) sees the XID, as those copy the context.

Starlette ``BackgroundTasks`` run inside the request's call, after the response was sent: they see
the XID too, but the caller's transaction may have ended by then; keep transactional work out of
them. An XID header that is not a Seata XID is ignored with a warning. Lifespan events pass through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeAlias

from pyseata.integrations.http import (
    BRANCH_TYPE_HEADER_NAMES,
    XID_HEADER_NAMES,
    RequestBinding,
    branch_type_from_values,
    xid_from_values,
)

__all__ = ["ASGIApp", "SeataMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

_XID_NAMES = frozenset(name.encode("latin-1") for name in XID_HEADER_NAMES)
_BRANCH_TYPE_NAMES = frozenset(name.encode("latin-1") for name in BRANCH_TYPE_HEADER_NAMES)


class SeataMiddleware:
    """Binds the XID an HTTP or WebSocket request carries while the wrapped ASGI app handles it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        binding = binding_for(scope)
        with binding.active():
            await self.app(scope, receive, send)


def binding_for(scope: Scope) -> RequestBinding:
    """What one ASGI request runs with: the XID of its headers (checked), or what is bound already."""
    xids: list[str] = []
    branch_types: list[str] = []
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()
    for raw_name, raw_value in headers:
        name = bytes(raw_name).lower()
        if name in _XID_NAMES:
            xids.append(bytes(raw_value).decode("latin-1"))
        elif name in _BRANCH_TYPE_NAMES:
            branch_types.append(bytes(raw_value).decode("latin-1"))
    if not xids:
        return RequestBinding(None)
    where = _describe(scope)
    return RequestBinding(xid_from_values(xids, where), branch_type_from_values(branch_types), where)


def _describe(scope: Scope) -> str:
    """``GET /path from 10.0.0.7`` for log lines."""
    method = scope.get("method", "WEBSOCKET" if scope["type"] == "websocket" else "?")
    client = scope.get("client")
    source = f" from {client[0]}" if client else ""
    return f"{method} {scope.get('path', '?')}{source}"
