"""Seata protocol enumerations with their exact wire values (PROTOCOL.md sections 1.3-1.5, 4).

Member names follow Seata's Java constants so that logs, the console and Java users read the same
words. The integer value of each member is the byte written on the wire.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "EXCEPTION_CODE_TABLES",
    "BranchStatus",
    "BranchType",
    "CompressorType",
    "ExceptionCodeTable",
    "GlobalStatus",
    "MessageType",
    "ResultCode",
    "SerializerType",
    "TransactionExceptionCode",
    "TypeCode",
    "exception_code_table_for",
]


class MessageType(IntEnum):
    """Frame byte 9: what kind of frame this is."""

    REQUEST_SYNC = 0
    RESPONSE = 1
    REQUEST_ONEWAY = 2
    HEARTBEAT_REQUEST = 3
    HEARTBEAT_RESPONSE = 4


class SerializerType(IntEnum):
    """Frame byte 10 (codec). Only SEATA is implemented; the others are named for clear errors."""

    SEATA = 0x01
    PROTOBUF = 0x02
    KRYO = 0x04
    FST = 0x08
    HESSIAN = 0x16
    GRPC = 0x28
    JACKSON = 0x32
    FURY = 0x56
    FASTJSON2 = 0x64


class CompressorType(IntEnum):
    """Frame byte 11."""

    NONE = 0
    GZIP = 1
    ZIP = 2
    SEVENZ = 3
    BZIP2 = 4
    LZ4 = 5
    DEFLATER = 6
    ZSTD = 7


class TypeCode(IntEnum):
    """The int16 at the start of every SEATA-codec body (Java MessageType)."""

    GLOBAL_BEGIN = 1
    GLOBAL_BEGIN_RESULT = 2
    BRANCH_COMMIT = 3
    BRANCH_COMMIT_RESULT = 4
    BRANCH_ROLLBACK = 5
    BRANCH_ROLLBACK_RESULT = 6
    GLOBAL_COMMIT = 7
    GLOBAL_COMMIT_RESULT = 8
    GLOBAL_ROLLBACK = 9
    GLOBAL_ROLLBACK_RESULT = 10
    BRANCH_REGISTER = 11
    BRANCH_REGISTER_RESULT = 12
    BRANCH_STATUS_REPORT = 13
    BRANCH_STATUS_REPORT_RESULT = 14
    GLOBAL_STATUS = 15
    GLOBAL_STATUS_RESULT = 16
    GLOBAL_REPORT = 17
    GLOBAL_REPORT_RESULT = 18
    GLOBAL_LOCK_QUERY = 21
    GLOBAL_LOCK_QUERY_RESULT = 22
    SEATA_MERGE = 59
    SEATA_MERGE_RESULT = 60
    REG_CLT = 101
    REG_CLT_RESULT = 102
    REG_RM = 103
    REG_RM_RESULT = 104
    RM_DELETE_UNDOLOG = 111
    HEARTBEAT_MSG = 120
    BATCH_RESULT_MSG = 121


class ResultCode(IntEnum):
    Failed = 0
    Success = 1


class GlobalStatus(IntEnum):
    """Global transaction status; the code is also what ``global_table.status`` stores."""

    UnKnown = 0
    Begin = 1
    Committing = 2
    CommitRetrying = 3
    Rollbacking = 4
    RollbackRetrying = 5
    TimeoutRollbacking = 6
    TimeoutRollbackRetrying = 7
    AsyncCommitting = 8
    Committed = 9
    CommitFailed = 10
    Rollbacked = 11
    RollbackFailed = 12
    TimeoutRollbacked = 13
    TimeoutRollbackFailed = 14
    Finished = 15
    CommitRetryTimeout = 16
    RollbackRetryTimeout = 17
    Deleting = 18
    StopCommitOrCommitRetry = 19
    StopRollbackOrRollbackRetry = 20


class BranchStatus(IntEnum):
    Unknown = 0
    Registered = 1
    PhaseOne_Done = 2
    PhaseOne_Failed = 3
    PhaseOne_Timeout = 4
    PhaseTwo_Committed = 5
    PhaseTwo_CommitFailed_Retryable = 6
    PhaseTwo_CommitFailed_Unretryable = 7
    PhaseTwo_Rollbacked = 8
    PhaseTwo_RollbackFailed_Retryable = 9
    PhaseTwo_RollbackFailed_Unretryable = 10
    PhaseTwo_CommitFailed_XAER_NOTA_Retryable = 11
    PhaseTwo_RollbackFailed_XAER_NOTA_Retryable = 12
    PhaseOne_RDONLY = 13


class BranchType(IntEnum):
    """Written on the wire as the Java enum ordinal; stored by name in ``branch_table``."""

    AT = 0
    TCC = 1
    SAGA = 2
    XA = 3
    SAGA_ANNOTATION = 4


class TransactionExceptionCode(IntEnum):
    """Exception codes, valued by their Seata 2.x ordinal.

    The byte on the wire depends on the peer's version (PROTOCOL.md 4.5): use an
    :class:`ExceptionCodeTable` to translate.
    """

    Unknown = 0
    BeginFailed = 1
    LockKeyConflict = 2
    IO = 3
    BranchRollbackFailed_Retriable = 4
    BranchRollbackFailed_Unretriable = 5
    BranchRegisterFailed = 6
    BranchReportFailed = 7
    LockableCheckFailed = 8
    BranchTransactionNotExist = 9
    GlobalTransactionNotExist = 10
    GlobalTransactionNotActive = 11
    GlobalTransactionStatusInvalid = 12
    FailedToSendBranchCommitRequest = 13
    FailedToSendBranchRollbackRequest = 14
    FailedToAddBranch = 15
    FailedLockGlobalTranscation = 16
    FailedWriteSession = 17
    FailedStore = 18
    NotRaftLeader = 19
    LockKeyConflictFailFast = 20
    TransactionTimeout = 21
    CommitHeuristic = 22
    Broken = 23


class ExceptionCodeTable:
    """Translates :class:`TransactionExceptionCode` to and from one Seata version's ordinals.

    Decoding is lenient, as PROTOCOL.md 4.5 advises: an ordinal beyond the table reads as
    ``Unknown``. Encoding a code the peer's version does not know also sends ``Unknown``, because
    a Java peer throws on an ordinal outside its own table.
    """

    # The compiled codecs (codec._compile) read _by_ordinal and _to_ordinal directly.
    __slots__ = ("_by_ordinal", "_to_ordinal", "name")

    def __init__(self, name: str, codes: tuple[TransactionExceptionCode, ...]) -> None:
        self.name = name
        self._by_ordinal = codes
        self._to_ordinal = {code: i for i, code in enumerate(codes)}

    def decode(self, ordinal: int) -> TransactionExceptionCode:
        if 0 <= ordinal < len(self._by_ordinal):
            return self._by_ordinal[ordinal]
        return TransactionExceptionCode.Unknown

    def encode(self, code: TransactionExceptionCode) -> int:
        return self._to_ordinal.get(code, 0)

    def __repr__(self) -> str:
        return f"<ExceptionCodeTable {self.name}>"


_C = TransactionExceptionCode
_BASE = tuple(_C(i) for i in range(18))  # Unknown .. FailedWriteSession: the same in every version

EXCEPTION_CODE_TABLES: dict[str, ExceptionCodeTable] = {
    "1.4": ExceptionCodeTable("1.4", _BASE),
    "1.5": ExceptionCodeTable("1.5", (*_BASE, _C.FailedStore)),
    "1.7": ExceptionCodeTable(
        "1.7",
        (*_BASE, _C.FailedStore, _C.LockKeyConflictFailFast, _C.TransactionTimeout, _C.CommitHeuristic,
         _C.Broken),
    ),
    "2.0": ExceptionCodeTable("2.0", tuple(_C)),
}


def exception_code_table_for(version: str | None) -> ExceptionCodeTable:
    """The exception-code table a peer reporting SDK ``version`` uses (2.x when unknown)."""
    from pyseata.protocol.version import version_to_int

    try:
        number = version_to_int(version or "")
    except ValueError:
        return EXCEPTION_CODE_TABLES["2.0"]
    if number >= 2_000_000:
        return EXCEPTION_CODE_TABLES["2.0"]
    if number >= 1_070_000:
        return EXCEPTION_CODE_TABLES["1.7"]
    if number >= 1_050_000:
        return EXCEPTION_CODE_TABLES["1.5"]
    return EXCEPTION_CODE_TABLES["1.4"]
