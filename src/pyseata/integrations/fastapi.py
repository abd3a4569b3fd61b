"""FastAPI and Starlette: requests that carry an XID run inside that global transaction.

::

    app = FastAPI()
    app.add_middleware(SeataMiddleware)     # or: install(app)

    @app.post("/orders")
    async def create_order(order: Order):
        async with global_transaction():    # joins the caller's transaction; the caller commits
            ...

FastAPI is a Starlette application, so the same lines serve Starlette. ``add_middleware`` puts the
middleware outside the routing and exception handlers, so handlers, dependencies, exception
handlers and streamed responses all see the XID; ``def`` endpoints too (they run in a thread pool
with a copy of the request's context). See :mod:`pyseata.integrations.asgi` for the details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyseata.integrations.asgi import SeataMiddleware

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["SeataMiddleware", "install"]


def install(app: Starlette) -> None:
    """``app.add_middleware(SeataMiddleware)``, once: calling it again changes nothing."""
    added: list[object] = [middleware.cls for middleware in app.user_middleware]
    if SeataMiddleware not in added:
        app.add_middleware(SeataMiddleware)
