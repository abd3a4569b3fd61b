"""Flask: requests that carry an XID run inside that global transaction.

::

    app = Flask(__name__)
    SeataFlask(app)                 # or: seata = SeataFlask(); seata.init_app(app)

    @app.post("/stock/deduct")
    def deduct():
        with global_transaction():  # joins the caller's transaction; the caller commits
            ...

``init_app`` wraps ``app.wsgi_app`` in :class:`~pyseata.integrations.wsgi.SeataWSGIMiddleware`
(Flask's documented way to add WSGI middleware), once per app. Everything Flask runs for the
request sees the XID: before/after-request functions, the view, error handlers, teardown
functions and a streamed response's generator; nothing of it is left on the server thread
afterwards. See :mod:`pyseata.integrations.wsgi` for the details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyseata.integrations.wsgi import SeataWSGIMiddleware

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["SeataFlask", "SeataWSGIMiddleware"]

EXTENSION_KEY = "pyseata"


class SeataFlask:
    """A Flask extension that binds each request's XID (see the module doc)."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wraps ``app.wsgi_app``; calling it again for the same app changes nothing."""
        if EXTENSION_KEY in app.extensions:
            return
        app.wsgi_app = SeataWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = self
