"""AT lock keys: the client's ``table:pk1,pk2;table2:pk3`` string and the TC's row keys.

A row key names one locked row across every resource the TC serves:
``<resourceId>^^^<table>^^^<pk>`` (Seata's ``AbstractLocker``). Composite primary keys arrive
already joined by ``_`` in table-meta order, so a pk is one opaque string here.

Seata's TC silently drops whatever follows a malformed part of a lock key, which can leave a row
unlocked. We refuse the whole key instead and name the offending part.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from pyseata.errors import TransactionError
from pyseata.protocol.enums import TransactionExceptionCode

__all__ = ["ROW_KEY_SEPARATOR", "RowKey", "normalize_row_keys", "parse_lock_key", "split_row_key"]

ROW_KEY_SEPARATOR = "^^^"
_TABLE_SEPARATOR = ";"
_TABLE_PK_SEPARATOR = ":"
_PK_SEPARATOR = ","


class RowKey(NamedTuple):
    """One lockable row: the parts of a ``lock_table`` row key."""

    resource_id: str
    table_name: str
    pk: str

    @property
    def key(self) -> str:
        return f"{self.resource_id}{ROW_KEY_SEPARATOR}{self.table_name}{ROW_KEY_SEPARATOR}{self.pk}"


def parse_lock_key(
    resource_id: str,
    lock_key: str | None,
    *,
    code: TransactionExceptionCode = TransactionExceptionCode.BranchRegisterFailed,
    xid: str | None = None,
) -> list[RowKey]:
    """The distinct row keys of ``lock_key`` for ``resource_id``, in first-seen order.

    An empty or missing lock key means "no rows" (non-AT branches, or an AT branch that touched
    nothing). ``code`` is the exception code of the request being served: BranchRegisterFailed
    for a branch register, LockableCheckFailed for a global lock query.
    """
    if not lock_key:
        return []
    if not resource_id:
        raise TransactionError("lock key given without a resource id", code, xid=xid)
    seen: dict[RowKey, None] = {}
    for part in lock_key.split(_TABLE_SEPARATOR):
        table, colon, pks = part.partition(_TABLE_PK_SEPARATOR)
        problem = _problem(part, table, colon, pks)
        if problem:
            raise TransactionError(f"malformed lock key {lock_key!r}: {problem}", code, xid=xid)
        for pk in pks.split(_PK_SEPARATOR):
            seen.setdefault(RowKey(resource_id, table, pk), None)
    return list(seen)


def _problem(part: str, table: str, colon: str, pks: str) -> str | None:
    """Why one ``table:pk1,pk2`` part is unusable, or None when it is fine."""
    if not colon:
        return f"part {part!r} has no ':' between table and primary keys"
    if not table.strip():
        return f"part {part!r} has an empty table name"
    if any(not pk.strip() for pk in pks.split(_PK_SEPARATOR)):
        return f"part {part!r} has an empty primary key value"
    return None


def split_row_key(row_key: str) -> RowKey:
    """The parts of a stored row key; the pk is everything after the second separator."""
    resource_id, sep1, rest = row_key.partition(ROW_KEY_SEPARATOR)
    table_name, sep2, pk = rest.partition(ROW_KEY_SEPARATOR)
    if not (sep1 and sep2 and resource_id and table_name and pk):
        raise TransactionError(
            f"malformed row key {row_key!r}: expected <resourceId>^^^<table>^^^<pk>",
            TransactionExceptionCode.BranchRegisterFailed,
        )
    return RowKey(resource_id, table_name, pk)


def normalize_row_keys(keys: Iterable[str | RowKey]) -> list[RowKey]:
    """Normalise row keys given as strings or parsed tuples, dropping repeats, keeping order."""
    seen: dict[RowKey, None] = {}
    for item in keys:
        seen.setdefault(item if isinstance(item, RowKey) else split_row_key(item), None)
    return list(seen)
