"""Real HTTP servers on 127.0.0.1, port 0, for the XID propagation tests, and the TC fixtures.

* :class:`UvicornThread`: an ASGI app (FastAPI, Starlette) served by uvicorn on a thread.
* :class:`WsgiThread`: a WSGI app (Flask) served by werkzeug's server on a thread: one thread for
  every request (``threaded=False``: the plainest case of thread reuse), a thread per request
  (``threaded=True``), or a fixed pool of worker threads (``workers=N``, as waitress, cheroot or
  gunicorn's gthread do), which reuses its threads for request after request.
* :class:`EchoServer`: answers every request with the header lines it received, names spelled as
  they came over the wire, in order; ``/redirect`` answers 302 to ``/echo``.

The TC, the scripted RM and the client runtime come from ``tests/client/conftest.py``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest
import uvicorn
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from client.conftest import RunningTc, ScriptedRm, client_config, rm, runtime, session_rm, tc_address

__all__ = [
    "EchoServer",
    "RunningTc",
    "ScriptedRm",
    "UvicornThread",
    "WsgiThread",
    "client_config",
    "rm",
    "runtime",
    "session_rm",
    "tc_address",
]

XID = "127.0.0.1:8091:2251799813685249"
OTHER_XID = "10.0.0.7:8091:2251799813685250"
START_TIMEOUT = 10.0


def xid_number(n: int) -> str:
    return f"127.0.0.1:8091:{4000000000 + n}"


# --- ASGI ---------------------------------------------------------------------------------------


class UvicornThread:
    """Serves ``app`` with uvicorn (asyncio loop, h11) on a daemon thread until :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", lifespan="off", loop="asyncio", http="h11", ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="test-uvicorn", daemon=True)  # fmt: skip
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def start(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)
        self.socket.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


# --- WSGI ---------------------------------------------------------------------------------------


class _Http10Handler(WSGIRequestHandler):
    # One request per connection, so a single-threaded or pooled server never sits on an idle
    # keep-alive connection (werkzeug switches its handler class to HTTP/1.1 once any threaded
    # server was made).
    protocol_version = "HTTP/1.0"


class PooledWSGIServer(BaseWSGIServer):
    """werkzeug's server with a fixed pool of worker threads, reused from request to request."""

    def __init__(self, app: Any, workers: int) -> None:
        super().__init__("127.0.0.1", 0, app, handler=_Http10Handler)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="test-wsgi-worker")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(self._handle, request, client_address)

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=True)


class ServerThread:
    """Serves a socketserver-style ``server`` (``serve_forever``/``shutdown``) on a daemon thread
    until :meth:`stop`."""

    def __init__(self, server: Any, name: str) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=name, daemon=True)  # fmt: skip
        self.url = f"http://127.0.0.1:{server.server_port}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(START_TIMEOUT)
        assert not self.thread.is_alive(), f"the server of {self.thread.name} did not stop"


class WsgiThread(ServerThread):
    """Serves a WSGI ``app`` with werkzeug on a daemon thread until :meth:`stop`."""

    def __init__(self, app: Any, *, threaded: bool = False, workers: int = 0) -> None:
        server: BaseWSGIServer
        if workers:
            server = PooledWSGIServer(app, workers)
        elif threaded:
            server = make_server("127.0.0.1", 0, app, threaded=True)
        else:
            server = make_server("127.0.0.1", 0, app, request_handler=_Http10Handler)
        super().__init__(server, "test-wsgi")


# --- a header echo --------------------------------------------------------------------------------


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/echo")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps(list(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class EchoServer(ServerThread):
    def __init__(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
        server.daemon_threads = True
        super().__init__(server, "test-echo")


@pytest.fixture(scope="session")
def echo() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.stop()
