"""Seata protocol messages as frozen, typed records.

One class per body type code, named as Seata's Java class so that logs and conformance files line
up. Field names are the Java ones in snake_case, defaults are Java's defaults. The records hold
values only; the wire layout of each lives in :mod:`pyseata.protocol.codec`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import ClassVar

from pyseata.protocol.enums import (
    BranchStatus,
    BranchType,
    GlobalStatus,
    ResultCode,
    TransactionExceptionCode,
    TypeCode,
)

__all__ = [
    "MESSAGE_CLASSES",
    "RESPONSE_FOR",
    "AbstractBranchEndRequest",
    "AbstractBranchEndResponse",
    "AbstractGlobalEndRequest",
    "AbstractGlobalEndResponse",
    "AbstractIdentifyResponse",
    "AbstractResultMessage",
    "AbstractTransactionResponse",
    "BatchResultMessage",
    "BranchCommitRequest",
    "BranchCommitResponse",
    "BranchRegisterRequest",
    "BranchRegisterResponse",
    "BranchReportRequest",
    "BranchReportResponse",
    "BranchRollbackRequest",
    "BranchRollbackResponse",
    "GlobalBeginRequest",
    "GlobalBeginResponse",
    "GlobalCommitRequest",
    "GlobalCommitResponse",
    "GlobalLockQueryRequest",
    "GlobalLockQueryResponse",
    "GlobalReportRequest",
    "GlobalReportResponse",
    "GlobalRollbackRequest",
    "GlobalRollbackResponse",
    "GlobalStatusRequest",
    "GlobalStatusResponse",
    "HeartbeatMessage",
    "MergeResultMessage",
    "MergedWarpMessage",
    "Message",
    "RegisterRMRequest",
    "RegisterRMResponse",
    "RegisterTMRequest",
    "RegisterTMResponse",
    "UndoLogDeleteRequest",
]


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every body. ``TYPE_CODE`` is the int16 that starts the body on the wire."""

    TYPE_CODE: ClassVar[TypeCode]

    def __repr__(self) -> str:
        # Only fields that differ from their default: short enough for a log line.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.default is not value and f.default != value:
                text = f"{type(value).__name__}.{value.name}" if isinstance(value, Enum) else repr(value)
                shown.append(f"{f.name}={text}")
        return f"{type(self).__name__}({', '.join(shown)})"


# --- registration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class RegisterTMRequest(Message):
    TYPE_CODE = TypeCode.REG_CLT
    version: str | None = None
    application_id: str | None = None
    transaction_service_group: str | None = None
    extra_data: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class RegisterRMRequest(Message):
    TYPE_CODE = TypeCode.REG_RM
    version: str | None = None
    application_id: str | None = None
    transaction_service_group: str | None = None
    extra_data: str | None = None
    resource_ids: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class AbstractIdentifyResponse(Message):
    """Protocol v1 carries only ``identified`` and ``version`` (no result code, no message)."""

    identified: bool = True
    version: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class RegisterTMResponse(AbstractIdentifyResponse):
    TYPE_CODE = TypeCode.REG_CLT_RESULT


@dataclass(frozen=True, slots=True, repr=False)
class RegisterRMResponse(AbstractIdentifyResponse):
    TYPE_CODE = TypeCode.REG_RM_RESULT


@dataclass(frozen=True, slots=True, repr=False)
class HeartbeatMessage(Message):
    """PING (frame type 3) or PONG (frame type 4); never serialized, the frame type says which."""

    TYPE_CODE = TypeCode.HEARTBEAT_MSG
    ping: bool = True


# --- result prefixes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class AbstractResultMessage(Message):
    result_code: ResultCode = ResultCode.Success
    msg: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class AbstractTransactionResponse(AbstractResultMessage):
    transaction_exception_code: TransactionExceptionCode = TransactionExceptionCode.Unknown


# --- global transactions (TM <-> TC) ----------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class GlobalBeginRequest(Message):
    TYPE_CODE = TypeCode.GLOBAL_BEGIN
    timeout: int = 60000
    transaction_name: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class GlobalBeginResponse(AbstractTransactionResponse):
    TYPE_CODE = TypeCode.GLOBAL_BEGIN_RESULT
    xid: str | None = None
    extra_data: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class AbstractGlobalEndRequest(Message):
    xid: str | None = None
    extra_data: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class GlobalCommitRequest(AbstractGlobalEndRequest):
    TYPE_CODE = TypeCode.GLOBAL_COMMIT


@dataclass(frozen=True, slots=True, repr=False)
class GlobalRollbackRequest(AbstractGlobalEndRequest):
    TYPE_CODE = TypeCode.GLOBAL_ROLLBACK


@dataclass(frozen=True, slots=True, repr=False)
class GlobalStatusRequest(AbstractGlobalEndRequest):
    TYPE_CODE = TypeCode.GLOBAL_STATUS


@dataclass(frozen=True, slots=True, repr=False)
class GlobalReportRequest(AbstractGlobalEndRequest):
    """Used by SAGA. A ``None`` status travels as the byte 0xFF."""

    TYPE_CODE = TypeCode.GLOBAL_REPORT
    global_status: GlobalStatus | None = None


@dataclass(frozen=True, slots=True, repr=False)
class AbstractGlobalEndResponse(AbstractTransactionResponse):
    global_status: GlobalStatus = GlobalStatus.UnKnown


@dataclass(frozen=True, slots=True, repr=False)
class GlobalCommitResponse(AbstractGlobalEndResponse):
    TYPE_CODE = TypeCode.GLOBAL_COMMIT_RESULT


@dataclass(frozen=True, slots=True, repr=False)
class GlobalRollbackResponse(AbstractGlobalEndResponse):
    TYPE_CODE = TypeCode.GLOBAL_ROLLBACK_RESULT


@dataclass(frozen=True, slots=True, repr=False)
class GlobalStatusResponse(AbstractGlobalEndResponse):
    TYPE_CODE = TypeCode.GLOBAL_STATUS_RESULT


@dataclass(frozen=True, slots=True, repr=False)
class GlobalReportResponse(AbstractGlobalEndResponse):
    TYPE_CODE = TypeCode.GLOBAL_REPORT_RESULT


# --- branches (RM <-> TC) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class BranchRegisterRequest(Message):
    TYPE_CODE = TypeCode.BRANCH_REGISTER
    xid: str | None = None
    branch_type: BranchType = BranchType.AT
    resource_id: str | None = None
    lock_key: str | None = None
    application_data: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class BranchRegisterResponse(AbstractTransactionResponse):
    TYPE_CODE = TypeCode.BRANCH_REGISTER_RESULT
    branch_id: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class BranchReportRequest(Message):
    TYPE_CODE = TypeCode.BRANCH_STATUS_REPORT
    xid: str | None = None
    branch_id: int = 0
    status: BranchStatus = BranchStatus.Unknown
    resource_id: str | None = None
    application_data: str | None = None
    branch_type: BranchType = BranchType.AT


@dataclass(frozen=True, slots=True, repr=False)
class BranchReportResponse(AbstractTransactionResponse):
    TYPE_CODE = TypeCode.BRANCH_STATUS_REPORT_RESULT


@dataclass(frozen=True, slots=True, repr=False)
class GlobalLockQueryRequest(BranchRegisterRequest):
    TYPE_CODE = TypeCode.GLOBAL_LOCK_QUERY


@dataclass(frozen=True, slots=True, repr=False)
class GlobalLockQueryResponse(AbstractTransactionResponse):
    TYPE_CODE = TypeCode.GLOBAL_LOCK_QUERY_RESULT
    lockable: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class AbstractBranchEndRequest(Message):
    xid: str | None = None
    branch_id: int = 0
    branch_type: BranchType = BranchType.AT
    resource_id: str | None = None
    application_data: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class BranchCommitRequest(AbstractBranchEndRequest):
    TYPE_CODE = TypeCode.BRANCH_COMMIT


@dataclass(frozen=True, slots=True, repr=False)
class BranchRollbackRequest(AbstractBranchEndRequest):
    TYPE_CODE = TypeCode.BRANCH_ROLLBACK


@dataclass(frozen=True, slots=True, repr=False)
class AbstractBranchEndResponse(AbstractTransactionResponse):
    xid: str | None = None
    branch_id: int = 0
    branch_status: BranchStatus = BranchStatus.Unknown


@dataclass(frozen=True, slots=True, repr=False)
class BranchCommitResponse(AbstractBranchEndResponse):
    TYPE_CODE = TypeCode.BRANCH_COMMIT_RESULT


@dataclass(frozen=True, slots=True, repr=False)
class BranchRollbackResponse(AbstractBranchEndResponse):
    TYPE_CODE = TypeCode.BRANCH_ROLLBACK_RESULT


@dataclass(frozen=True, slots=True, repr=False)
class UndoLogDeleteRequest(Message):
    TYPE_CODE = TypeCode.RM_DELETE_UNDOLOG
    branch_type: BranchType = BranchType.AT
    resource_id: str | None = None
    save_days: int = 7


# --- batch containers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class MergedWarpMessage(Message):
    """A batch of requests sent as one oneway frame; ``msg_ids`` are absent from Seata <= 1.4."""

    TYPE_CODE = TypeCode.SEATA_MERGE
    msgs: tuple[Message, ...] = ()
    msg_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, repr=False)
class MergeResultMessage(Message):
    """Answers a MergedWarpMessage; results match the requests by position."""

    TYPE_CODE = TypeCode.SEATA_MERGE_RESULT
    msgs: tuple[AbstractResultMessage, ...] = ()


@dataclass(frozen=True, slots=True, repr=False)
class BatchResultMessage(Message):
    """Answers (part of) a MergedWarpMessage; results match the requests by ``msg_ids``."""

    TYPE_CODE = TypeCode.BATCH_RESULT_MSG
    result_messages: tuple[AbstractResultMessage, ...] = ()
    msg_ids: tuple[int, ...] = ()


def _concrete(cls: type[Message]) -> list[type[Message]]:
    found: list[type[Message]] = []
    for sub in cls.__subclasses__():
        if "TYPE_CODE" in sub.__dict__:
            found.append(sub)
        found.extend(_concrete(sub))
    return found


RESPONSE_FOR: dict[type[Message], type[AbstractResultMessage]] = {
    GlobalBeginRequest: GlobalBeginResponse,
    GlobalCommitRequest: GlobalCommitResponse,
    GlobalRollbackRequest: GlobalRollbackResponse,
    GlobalStatusRequest: GlobalStatusResponse,
    GlobalReportRequest: GlobalReportResponse,
    BranchRegisterRequest: BranchRegisterResponse,
    BranchReportRequest: BranchReportResponse,
    GlobalLockQueryRequest: GlobalLockQueryResponse,
    BranchCommitRequest: BranchCommitResponse,
    BranchRollbackRequest: BranchRollbackResponse,
}
"""The response class that answers each transaction request."""

MESSAGE_CLASSES: dict[TypeCode, type[Message]] = {c.TYPE_CODE: c for c in _concrete(Message)}
"""The one table from body type code to record class."""
