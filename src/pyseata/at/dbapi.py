"""AT mode on DB-API connections: a proxy connection and cursor, and the synchronous flow driver.

::

    import pyseata.at as at

    orders = at.DataSource(lambda: psycopg.connect(DSN), resource_id="orders-db")  # once
    conn = orders.connect()               # or at.connect(psycopg.connect(DSN), resource_id="orders-db")

    with global_transaction():
        cur = conn.cursor()
        cur.execute("UPDATE stock SET qty = qty - %s WHERE sku = %s", (1, "A-1"))
        conn.commit()                     # registers the branch, writes the undo log, commits

Outside a global transaction (and outside :func:`pyseata.at.global_lock`) the proxy hands every
call straight to the driver: one context-variable read per ``execute``. Inside, a statement AT
mode covers runs as the flows of :mod:`pyseata.at.executor` say; others (plain SELECT, DDL, SET)
run as they are. A statement AT mode refuses raises :class:`~pyseata.at.errors.SQLNotSupportedError`
and never runs. The cursor then serves the statement's own result (rows, ``rowcount``,
``lastrowid``), without the columns pyseata added to a RETURNING clause. ``executemany`` is one
unit (on an autocommit connection: one local transaction, one branch): an UPDATE or DELETE batch
reads one before image for all its parameter sets and records one undo item, an INSERT batch one
undo item (:func:`pyseata.at.executor.statement_flow`); its result is the total row count.

Savepoint statements (``SAVEPOINT``, ``ROLLBACK TO``, ``RELEASE``) run through a cursor keep the
undo items in step; ``COMMIT`` and ``ROLLBACK`` run as SQL go through the proxy's own commit and
rollback, so they cannot bypass the branch registration. Driver calls that run SQL around the
cursor (``executescript``, ``callproc``, psycopg's ``copy``, ``stream``, ``transaction()``,
``pipeline()``) are refused inside a global transaction for the same reason.

:func:`aconnect` does the same for psycopg's ``AsyncConnection``: the flows are awaited
(:class:`AsyncDriver`); phase two runs on synchronous connections in the RM's workers.

Drivers (one table row each, :data:`DRIVERS`): ``sqlite3`` (transactions begin with
``BEGIN IMMEDIATE``: SQLite has no row locks, so the write lock is taken before the before image),
PyMySQL (MySQL or MariaDB, told apart by the server's version), psycopg 3.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pyseata.at.connection import ConnectionContext, current_lock_retry, savepoint_command
from pyseata.at.dialects import Paramstyle
from pyseata.at.errors import SQLNotSupportedError
from pyseata.at.executor import (
    Batch,
    Begin,
    Commit,
    Execute,
    Flow,
    LockQuery,
    Params,
    Register,
    Report,
    Restore,
    Result,
    Rollback,
    Sleep,
    Stepper,
    commit_flow,
    covered_flow,
    recognize_cached,
)
from pyseata.at.meta import ColumnMeta, Fetch
from pyseata.at.recognizer import Kind
from pyseata.client.context import get_xid, requires_global_lock
from pyseata.client.rm import ResourceManager
from pyseata.client.runtime import get_resource_manager
from pyseata.protocol.enums import BranchType

if TYPE_CHECKING:
    from pyseata.at.resource import DataSource

__all__ = [
    "ASYNC_DRIVERS",
    "DRIVERS",
    "ATConnection",
    "ATCursor",
    "AsyncATConnection",
    "AsyncATCursor",
    "AsyncDriver",
    "AsyncDriverOps",
    "DriverOps",
    "SyncDriver",
    "aconnect",
    "connect",
    "driver_of",
]

T = TypeVar("T")


# --- what differs between drivers -------------------------------------------------------------------


def _identity(_column: ColumnMeta, value: Any) -> Any:
    return value


@dataclass(frozen=True)
class DriverOps:
    """One DB-API driver: how to tell its dialect, its autocommit state, and open a transaction."""

    name: str
    positional: Paramstyle  # the style of a call with a sequence of parameters
    named: Paramstyle  # ... with a mapping
    dialect: Callable[[Any], str]
    autocommit: Callable[[Any], bool]  # autocommit on, and no transaction open
    begin: Callable[[Any], None]  # open a transaction fit for AT unless one is open
    restore: Callable[[Any], None]  # back to autocommit after pyseata opened a transaction
    execute_returns_cursor: bool  # what cursor.execute returns: the cursor, or the row count
    integrity_errors: Callable[[], tuple[type[BaseException], ...]]
    reopen: Callable[[Any], Callable[[], Any]]  # a factory of connections like this one
    resource_id: Callable[[Any], str]
    adapt: Callable[[ColumnMeta, Any], Any] = _identity
    exit_closes: bool = True  # ``with connection:`` closes it at the end

    def style_of(self, params: Params) -> Paramstyle | None:
        if params is None:
            return None
        return self.named if isinstance(params, Mapping) else self.positional


# sqlite3 ------------------------------------------------------------------------------------------


def _sqlite_autocommit(raw: Any) -> bool:
    manual = getattr(raw, "autocommit", None)  # Python 3.12+: True/False, or LEGACY (-1)
    auto = manual is True or (manual not in (True, False) and raw.isolation_level is None)
    return bool(auto and not raw.in_transaction)


def _sqlite_begin(raw: Any) -> None:
    if not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")


def _sqlite_file(raw: Any) -> str:
    rows = raw.execute("PRAGMA database_list").fetchall()
    path = next((str(r[2]) for r in rows if r[1] == "main"), "")
    if not path:
        raise ValueError("an in-memory SQLite database cannot be an AT resource: phase two needs to open it again")
    return path


def _sqlite_reopen(raw: Any) -> Callable[[], Any]:
    import sqlite3

    path = _sqlite_file(raw)
    return lambda: sqlite3.connect(path, timeout=30)


def _sqlite_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    return (sqlite3.IntegrityError,)


# PyMySQL ------------------------------------------------------------------------------------------

_IN_TRANS = 1  # SERVER_STATUS_IN_TRANS


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _mysql_dialect(raw: Any) -> str:
    return "mariadb" if "mariadb" in _text(raw.get_server_info()).lower() else "mysql"


def _mysql_autocommit(raw: Any) -> bool:
    return bool(raw.get_autocommit()) and not raw.server_status & _IN_TRANS


def _mysql_begin(raw: Any) -> None:
    if raw.get_autocommit() and not raw.server_status & _IN_TRANS:
        raw.begin()


def _mysql_reopen(raw: Any) -> Callable[[], Any]:
    import pymysql

    settings = {"host": raw.host, "port": raw.port, "user": _text(raw.user), "password": _text(raw.password),
                "database": _text(raw.db) if raw.db else None, "charset": raw.charset, "autocommit": False}
    return lambda: pymysql.connect(**settings)


def _mysql_errors() -> tuple[type[BaseException], ...]:
    import pymysql

    return (pymysql.err.IntegrityError,)


# psycopg 3 ----------------------------------------------------------------------------------------


def _pg_autocommit(raw: Any) -> bool:
    from psycopg.pq import TransactionStatus

    return bool(raw.autocommit) and raw.info.transaction_status == TransactionStatus.IDLE


def _pg_begin(raw: Any) -> None:
    if _pg_autocommit(raw):
        raw.autocommit = False  # the next statement opens the transaction


def _pg_restore(raw: Any) -> None:
    raw.autocommit = True


def _pg_reopen(raw: Any) -> Callable[[], Any]:
    import psycopg
    from psycopg.conninfo import make_conninfo

    # pgconn.info holds every connection option, the password and options (search_path) included.
    options = {o.keyword.decode(): o.val.decode() for o in raw.pgconn.info if o.val is not None}
    options = {k: v for k, v in options.items() if v != ""}
    conninfo = make_conninfo("", **options)
    return lambda: psycopg.connect(conninfo)


def _pg_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.IntegrityError,)


_JSON_TYPES = frozenset({"json", "jsonb"})


def _pg_adapt(column: ColumnMeta, value: Any) -> Any:
    if value is not None and column.type_name in _JSON_TYPES:
        from psycopg.types.json import Json, Jsonb

        return (Jsonb if column.type_name == "jsonb" else Json)(value)
    return value


DRIVERS: Mapping[str, DriverOps] = {
    "sqlite3": DriverOps(
        "sqlite3", Paramstyle.QMARK, Paramstyle.NAMED, lambda _raw: "sqlite", _sqlite_autocommit, _sqlite_begin,
        lambda _raw: None, True, _sqlite_errors, _sqlite_reopen, lambda raw: f"sqlite:{_sqlite_file(raw)}",
        exit_closes=False,
    ),
    "pymysql": DriverOps(
        "pymysql", Paramstyle.FORMAT, Paramstyle.PYFORMAT, _mysql_dialect, _mysql_autocommit, _mysql_begin,
        lambda _raw: None, False, _mysql_errors, _mysql_reopen,
        lambda raw: f"mysql://{raw.host}:{raw.port}/{_text(raw.db or '')}",
    ),
    "psycopg": DriverOps(
        "psycopg", Paramstyle.FORMAT, Paramstyle.PYFORMAT, lambda _raw: "postgres", _pg_autocommit, _pg_begin,
        _pg_restore, True, _pg_errors, _pg_reopen,
        lambda raw: f"postgresql://{raw.info.host}:{raw.info.port}/{raw.info.dbname}", adapt=_pg_adapt,
    ),
}


def driver_of(raw: Any) -> DriverOps:
    """The :class:`DriverOps` of a raw DB-API connection, by the module of its class."""
    module = type(raw).__module__.split(".")[0]
    try:
        return DRIVERS[module]
    except KeyError:
        raise ValueError(f"AT mode does not know the driver of {type(raw).__module__}.{type(raw).__name__}; "
                         f"known: {', '.join(sorted(DRIVERS))}") from None


# --- the synchronous driver of flows ----------------------------------------------------------------


class SyncDriver:
    """Runs a flow's steps on one raw connection (and cursor) and the process's RM."""

    def __init__(self, raw: Any, ops: DriverOps, cursor: Any = None,
                 rm: Callable[[], ResourceManager] = get_resource_manager) -> None:
        self.raw = raw
        self.ops = ops
        self._cursor = cursor
        self._rm = rm

    def run(self, flow: Flow[T]) -> T:
        stepper = Stepper(flow)
        for step in stepper:
            with stepper:
                stepper.value = _STEPS[type(step)](self, step)
        return stepper.result

    def cursor(self) -> Any:
        if self._cursor is None:
            self._cursor = self.raw.cursor()
        return self._cursor

    def execute(self, step: Execute) -> Result:
        cur = self.cursor()
        if step.params is None:
            cur.execute(step.sql)
        else:
            cur.execute(step.sql, step.params)
        if step.rows_only:
            return Result(None, [tuple(r) for r in cur.fetchall()], cur.rowcount)
        description = cur.description
        rows = [tuple(r) for r in cur.fetchall()] if description is not None else None
        return Result(tuple(description) if description is not None else None, rows, cur.rowcount,
                      getattr(cur, "lastrowid", None))

    def fetch(self, step: Fetch) -> list[tuple[Any, ...]]:
        return self.execute(Execute(step.sql, step.params)).rows or []

    def register(self, step: Register) -> int:
        return self._rm().branch_register(step.xid, step.resource_id, BranchType.AT, step.lock_key,
                                          step.application_data)

    def report(self, step: Report) -> None:
        self._rm().branch_report(step.xid, step.branch_id, step.status, resource_id=step.resource_id)

    def lock_query(self, step: LockQuery) -> bool:
        return self._rm().global_lock_query(step.resource_id, step.lock_key, xid=step.xid)


_STEPS: Mapping[type, Callable[[SyncDriver, Any], Any]] = {
    Execute: SyncDriver.execute,
    Fetch: SyncDriver.fetch,
    Begin: lambda d, _s: d.ops.begin(d.raw),
    Restore: lambda d, _s: d.ops.restore(d.raw),
    Commit: lambda d, _s: d.raw.commit(),
    Rollback: lambda d, _s: d.raw.rollback(),
    Register: SyncDriver.register,
    Report: SyncDriver.report,
    LockQuery: SyncDriver.lock_query,
    Sleep: lambda _d, s: time.sleep(s.seconds),
}


# --- the proxies -------------------------------------------------------------------------------------


class ProxyConnection:
    """What every AT connection proxy shows of itself: the driver's connection, the resource, and
    what it remembers of its current local transaction."""

    _raw: Any
    _source: DataSource
    _ctx: ConnectionContext

    @property
    def raw(self) -> Any:
        return self._raw

    @property
    def data_source(self) -> DataSource:
        return self._source

    @property
    def context(self) -> ConnectionContext:
        return self._ctx


_TRANSACTION_END: Mapping[str, str] = {"COMMIT": "commit", "END": "commit", "ROLLBACK": "rollback"}


class _Results:
    """A proxy cursor's results: its own after a covered statement, the driver cursor's otherwise."""

    __slots__ = ()
    _raw: Any
    _result: Result | None

    @property
    def description(self) -> Any:
        return self._result.description if self._result is not None else self._raw.description

    @property
    def rowcount(self) -> int:
        return self._result.rowcount if self._result is not None else int(self._raw.rowcount)


def _one_batch(sets: Sequence[Params], style_of: Callable[[Params], Paramstyle | None]) -> bool:
    """Whether ``executemany``'s parameter sets can run as one :class:`Batch`: there are some, and all
    are sequences or all are mappings."""
    return all(params is not None for params in sets) and len({style_of(params) for params in sets}) == 1


class ATCursor(_Results):
    """A driver's cursor, with statements inside global transactions covered by AT mode."""

    __slots__ = ("_conn", "_pos", "_raw", "_result", "_returns_cursor")

    def __init__(self, raw: Any, conn: ATConnection) -> None:
        self._raw = raw
        self._conn = conn
        self._result: Result | None = None
        self._pos = 0
        self._returns_cursor: bool = conn._ops.execute_returns_cursor

    @property
    def raw(self) -> Any:
        return self._raw

    def execute(self, sql: str, params: Params = None, **options: Any) -> Any:
        """``options`` (psycopg's ``prepare=``, ``binary=``) reach the driver outside global
        transactions; covered statements run with the driver's defaults."""
        if get_xid() is None and not requires_global_lock():  # the fast path: not covered
            self._result = None
            answer = self._raw.execute(sql, **options) if params is None else self._raw.execute(sql, params, **options)
            return self if self._returns_cursor else answer
        result = self._conn._statement(self._raw, sql, params)
        return self._serve(result)

    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> Any:
        if get_xid() is None and not requires_global_lock():
            self._result = None
            answer = self._raw.executemany(sql, seq_of_params)
            return self if self._conn._ops.execute_returns_cursor else answer
        sets = tuple(seq_of_params)
        if _one_batch(sets, self._conn._ops.style_of):
            total = self._conn._statement(self._raw, sql, Batch(sets))  # type: ignore[arg-type]
            assert total is not None
            return self._serve(Result(None, None, total.rowcount, None))
        count = 0  # no parameter sets, or sets of both kinds: one at a time
        for params in sets:
            result = self._conn._statement(self._raw, sql, params)
            count += max(result.rowcount if result is not None else self._raw.rowcount, 0)
        return self._serve(Result(None, None, count, None))

    def _serve(self, result: Result | None) -> Any:
        self._result, self._pos = result, 0
        if self._conn._ops.execute_returns_cursor:
            return self
        return result.rowcount if result is not None else self._raw.rowcount

    # --- results: ours after a covered statement, the driver's otherwise ------------------------------

    @property
    def lastrowid(self) -> Any:
        return self._result.lastrowid if self._result is not None else getattr(self._raw, "lastrowid", None)

    def fetchone(self) -> Any:
        if self._result is None:
            return self._raw.fetchone()
        rows = self._result.rows or []
        if self._pos >= len(rows):
            return None
        self._pos += 1
        return rows[self._pos - 1]

    def fetchmany(self, size: int | None = None) -> list[Any]:
        if self._result is None:
            return list(self._raw.fetchmany() if size is None else self._raw.fetchmany(size))
        rows = self._result.rows or []
        size = int(getattr(self._raw, "arraysize", 1)) if size is None else size
        chunk = rows[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def fetchall(self) -> list[Any]:
        if self._result is None:
            return list(self._raw.fetchall())
        rows = (self._result.rows or [])[self._pos :]
        self._pos += len(rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchone, None)

    def close(self) -> None:
        self._result = None
        self._raw.close()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._raw, name)
        if name in _UNCOVERED and (get_xid() is not None or requires_global_lock()):
            return _refuse(name)
        return attribute

    def __enter__(self) -> ATCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Driver calls that run SQL around execute(): inside a global transaction they would change rows no
# undo log covers (or commit without the branch), so they are refused there.
_UNCOVERED = frozenset({"callproc", "executescript", "copy", "stream", "transaction", "pipeline"})


def _refuse(name: str) -> Callable[..., Any]:
    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise SQLNotSupportedError(f"<{name}()>", f"{name}() runs SQL AT mode cannot see; inside a global "
                                   "transaction use execute() and the connection's commit()")

    return refused


class ATConnection(ProxyConnection):
    """A driver's connection whose local transactions become AT branches inside global transactions.

    Anything the proxy does not define (``autocommit``, ``set_session``, driver extensions) is the
    raw connection's. Use one proxy per thread, as with the raw connection.
    """

    _OWN = frozenset({"_raw", "_source", "_ops", "_ctx", "_env"})

    def __init__(self, raw: Any, source: DataSource) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_ops", source.ops)
        object.__setattr__(self, "_env", source.env)
        object.__setattr__(self, "_ctx", ConnectionContext())

    def cursor(self, *args: Any, **kwargs: Any) -> ATCursor:
        return ATCursor(self._raw.cursor(*args, **kwargs), self)

    def execute(self, sql: str, params: Params = None) -> ATCursor:
        """``connection.execute`` as sqlite3 and psycopg have it: a new cursor, executed."""
        cursor = self.cursor()
        cursor.execute(sql, params)
        return cursor

    def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> ATCursor:
        """``connection.executemany`` as sqlite3 has it."""
        cursor = self.cursor()
        cursor.executemany(sql, seq_of_params)
        return cursor

    def commit(self) -> None:
        if not self._ctx.active:
            self._raw.commit()
            return
        policy = current_lock_retry(self._env.lock_retry)
        SyncDriver(self._raw, self._ops).run(commit_flow(self._env, self._ctx, policy))

    def rollback(self) -> None:
        try:
            self._raw.rollback()
        finally:
            self._ctx.reset()

    def close(self) -> None:
        self._ctx.reset()
        self._raw.close()

    def __enter__(self) -> ATConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
        finally:
            if self._ops.exit_closes:
                self.close()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._raw, name)
        if name in _UNCOVERED and (get_xid() is not None or requires_global_lock()):
            return _refuse(name)
        return attribute

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._raw, name, value)

    # --- one statement inside a global transaction (or global_lock) --------------------------------------

    def _statement(self, raw_cursor: Any, sql: str, params: Params | Batch) -> Result | None:
        """Runs ``sql`` covered by AT mode; None when it ran as it is on ``raw_cursor``. A
        :class:`Batch` (``executemany``) runs as one unit and gives a result with its row count."""
        env, ctx, ops = self._env, self._ctx, self._ops
        first = params.sets[0] if isinstance(params, Batch) else params
        stmt = recognize_cached(sql, env.dialect.name, ops.style_of(first))
        if not stmt.intercepted:
            if not isinstance(params, Batch):
                return self._uncovered(raw_cursor, stmt.kind, sql, params)
            total = 0
            for one in params.sets:
                result = self._uncovered(raw_cursor, stmt.kind, sql, one)
                total += max(result.rowcount if result is not None else raw_cursor.rowcount, 0)
            return Result(None, None, total, None)
        flow = covered_flow(env, ctx, stmt, params, autocommit=ops.autocommit(self._raw))
        return SyncDriver(self._raw, ops, raw_cursor).run(flow)

    def _uncovered(self, raw_cursor: Any, kind: Kind, sql: str, params: Params) -> Result | None:
        if kind is Kind.OTHER and self._ctx.active:
            words = sql.split(None, 2)
            end = _TRANSACTION_END.get(words[0].upper().rstrip(";")) if words else None
            if end is not None and (len(words) == 1 or words[1].upper().rstrip(";") in ("WORK", "TRANSACTION")):
                getattr(self, end)()  # COMMIT / ROLLBACK as SQL: our commit, not a bypass
                return Result()
            command = savepoint_command(sql)
            if command is not None:
                result = SyncDriver(self._raw, self._ops, raw_cursor).execute(Execute(sql, params))
                self._ctx.apply(command)
                return result
        if params is None:
            raw_cursor.execute(sql)
        else:
            raw_cursor.execute(sql, params)
        return None


def connect(raw: Any, *, resource_id: str | None = None, dialect: str | None = None,
            data_source: DataSource | None = None) -> ATConnection:
    """Wrap a raw sqlite3 / PyMySQL / psycopg connection for AT mode.

    The resource is ``data_source``, else the AT resource registered under ``resource_id`` (by
    default an id derived from the connection: file, or host, port and database), else a new
    :class:`~pyseata.at.resource.DataSource` registered under that id, which opens connections
    for phase two like ``raw`` (same file, or same server, credentials and options).
    """
    from pyseata.at.resource import DataSource, registered_data_source

    if data_source is None:
        ops = driver_of(raw)
        rid = resource_id or ops.resource_id(raw)
        data_source = registered_data_source(rid)
        if data_source is None:
            data_source = DataSource(ops.reopen(raw), resource_id=rid, dialect=dialect or ops.dialect(raw), ops=ops)
    return ATConnection(raw, data_source)


# --- asyncio: psycopg's AsyncConnection, the same flows awaited ------------------------------------------


@dataclass(frozen=True)
class AsyncDriverOps:
    """An asyncio driver: what :class:`DriverOps` says, with the calls that do I/O awaited."""

    sync: DriverOps  # dialect, paramstyles, resource id and phase-two connections (phase two is synchronous)
    autocommit: Callable[[Any], bool]
    begin: Callable[[Any], Awaitable[None]]
    restore: Callable[[Any], Awaitable[None]]


async def _apg_begin(raw: Any) -> None:
    if _pg_autocommit(raw):
        await raw.set_autocommit(False)


async def _apg_restore(raw: Any) -> None:
    await raw.set_autocommit(True)


ASYNC_DRIVERS: Mapping[str, AsyncDriverOps] = {
    "psycopg": AsyncDriverOps(DRIVERS["psycopg"], _pg_autocommit, _apg_begin, _apg_restore),
}


class AsyncDriver:
    """Runs a flow's steps on one asyncio connection and the RM's awaitable calls."""

    def __init__(self, raw: Any, ops: AsyncDriverOps, cursor: Any = None,
                 rm: Callable[[], ResourceManager] = get_resource_manager) -> None:
        self.raw, self.ops, self._cursor, self._rm = raw, ops, cursor, rm

    async def run(self, flow: Flow[T]) -> T:
        stepper = Stepper(flow)
        for step in stepper:
            with stepper:
                stepper.value = await self._step(step)
        return stepper.result

    async def _step(self, step: Any) -> Any:
        rm = self._rm
        match step:
            case Execute() | Fetch():
                result = await self.execute(step.sql, step.params)
                return result if isinstance(step, Execute) else result.rows or []
            case Begin():
                await self.ops.begin(self.raw)
            case Restore():
                await self.ops.restore(self.raw)
            case Commit():
                await self.raw.commit()
            case Rollback():
                await self.raw.rollback()
            case Register():
                return await rm().abranch_register(step.xid, step.resource_id, BranchType.AT, step.lock_key,
                                                   step.application_data)
            case Report():
                await rm().abranch_report(step.xid, step.branch_id, step.status, resource_id=step.resource_id)
            case LockQuery():
                return await rm().aglobal_lock_query(step.resource_id, step.lock_key, xid=step.xid)
            case Sleep():
                await asyncio.sleep(step.seconds)
            case _:
                raise TypeError(f"not a step: {step!r}")
        return None

    async def execute(self, sql: str, params: Params) -> Result:
        if self._cursor is None:
            self._cursor = self.raw.cursor()
        cur = self._cursor
        await (cur.execute(sql) if params is None else cur.execute(sql, params))
        description = cur.description
        rows = [tuple(r) for r in await cur.fetchall()] if description is not None else None
        return Result(tuple(description) if description is not None else None, rows, cur.rowcount,
                      getattr(cur, "lastrowid", None))


class AsyncATCursor(_Results):
    """An asyncio cursor (psycopg ``AsyncCursor``) with statements in global transactions covered."""

    __slots__ = ("_conn", "_pos", "_raw", "_result")

    def __init__(self, raw: Any, conn: AsyncATConnection) -> None:
        self._raw, self._conn = raw, conn
        self._result: Result | None = None
        self._pos = 0

    async def execute(self, sql: str, params: Params = None) -> AsyncATCursor:
        self._result, self._pos = None, 0
        if get_xid() is None and not requires_global_lock():
            await (self._raw.execute(sql) if params is None else self._raw.execute(sql, params))
        else:
            self._result = await self._conn._statement(self._raw, sql, params)
        return self

    async def executemany(self, sql: str, seq_of_params: Sequence[Params]) -> None:
        self._result, self._pos = None, 0
        if get_xid() is None and not requires_global_lock():
            await self._raw.executemany(sql, seq_of_params)
            return
        sets = tuple(seq_of_params)
        if _one_batch(sets, self._conn._ops.sync.style_of):
            total = await self._conn._statement(self._raw, sql, Batch(sets))  # type: ignore[arg-type]
            self._result = Result(None, None, total.rowcount if total is not None else 0, None)
            return
        count = 0  # no parameter sets, or sets of both kinds: one at a time
        for params in sets:
            result = await self._conn._statement(self._raw, sql, params)
            count += max(result.rowcount if result is not None else 0, 0)
        self._result = Result(None, None, count, None)

    async def fetchone(self) -> Any:
        if self._result is None:
            return await self._raw.fetchone()
        rows = self._result.rows or []
        if self._pos >= len(rows):
            return None
        self._pos += 1
        return rows[self._pos - 1]

    async def fetchall(self) -> list[Any]:
        if self._result is None:
            return list(await self._raw.fetchall())
        rows = (self._result.rows or [])[self._pos :]
        self._pos += len(rows)
        return rows

    async def close(self) -> None:
        await self._raw.close()

    async def __aenter__(self) -> AsyncATCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class AsyncATConnection(ProxyConnection):
    """An asyncio connection (psycopg ``AsyncConnection``) whose local transactions become AT
    branches inside global transactions; phase two runs on the resource's synchronous connections."""

    def __init__(self, raw: Any, source: DataSource, ops: AsyncDriverOps) -> None:
        self._raw, self._source, self._ops = raw, source, ops
        self._env, self._ctx = source.env, ConnectionContext()

    def cursor(self, *args: Any, **kwargs: Any) -> AsyncATCursor:
        return AsyncATCursor(self._raw.cursor(*args, **kwargs), self)

    async def execute(self, sql: str, params: Params = None) -> AsyncATCursor:
        return await self.cursor().execute(sql, params)

    async def commit(self) -> None:
        if not self._ctx.active:
            await self._raw.commit()
            return
        policy = current_lock_retry(self._env.lock_retry)
        await AsyncDriver(self._raw, self._ops).run(commit_flow(self._env, self._ctx, policy))

    async def rollback(self) -> None:
        try:
            await self._raw.rollback()
        finally:
            self._ctx.reset()

    async def close(self) -> None:
        self._ctx.reset()
        await self._raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    async def _statement(self, raw_cursor: Any, sql: str, params: Params | Batch) -> Result | None:
        env, ctx, ops = self._env, self._ctx, self._ops
        first = params.sets[0] if isinstance(params, Batch) else params
        stmt = recognize_cached(sql, env.dialect.name, ops.sync.style_of(first))
        driver = AsyncDriver(self._raw, ops, raw_cursor)
        if not stmt.intercepted:
            if isinstance(params, Batch):
                total = 0
                for one in params.sets:
                    result = await self._statement(raw_cursor, sql, one)
                    total += max(result.rowcount if result is not None else 0, 0)
                return Result(None, None, total, None)
            if stmt.kind is Kind.OTHER and ctx.active and _ends_transaction(sql):
                raise ValueError("run COMMIT / ROLLBACK through the connection's commit() / rollback() in a "
                                 "global transaction")
            result = await driver.execute(sql, params)
            command = savepoint_command(sql) if ctx.active else None
            if command is not None:
                ctx.apply(command)
            return result
        return await driver.run(covered_flow(env, ctx, stmt, params, autocommit=ops.autocommit(self._raw)))


def _ends_transaction(sql: str) -> bool:
    words = sql.split(None, 2)
    return bool(words) and words[0].upper().rstrip(";") in _TRANSACTION_END and (
        len(words) == 1 or words[1].upper().rstrip(";") in ("WORK", "TRANSACTION"))


def aconnect(raw: Any, *, resource_id: str | None = None, data_source: DataSource | None = None) -> AsyncATConnection:
    """:func:`connect` for an asyncio connection (psycopg ``AsyncConnection``). Phase two, which the RM
    runs in worker threads, uses synchronous connections the resource opens like ``raw``."""
    module = type(raw).__module__.split(".")[0]
    ops = ASYNC_DRIVERS.get(module)
    if ops is None:
        raise ValueError(f"AT mode has no asyncio driver for {type(raw).__module__}.{type(raw).__name__}; "
                         f"known: {', '.join(sorted(ASYNC_DRIVERS))}")
    if data_source is None:
        from pyseata.at.resource import DataSource, registered_data_source

        rid = resource_id or ops.sync.resource_id(raw)
        data_source = registered_data_source(rid) or DataSource(
            ops.sync.reopen(raw), resource_id=rid, dialect=ops.sync.dialect(raw), ops=ops.sync)
    return AsyncATConnection(raw, data_source, ops)
