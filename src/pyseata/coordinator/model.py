"""The TC's persistent records: one frozen class per row of Seata's session tables.

Records are immutable so that a store may hand out the object it keeps without a copy; a change
is a new record made with :func:`dataclasses.replace`. Field names and order follow the column
names and order of ``global_table``, ``branch_table`` and ``lock_table`` (BEHAVIOUR.md 2.2).

Times: ``timeout`` is in milliseconds and ``begin_time`` in epoch milliseconds, as Seata stores
them. ``gmt_create`` and ``gmt_modified`` are epoch **microseconds** (Seata's ``DATETIME(6)``
precision, which orders branches) and are stamped by the store: whatever a caller puts there is
replaced on insert, and ``gmt_modified`` again on every change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus

__all__ = ["BranchTransaction", "GlobalTransaction", "LockStatus", "RowLock"]


@dataclass(frozen=True, slots=True)
class GlobalTransaction:
    """A ``global_table`` row: one global transaction as the TC keeps it."""

    xid: str
    transaction_id: int
    status: GlobalStatus
    application_id: str | None = None
    transaction_service_group: str | None = None
    transaction_name: str | None = None
    timeout: int = 60_000
    begin_time: int = 0
    application_data: str | None = None
    gmt_create: int = 0
    gmt_modified: int = 0

    @property
    def deadline(self) -> int:
        """Epoch ms after which a transaction still in Begin has timed out."""
        return self.begin_time + self.timeout

    def __repr__(self) -> str:
        return (
            f"GlobalTransaction(xid={self.xid!r}, status={self.status.name}, "
            f"name={self.transaction_name!r}, app={self.application_id!r}, "
            f"group={self.transaction_service_group!r}, begin_time={self.begin_time}, "
            f"timeout={self.timeout}ms)"
        )


@dataclass(frozen=True, slots=True)
class BranchTransaction:
    """A ``branch_table`` row: one branch (AT, TCC, SAGA or XA) of a global transaction."""

    branch_id: int
    xid: str
    transaction_id: int
    resource_id: str
    branch_type: BranchType
    status: BranchStatus = BranchStatus.Registered
    resource_group_id: str | None = None
    client_id: str | None = None
    application_data: str | None = None
    gmt_create: int = 0
    gmt_modified: int = 0

    def __repr__(self) -> str:
        return (
            f"BranchTransaction(branch_id={self.branch_id}, xid={self.xid!r}, "
            f"type={self.branch_type.name}, status={self.status.name}, "
            f"resource_id={self.resource_id!r}, client_id={self.client_id!r})"
        )


class LockStatus(IntEnum):
    """``lock_table.status``: 1 marks the locks of a global that is rolling back (fail-fast hint)."""

    Locked = 0
    Rollbacking = 1


@dataclass(frozen=True, slots=True)
class RowLock:
    """A ``lock_table`` row: one AT row lock, keyed ``<resourceId>^^^<table>^^^<pk>``."""

    row_key: str
    xid: str
    transaction_id: int
    branch_id: int
    resource_id: str
    table_name: str
    pk: str
    status: LockStatus = LockStatus.Locked
    gmt_create: int = 0
    gmt_modified: int = 0

    def __repr__(self) -> str:
        return (
            f"RowLock({self.row_key!r}, xid={self.xid!r}, branch_id={self.branch_id}, "
            f"status={self.status.name})"
        )
