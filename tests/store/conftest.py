"""Fixtures of the store compliance suite: every store in ``STORE_URLS`` runs every test.

To put a new store through the suite, add one entry: a name and a function from the test's
temporary directory to the store URL (or None to skip, e.g. when no test server is configured).
The store behind the URL must start empty for each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyseata.coordinator.store import SessionStore, open_store

STORE_URLS: dict[str, Callable[[Path], str | None]] = {
    "memory": lambda tmp: "memory://",
    "sqlite": lambda tmp: f"sqlite:///{tmp / 'tc.db'}",  # tmp is absolute: sqlite:////...
}


@pytest.fixture(params=sorted(STORE_URLS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = STORE_URLS[request.param](tmp_path)
    if url is None:
        pytest.skip(f"no {request.param} store configured for tests")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[SessionStore]:
    opened = open_store(store_url)
    yield opened
    asyncio.run(opened.close())  # a no-op when the test closed it already


