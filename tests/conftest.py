"""Shared test machinery: how ``async def`` tests run, where ../shared/conformance is (and how its
captures read), and how a missing service is reported.

``async def`` tests run on a fresh event loop each (no asyncio plugin needed). A test that takes a
``loop_kind`` fixture whose value is "uvloop" runs on uvloop's loop. Any error the loop reports
that nobody handled ("Future exception was never retrieved", an exception in a protocol
callback...) fails the test, unless it is marked ``loop_errors_expected``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the dev environment
    uvloop = None  # type: ignore[assignment]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE_DIR = PROJECT_ROOT.parent / "shared" / "conformance"
IN_CI = bool(os.environ.get("CI"))
TEST_DEADLINE = 90.0  # one async test, overall; pytest-timeout is the outer guard

# Property tests explore new random inputs on a developer machine; in CI each test draws the same
# inputs every run (derived from its source), so a run's verdict depends on the code alone. Long
# random exploration belongs to the developer runs and the atheris targets in fuzz/.
settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    settings.load_profile("ci")


def missing(reason: str) -> None:
    """Skip with ``reason`` on a developer machine; fail in CI, where everything must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    if not CONFORMANCE_DIR.is_dir():
        missing(f"conformance data not found at {CONFORMANCE_DIR} (it lives in ../shared/conformance)")
    return CONFORMANCE_DIR


def load_capture(path: Path) -> list[tuple[str, int, bytes]]:
    """A conformance capture: ``(direction, connection, frame bytes)`` per line of
    ``direction<TAB>connection<TAB>frame hex``."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            direction, conn, frame_hex = line.split("\t")
            rows.append((direction, int(conn), bytes.fromhex(frame_hex)))
    return rows


# --- running async tests -------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "loop_errors_expected: the loop may report unhandled errors")


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Runs the test on asyncio's loop and again on uvloop's."""
    if request.param == "uvloop" and uvloop is None:
        pytest.skip("uvloop is not installed")
    return str(request.param)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in inspect.signature(func).parameters}
    strict = pyfuncitem.get_closest_marker("loop_errors_expected") is None
    factory = uvloop.new_event_loop if kwargs.get("loop_kind") == "uvloop" and uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_checked(func(**kwargs), strict))
    return True


async def _checked(test: Awaitable[None], strict: bool) -> None:
    loop = asyncio.get_running_loop()
    reported: list[str] = []

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        reported.append(f"{context.get('message')}: {context.get('exception')!r}")
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    await asyncio.wait_for(test, TEST_DEADLINE)
    for _ in range(3):  # let callbacks of closing transports run, then collect orphaned futures
        await asyncio.sleep(0)
    gc.collect()
    if strict and reported:
        pytest.fail("the event loop reported unhandled errors:\n" + "\n".join(reported))
