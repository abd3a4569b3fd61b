"""WSGI middleware: a request that carries an XID runs inside that global transaction.

::

    app = SeataWSGIMiddleware(app)               # any WSGI application
    SeataFlask(flask_app)                        # Flask: see pyseata.integrations.flask

The XID of a request (the ``TX_XID`` header, which a WSGI server presents as ``HTTP_TX_XID``; the
``TX-XID`` spelling lands on the same key, see :mod:`pyseata.integrations.http` for why clients
send both) is bound while the application runs for that request, so ``global_transaction()``
(REQUIRED) in a view joins the caller's transaction as a participant and does not end it.

WSGI servers reuse their threads (a thread pool, or one thread for everything), and a
:class:`contextvars.ContextVar` set in a plain thread stays set there: an XID left bound would
leak into whatever request that thread handles next. So the XID is bound only while the
application's code runs for the request: during the application call, and again during each step
of the response iteration (a streamed body is produced after the call returned) and its
``close()``. After each of these the XID and branch type bound before are restored, whatever the
view bound or forgot to unbind and whether it returned or raised. Between steps, and after the
request, the server thread runs with no XID.

An XID header that is not a Seata XID is ignored with a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pyseata.integrations.http import RequestBinding, branch_type_from_values, xid_from_values

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["SeataWSGIMiddleware"]

_XID_KEY = "HTTP_TX_XID"  # TX_XID and TX-XID both
_BRANCH_TYPE_KEY = "HTTP_TX_BRANCH_TYPE"


class SeataWSGIMiddleware:
    """Binds the XID a request carries while the wrapped WSGI application handles it."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        binding = binding_for(environ)
        with binding.active():
            result = self.app(environ, start_response)
        if isinstance(result, (list, tuple)) or _is_file_wrapper(result, environ):
            return result  # iterating it runs no application code (and keeps sendfile working)
        return _BoundIterable(result, binding)


def binding_for(environ: WSGIEnvironment) -> RequestBinding:
    """What one WSGI request runs with: the XID of its headers (checked), or what is bound already."""
    raw = environ.get(_XID_KEY)
    if not raw:
        return RequestBinding(None)
    where = f"{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '?')}"
    if environ.get("REMOTE_ADDR"):
        where += f" from {environ['REMOTE_ADDR']}"
    branch_type = environ.get(_BRANCH_TYPE_KEY)
    return RequestBinding(
        xid_from_values([str(raw)], where),
        branch_type_from_values([str(branch_type)] if branch_type else []),
        where,
    )


def _is_file_wrapper(result: Iterable[bytes], environ: WSGIEnvironment) -> bool:
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and isinstance(result, wrapper)


class _BoundIterable:
    """The application's response iterable, each step of it run with the request's XID bound."""

    __slots__ = ("_binding", "_iterator", "_result")

    def __init__(self, result: Iterable[bytes], binding: RequestBinding) -> None:
        self._result = result
        self._binding = binding
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with self._binding.active():
            if self._iterator is None:
                self._iterator = iter(self._result)
            return next(self._iterator)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            with self._binding.active():
                close()
