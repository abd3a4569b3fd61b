"""AT mode: automatic compensation of SQL through undo logs (BEHAVIOUR.md section 3).

::

    import pyseata.at as at

    orders = at.DataSource(lambda: psycopg.connect(DSN), resource_id="orders-db")
    conn = orders.connect()          # a DB-API connection; inside global_transaction() its local
                                     # transactions become AT branches with undo logs

- :mod:`~pyseata.at.dbapi`: the proxy connection and cursor, :func:`connect` for a raw connection
  (:func:`aconnect` for psycopg's ``AsyncConnection``, :func:`connect_asyncpg` in
  :mod:`~pyseata.at.asyncpg` for asyncpg); :mod:`pyseata.at.sqlalchemy` for engines;
- :mod:`~pyseata.at.resource`: :class:`DataSource`, the resource and its phase two (undo logs
  deleted in the background on commit; before images restored on rollback, dirty writes refused);
- :mod:`~pyseata.at.executor`: phase one as I/O-free flows any driver can run;
- :mod:`~pyseata.at.connection`: the per-local-transaction context, lock-retry policy;
- :mod:`~pyseata.at.globallock`: :func:`global_lock`, Seata's ``@GlobalLock`` for local transactions;

on the I/O-free foundation:

- :mod:`~pyseata.at.recognizer`: what a statement is (:func:`recognize` -> :class:`Statement`),
  refusing what AT mode cannot make safe;
- :mod:`~pyseata.at.meta`: table metadata read from the database, cached per resource;
- :mod:`~pyseata.at.images`: the before/after image queries and :class:`TableRecords`, with the
  exact comparison used before a rollback;
- :mod:`~pyseata.at.lockkeys`: global lock keys ``table:pk1,pk2;table2:pk3``;
- :mod:`~pyseata.at.undo`: the ``undo_log`` table and ``rollback_info`` in Seata's shape;
- :mod:`~pyseata.at.dialects`: what differs between MySQL/MariaDB, PostgreSQL and SQLite.
"""

from __future__ import annotations

from pyseata.at.asyncpg import ATAsyncpgConnection, connect_asyncpg  # asyncpg itself imported on use
from pyseata.at.connection import ConnectionContext, LockRetry, TransactionBrokenError, lock_retry
from pyseata.at.dbapi import AsyncATConnection, AsyncATCursor, ATConnection, ATCursor, aconnect, connect
from pyseata.at.dialects import DIALECTS, Dialect, JavaType, Paramstyle, get_dialect
from pyseata.at.errors import (
    ATError,
    LockKeyError,
    SQLNotSupportedError,
    TableMetaError,
    UndoLogError,
    UndoLogFormatError,
    UndoValueError,
)
from pyseata.at.executor import ImageMismatchError, LockWaitTimeoutError
from pyseata.at.globallock import GlobalLock, global_lock
from pyseata.at.images import (
    Field,
    KeySource,
    KeyType,
    Query,
    Row,
    RowDiff,
    TableRecords,
    before_image,
    check,
    conflict_probe,
    diff_records,
    format_diff,
    insert_keys,
    inserted_rows,
    same_value,
    select_by_keys,
    with_returning,
)
from pyseata.at.lockkeys import build_lock_key
from pyseata.at.meta import ColumnMeta, TableMeta, TableMetaCache, UniqueKey, read_table_meta, table_meta_flow
from pyseata.at.recognizer import Kind, Statement, recognize
from pyseata.at.resource import DataSource, DirtyWriteError
from pyseata.at.undo import (
    BranchUndoLog,
    SqlType,
    SQLUndoLog,
    UndoConfig,
    UndoLogStatus,
    UndoLogTable,
    decode_undo_log,
    encode_undo_log,
    pack,
    unpack,
)

__all__ = [
    "DIALECTS",
    "ATAsyncpgConnection",
    "ATConnection",
    "ATCursor",
    "ATError",
    "AsyncATConnection",
    "AsyncATCursor",
    "BranchUndoLog",
    "ColumnMeta",
    "ConnectionContext",
    "DataSource",
    "Dialect",
    "DirtyWriteError",
    "Field",
    "GlobalLock",
    "ImageMismatchError",
    "JavaType",
    "KeySource",
    "KeyType",
    "Kind",
    "LockKeyError",
    "LockRetry",
    "LockWaitTimeoutError",
    "Paramstyle",
    "Query",
    "Row",
    "RowDiff",
    "SQLNotSupportedError",
    "SQLUndoLog",
    "SqlType",
    "Statement",
    "TableMeta",
    "TableMetaCache",
    "TableMetaError",
    "TableRecords",
    "TransactionBrokenError",
    "UndoConfig",
    "UndoLogError",
    "UndoLogFormatError",
    "UndoLogStatus",
    "UndoLogTable",
    "UndoValueError",
    "UniqueKey",
    "aconnect",
    "before_image",
    "build_lock_key",
    "check",
    "conflict_probe",
    "connect",
    "connect_asyncpg",
    "decode_undo_log",
    "diff_records",
    "encode_undo_log",
    "format_diff",
    "get_dialect",
    "global_lock",
    "insert_keys",
    "inserted_rows",
    "lock_retry",
    "pack",
    "read_table_meta",
    "recognize",
    "same_value",
    "select_by_keys",
    "table_meta_flow",
    "unpack",
    "with_returning",
]
