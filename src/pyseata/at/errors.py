"""What AT mode raises while it recognises SQL, reads table metadata and handles undo logs.

Every class derives from :class:`ATError` (so from :class:`~pyseata.errors.PyseataError`) and,
where a caller would naturally catch a standard type, from that type too. Messages say what was
refused and why, and quote the statement or table concerned, so a log line is enough to act on.
"""

from __future__ import annotations

from pyseata.errors import PyseataError

__all__ = [
    "ATError",
    "LockKeyError",
    "SQLNotSupportedError",
    "TableMetaError",
    "UndoLogError",
    "UndoLogFormatError",
    "UndoValueError",
]

_MAX_QUOTED = 500  # characters of a statement quoted in a message


def _quote(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED] + "..."


class ATError(PyseataError):
    """Root of AT-mode errors."""


class SQLNotSupportedError(ATError, ValueError):
    """A statement AT mode cannot cover with undo images; it must not run inside a global transaction.

    ``reason`` says what makes it unsafe, ``sql`` is the statement as given.
    """

    def __init__(self, sql: str, reason: str) -> None:
        self.sql = sql
        self.reason = reason
        super().__init__(f"AT mode cannot run this statement safely: {reason}\n    statement: {_quote(sql)}")


class TableMetaError(ATError, LookupError):
    """A table's metadata is missing or unusable (not found, no primary key...)."""

    def __init__(self, table: str, reason: str) -> None:
        self.table = table
        self.reason = reason
        super().__init__(f"table {table}: {reason}")


class LockKeyError(ATError, ValueError):
    """A row cannot be named in a global lock key (its primary key text would be ambiguous)."""


class UndoLogError(ATError):
    """An undo log cannot be written or read."""


class UndoValueError(UndoLogError, TypeError):
    """A column value has a type the undo log cannot carry exactly."""


class UndoLogFormatError(UndoLogError, ValueError):
    """Stored ``rollback_info`` or ``context`` is not in a shape pyseata (or Seata) writes."""
