"""Session stores: the TC's persistent state, chosen by URL.

``open_store("memory://")`` or ``open_store("sqlite:///relative/path.db")`` /
``open_store("sqlite:////absolute/path.db")``. A new backend is one more row in ``_OPENERS``
(``postgresql``, ``mysql`` and ``redis`` are planned) plus a pass of ``tests/store``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from pyseata.coordinator.store.base import (
    KEEP,
    DuplicateKeyError,
    KeepType,
    RegisterOutcome,
    SessionStore,
    StoreClosedError,
    StoreError,
    StoreSchemaError,
)
from pyseata.coordinator.store.memory import MemoryStore
from pyseata.coordinator.store.sqlite import SqliteStore
from pyseata.errors import ConfigError

__all__ = [
    "KEEP",
    "DuplicateKeyError",
    "KeepType",
    "MemoryStore",
    "RegisterOutcome",
    "SessionStore",
    "SqliteStore",
    "StoreClosedError",
    "StoreError",
    "StoreSchemaError",
    "open_store",
    "supported_schemes",
]


def _open_memory(rest: str, url: str) -> SessionStore:
    if rest:
        raise ConfigError(f"store URL {url!r}: memory:// takes nothing after the scheme")
    return MemoryStore()


def _open_sqlite(rest: str, url: str) -> SessionStore:
    # SQLAlchemy's convention: sqlite:///rel/path is relative, sqlite:////abs/path absolute.
    path = rest.removeprefix("/")
    if not rest.startswith("/") or not path:
        raise ConfigError(
            f"store URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if "?" in path or path == ":memory:":
        raise ConfigError(
            f"store URL {url!r}: the sqlite store takes a plain file path (for a throw-away store "
            "use memory://)"
        )
    return SqliteStore(path)


# scheme -> (opener taking what follows "scheme://", how the URL looks, for error messages)
_OPENERS: Final[dict[str, tuple[Callable[[str, str], SessionStore], str]]] = {
    "memory": (_open_memory, "memory://"),
    "sqlite": (_open_sqlite, "sqlite:///path/to/file.db"),
}


def supported_schemes() -> list[str]:
    """How each supported store URL looks."""
    return [example for _, example in _OPENERS.values()]


def open_store(url: str) -> SessionStore:
    """Open the session store ``url`` names; raises ConfigError for a URL it cannot use.

    Opening may touch the disk (the SQLite store creates its file and schema), so call it at
    start-up or through ``asyncio.to_thread``.
    """
    scheme, sep, rest = url.partition("://")
    entry = _OPENERS.get(scheme.lower()) if sep else None
    if entry is None:
        raise ConfigError(
            f"unsupported session store URL {url!r}; supported: {', '.join(supported_schemes())}"
        )
    opener, _ = entry
    return opener(rest, url)
