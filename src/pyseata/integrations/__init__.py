"""Carrying the XID across HTTP: outgoing clients and incoming middleware.

Outgoing (:mod:`pyseata.integrations.http`): requests, httpx and aiohttp clients that add the
current XID to every request as Seata's ``TX_XID`` header (and its ``TX-XID`` twin)::

    from pyseata.integrations.http import SeataSession, install
    session = SeataSession()            # or install(requests.Session() / httpx.Client() / ...)

Incoming: middleware that binds a request's XID while the request is handled, so the handler
joins the caller's global transaction as a participant, and that never lets it outlive the request:

* ASGI (:mod:`~pyseata.integrations.asgi`), FastAPI and Starlette
  (:mod:`~pyseata.integrations.fastapi`): ``app.add_middleware(SeataMiddleware)``;
* WSGI (:mod:`~pyseata.integrations.wsgi`) and Flask (:mod:`~pyseata.integrations.flask`):
  ``SeataFlask(app)``.

None of these modules imports a web framework or an HTTP client library: each is imported only
when its helper is used.
"""

from pyseata.integrations.asgi import SeataMiddleware
from pyseata.integrations.http import (
    BRANCH_TYPE_HEADER,
    XID_HEADER,
    XID_HEADER_ALIAS,
    IntegrationUnavailableError,
    install,
    xid_headers,
)
from pyseata.integrations.wsgi import SeataWSGIMiddleware

__all__ = [
    "BRANCH_TYPE_HEADER",
    "XID_HEADER",
    "XID_HEADER_ALIAS",
    "IntegrationUnavailableError",
    "SeataMiddleware",
    "SeataWSGIMiddleware",
    "install",
    "xid_headers",
]
