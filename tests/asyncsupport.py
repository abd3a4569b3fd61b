"""Helpers for ``async def`` tests, shared by every test directory."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["eventually", "within"]


async def eventually(check: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Waits until ``check()`` (a plain or an async function) is true; generous by default,
    because these machines are loaded. Fails the test with ``what`` when it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what or check}")
        await asyncio.sleep(0.01)


async def within(awaitable: Awaitable[Any], seconds: float, what: str) -> Any:
    """Awaits with a deadline that fails the test with ``what`` rather than hanging it."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise AssertionError(f"{what} (nothing after {seconds} s)") from None
