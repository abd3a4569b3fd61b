"""Phase one of AT mode as I/O-free flows: generators that yield steps and get their results back.

A *flow* never touches a socket. It yields a step, the driver performs it and sends the result
back (or throws the step's exception into the flow, which may handle it):

==============================  ====================================================  ================
step                            what the driver does                                  sends back
==============================  ====================================================  ================
:class:`Execute`                runs SQL on the connection, reads every row           :class:`Result`
:class:`~pyseata.at.meta.Fetch` runs a metadata query                                 list of rows
:class:`Begin`                  opens a local transaction fit for AT if none is open  None
                                (SQLite: ``BEGIN IMMEDIATE``; autocommit off)
:class:`Restore`                autocommit back on after pyseata's own transaction    None
:class:`Commit` / ``Rollback``  the connection's own commit / rollback                None
:class:`Register`               BranchRegister at the TC (may raise LockConflictError)  the branch id
:class:`Report`                 BranchReport at the TC                                None
:class:`LockQuery`              GlobalLockQuery at the TC                             bool
:class:`Sleep`                  waits                                                 None
==============================  ====================================================  ================

:mod:`pyseata.at.dbapi` drives them on DB-API connections (sqlite3, PyMySQL, psycopg) and, with
``await``, on psycopg's ``AsyncConnection``; :mod:`pyseata.at.resource` drives phase two the same way.

Per intercepted statement (BEHAVIOUR.md 3.1): recognise (cached by SQL text), read the table's
metadata (cached per resource), check, before image (``SELECT ... FOR UPDATE``), run the
statement, after image, then record the undo item and the rows to lock in the
:class:`~pyseata.at.connection.ConnectionContext`. The image queries, the RETURNING text and the
way rows become images are worked out once per statement text and table (:class:`PlanCache`).
On PostgreSQL and MariaDB the after image comes back with the statement itself (RETURNING), which
also proves which rows it changed: a row changed that the before image did not hold (a concurrent
insert between the two under READ COMMITTED) breaks the local transaction instead of escaping the
undo log. SQLite's RETURNING gives values before column affinity applies, so there it only names
the rows and a query reads them (SQLite locks the whole database: nothing can race). An INSERT's keys come
from its VALUES, from RETURNING, or on MySQL from ``lastrowid`` plus ``@@auto_increment_increment``
per row. A PostgreSQL upsert returns ``xmax = 0`` per row: a row it updated that the probe did not
see was inserted concurrently, and breaks the transaction the same way.

At local commit (:func:`commit_flow`): register the branch with the lock keys, insert the undo
log, commit; a lock conflict is retried per :class:`~pyseata.at.connection.LockRetry` (the
statements again, after a local rollback, when pyseata opened the transaction; only the
registration when the caller holds it, and not at all when the TC says the holder is rolling
back). A failure after registration reports PhaseOne_Failed. A local rollback tells the TC nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

from pyseata.at.connection import ConnectionContext, LockRetry, TransactionBrokenError, current_lock_retry
from pyseata.at.dialects import Dialect, Paramstyle, get_dialect
from pyseata.at.errors import ATError
from pyseata.at.images import (
    KEYS_PER_QUERY,
    Field,
    KeySource,
    KeyType,
    Query,
    Row,
    TableRecords,
    batch_before_image,
    batchable,
    before_image,
    conflict_probe,
    insert_keys,
    inserted_rows,
    select_by_keys,
    with_returning,
)
from pyseata.at.lockkeys import build_lock_key
from pyseata.at.meta import ColumnMeta, Fetch, TableMeta, TableMetaCache
from pyseata.at.recognizer import Kind, Statement, TableRef, recognize
from pyseata.at.undo import BranchUndoLog, SqlType, SQLUndoLog, UndoConfig, UndoLogTable, pack
from pyseata.client.context import get_xid, requires_global_lock
from pyseata.client.rm import LockConflictError
from pyseata.protocol.enums import BranchStatus
from pyseata.protocol.enums import TransactionExceptionCode as Code

__all__ = [
    "Batch",
    "Begin",
    "Commit",
    "Env",
    "Execute",
    "Flow",
    "ImageMismatchError",
    "LockQuery",
    "LockWaitTimeoutError",
    "Params",
    "PlanCache",
    "Register",
    "Report",
    "Restore",
    "Result",
    "Rollback",
    "Sleep",
    "Step",
    "Stepper",
    "autocommit_flow",
    "commit_flow",
    "covered_flow",
    "explicit_flow",
    "recognize_cached",
    "rows_by_keys",
    "statement_flow",
    "table_meta",
]

log = logging.getLogger("pyseata.at")

T = TypeVar("T")
Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None


# --- steps ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Execute:
    """Run ``sql`` (with ``params`` unless None) and send back a :class:`Result`."""

    sql: str
    params: Params = None
    rows_only: bool = False  # an image query: the driver may skip describing its columns


@dataclass(frozen=True, slots=True)
class Result:
    """What a statement gave: DB-API ``description``, all rows, ``rowcount`` and ``lastrowid``."""

    description: tuple[Any, ...] | None = None
    rows: list[tuple[Any, ...]] | None = None
    rowcount: int = -1
    lastrowid: Any = None

    @property
    def columns(self) -> list[str]:
        return [d[0] for d in self.description or ()]


@dataclass(frozen=True, slots=True)
class Begin:
    """Make sure a local transaction fit for AT is open."""


@dataclass(frozen=True, slots=True)
class Restore:
    """Put the connection back in autocommit mode after pyseata opened a transaction on it."""


@dataclass(frozen=True, slots=True)
class Commit:
    pass


@dataclass(frozen=True, slots=True)
class Rollback:
    pass


@dataclass(frozen=True, slots=True)
class Register:
    xid: str
    resource_id: str
    lock_key: str
    application_data: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    xid: str
    branch_id: int
    status: BranchStatus
    resource_id: str


@dataclass(frozen=True, slots=True)
class LockQuery:
    xid: str | None
    resource_id: str
    lock_key: str


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Step: TypeAlias = Execute | Fetch | Begin | Restore | Commit | Rollback | Register | Report | LockQuery | Sleep
Flow: TypeAlias = Generator[Step, Any, T]


class Stepper(Generic[T]):
    """Drives a flow for a driver: iterating gives its steps; the answer to a step is set as
    ``value`` inside ``with stepper:`` (an Exception raised there is thrown into the flow
    instead); ``result`` is what the flow returned once iteration ends. Every driver's loop::

        stepper = Stepper(flow)
        for step in stepper:
            with stepper:
                stepper.value = perform(step)
        return stepper.result
    """

    __slots__ = ("_flow", "error", "result", "value")

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.value: Any = None
        self.error: BaseException | None = None

    def __iter__(self) -> Stepper[T]:
        return self

    def __next__(self) -> Step:
        value, error = self.value, self.error
        self.value, self.error = None, None
        try:
            return self._flow.send(value) if error is None else self._flow.throw(error)
        except StopIteration as done:
            self.result: T = done.value
            raise StopIteration from None

    def __enter__(self) -> Stepper[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> bool:
        if kind is not None and issubclass(kind, Exception):
            self.error = error
            return True
        return False


# --- errors -----------------------------------------------------------------------------------------


class LockWaitTimeoutError(ATError, TimeoutError):
    """Global row locks stayed held by another global transaction for every retry (Seata's
    ``LockWaitTimeoutException``); the local transaction was rolled back."""


class ImageMismatchError(ATError):
    """A statement changed other rows than its images hold; the local transaction must roll back."""


# --- what is worked out once per table and statement -----------------------------------------------

_BYTES_LIKE = (bytearray, memoryview)


class _Shape:
    """How rows of one table (every column, in order) become an image, and the SQL that selects
    them by key: worked out once per :class:`TableMeta`, not per statement."""

    def __init__(self, meta: TableMeta, style: Paramstyle) -> None:
        self.meta = meta
        self.style = style
        keys = frozenset(meta.primary_key)
        self.fields = tuple((c.name, int(c.java_type), KeyType.PRIMARY_KEY if c.name in keys else KeyType.NULL)
                            for c in meta.columns)
        self._by_keys: dict[tuple[int, bool], str] = {}

    def records(self, rows: Sequence[Sequence[Any]]) -> TableRecords:
        """The image of ``rows`` holding every column in table order (what pyseata's queries select)."""
        fields = self.fields
        return TableRecords(self.meta.lock_name, self.meta.primary_key, tuple(
            Row(tuple(Field(name, jtype, bytes(v) if isinstance(v, _BYTES_LIKE) else v, key)
                      for (name, jtype, key), v in zip(fields, row, strict=True)))
            for row in rows))

    def by_keys_sql(self, count: int, for_update: bool) -> str:
        sql = self._by_keys.get((count, for_update))
        if sql is None:
            placeholder = [(None,) * len(self.meta.primary_key)] * count
            sql = select_by_keys(self.meta, placeholder, self.style, for_update=for_update)[0][0]
            self._by_keys[(count, for_update)] = sql
        return sql


class PlanCache:
    """Per resource: table shapes, and what each statement text needs (its image queries, its
    RETURNING text), valid as long as the table's metadata object is the same."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shapes: dict[int, _Shape] = {}
        self._plans: dict[tuple[str, str, Paramstyle | None], tuple[TableMeta, Any]] = {}

    def shape(self, meta: TableMeta, style: Paramstyle) -> _Shape:
        shape = self._shapes.get(id(meta))
        if shape is None or shape.meta is not meta:
            shape = _Shape(meta, style)
            with self._lock:
                if len(self._shapes) > self.LIMIT:
                    self._shapes.clear()
                self._shapes[id(meta)] = shape
        return shape

    def get(self, what: str, stmt: Statement, meta: TableMeta, make: Callable[[], T]) -> T:
        key = (what, stmt.sql, stmt.style)
        known = self._plans.get(key)
        if known is not None and known[0] is meta:
            value: T = known[1]
            return value
        value = make()
        with self._lock:
            if len(self._plans) > self.LIMIT:
                self._plans.clear()
            self._plans[key] = (meta, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._shapes.clear()
            self._plans.clear()


# --- what a flow knows about its resource -----------------------------------------------------------


def _same(_column: ColumnMeta, value: Any) -> Any:
    return value


DEFAULT_UNDO = UndoConfig()
DEFAULT_LOCK_RETRY = LockRetry()


@dataclass(frozen=True)
class Env:
    """One resource (database) as the flows see it: its id, dialect, caches and policies.

    ``style`` is the driver's positional paramstyle for the SQL pyseata writes; ``adapt`` turns a
    value read back from an undo log into a parameter the driver accepts for that column (psycopg
    wants JSON documents wrapped); ``integrity_errors`` are the driver's unique-violation classes.
    """

    resource_id: str
    dialect: Dialect
    style: Paramstyle
    meta: TableMetaCache
    undo: UndoConfig
    undo_table: UndoLogTable
    lock_retry: LockRetry = DEFAULT_LOCK_RETRY
    adapt: Callable[[ColumnMeta, Any], Any] = _same
    integrity_errors: tuple[type[BaseException], ...] = ()
    plans: PlanCache = field(default_factory=PlanCache, compare=False, repr=False)

    @classmethod
    def of(cls, resource_id: str, dialect: Dialect | str, style: Paramstyle | str, *,
           undo: UndoConfig = DEFAULT_UNDO, lock_retry: LockRetry = DEFAULT_LOCK_RETRY,
           adapt: Callable[[ColumnMeta, Any], Any] = _same,
           integrity_errors: tuple[type[BaseException], ...] = ()) -> Env:
        d, st = get_dialect(dialect), Paramstyle(style)
        return cls(resource_id, d, st, TableMetaCache(d, style=st), undo,
                   UndoLogTable.of(d, undo.table, style=st), lock_retry, adapt, integrity_errors)


@functools.lru_cache(maxsize=2048)
def recognize_cached(sql: str, dialect: str, style: Paramstyle | None) -> Statement:
    """:func:`~pyseata.at.recognizer.recognize`, remembered per SQL text (refusals are not cached)."""
    return recognize(sql, dialect, style)


def table_meta(env: Env, table: TableRef | tuple[str | None, str]) -> Flow[TableMeta]:
    """The table's metadata from the resource's cache, read on first use."""
    schema, name = table.stored(env.dialect) if isinstance(table, TableRef) else table
    meta = env.meta.lookup(name, schema)
    if meta is None:
        meta = yield from env.meta.flow(name, schema)
        env.meta.store(meta, name, schema)
    return meta


# --- one statement ----------------------------------------------------------------------------------


# Where RETURNING gives the values as stored. SQLite's gives them before column affinity applies
# (0 for a REAL column that stores 0.0): there it names the rows, and a query reads them.
_RETURNS_STORED = frozenset({"postgres", "mariadb"})


@dataclass
class _Call:
    """One intercepted statement: where it runs, what it is, and whether it reached the database
    (then a failure breaks the local transaction: its change is covered by no undo item)."""

    env: Env
    ctx: ConnectionContext
    stmt: Statement
    meta: TableMeta
    params: Params
    policy: LockRetry
    sent: bool = False

    @property
    def returns_stored(self) -> bool:
        return self.env.dialect.name in _RETURNS_STORED

    def business(self, sql: str | None = None) -> Flow[Result]:
        """Runs the statement (``sql``: its text with a RETURNING clause added). A statement the
        database refused changed nothing (statements are atomic): only success marks it sent."""
        result: Result = yield Execute(self.stmt.sql if sql is None else sql, self.params)
        self.sent = True
        return result

    def plan(self, what: str, make: Callable[[Statement, TableMeta], T]) -> T:
        """``make(stmt, meta)``, worked out once per statement text and table metadata."""
        return self.env.plans.get(what, self.stmt, self.meta, lambda: make(self.stmt, self.meta))

    @property
    def shape(self) -> _Shape:
        return self.env.plans.shape(self.meta, self.env.style)

    def query(self, what: str, make: Callable[[Statement, TableMeta], Query | None]) -> Flow[TableRecords]:
        """An image query built from the statement, every column (None: the empty image)."""
        query = self.plan(what, make)
        if query is None:
            return TableRecords.empty(self.meta)
        result: Result = yield Execute(query.sql, query.bind(self.params), rows_only=what != "pk")
        if what == "pk":  # SELECT ... FOR UPDATE's query selects the primary key only
            return TableRecords.from_rows(self.meta, result.columns, result.rows or [])
        return self.shape.records(result.rows or [])

    def by_keys(self, keys: Sequence[tuple[Any, ...]]) -> Flow[TableRecords]:
        records: TableRecords = yield from rows_by_keys(self.env, self.meta, keys)
        return records

    def returning(self, columns: Sequence[str]) -> Flow[tuple[list[tuple[Any, ...]], Result]]:
        """Runs the statement returning ``columns`` first: those values, and the caller's result
        (its own RETURNING columns, if any)."""
        sql, n = self.plan(f"returning {columns}", lambda stmt, meta: with_returning(stmt, meta, columns))
        result = yield from self.business(sql)
        rows = result.rows or []
        mine = [tuple(r[:n]) for r in rows]
        if self.stmt.returning is None:
            return mine, Result(None, None, len(rows), result.lastrowid)
        description = tuple(result.description[n:]) if result.description else None
        return mine, Result(description, [tuple(r[n:]) for r in rows], len(rows), result.lastrowid)

    def mismatch(self, what: str) -> ImageMismatchError:
        return ImageMismatchError(f"{what}; a concurrent transaction changed the table between the before image "
                                  f"and the statement (roll back and retry)\n    statement: {self.stmt.sql}")

    def record(self, sql_type: SqlType, before: TableRecords, after: TableRecords, lock: TableRecords) -> None:
        if before.rows or after.rows:  # a statement that changed nothing needs no undo (Seata skips it too)
            self.ctx.add(SQLUndoLog(sql_type, self.meta.lock_name, before, after), lock)


@dataclass(frozen=True, slots=True)
class Batch:
    """The parameter sets of one ``executemany`` call, all of one style (sequences, or mappings)."""

    sets: tuple[Sequence[Any] | Mapping[str, Any], ...]


# Parameter sets per batched before image (their WHERE clauses OR-ed together), and at most this many
# parameters in one such query.
BATCH_SETS = 500
BATCH_PARAMS = 5000


def statement_flow(env: Env, ctx: ConnectionContext, stmt: Statement, params: Params | Batch,
                   policy: LockRetry | None = None) -> Flow[Result]:
    """One intercepted statement inside an open local transaction; its result for the caller.

    ``params`` a :class:`Batch`: the statement once per parameter set, as one unit (see
    :func:`_batch`); the result carries the total row count only."""
    assert stmt.table is not None and stmt.kind.intercepted
    if isinstance(params, Batch):
        total: Result = yield from _batch(env, ctx, stmt, params, policy)
        return total
    meta = yield from table_meta(env, stmt.table)
    call = _Call(env, ctx, stmt, meta, params, policy or env.lock_retry)
    try:
        result: Result = yield from _HANDLERS[stmt.kind](call)
    except BaseException as exc:
        if call.sent:
            ctx.break_(f"{type(exc).__name__} after the statement ran: {exc}")
        raise
    return result


def _batch(env: Env, ctx: ConnectionContext, stmt: Statement, batch: Batch,
           policy: LockRetry | None) -> Flow[Result]:
    """``executemany``: an UPDATE or DELETE that :func:`~pyseata.at.images.batchable` allows reads one
    before image for all its parameter sets (in chunks), runs the statement per set, reads one after
    image, and records one undo item per chunk; anything else runs per set, and the INSERT items of
    the batch are then joined into one. Either way the batch is one unit of the local transaction."""
    assert stmt.table is not None
    if not (batchable(stmt) and batch.sets):
        total = 0
        marks = len(ctx.undo_items), len(ctx.lock_images)
        for params in batch.sets:
            result: Result = yield from statement_flow(env, ctx, stmt, params, policy)
            total += max(result.rowcount, 0)
        _join_inserts(ctx, *marks)
        return Result(None, None, total, None)
    meta = yield from table_meta(env, stmt.table)
    where = stmt.where
    refs = len(where.placeholders) if where is not None else 0
    size = max(1, min(BATCH_SETS, BATCH_PARAMS // refs)) if refs else len(batch.sets)
    total = 0
    for begin in range(0, len(batch.sets), size):
        chunk = batch.sets[begin : begin + size]
        call = _Call(env, ctx, stmt, meta, None, policy or env.lock_retry)
        try:
            total += yield from _batch_chunk(call, chunk, refs > 0)
        except BaseException as exc:
            if call.sent:
                ctx.break_(f"{type(exc).__name__} after the statement ran: {exc}")
            raise
    return Result(None, None, total, None)


def _batch_chunk(c: _Call, chunk: Sequence[Sequence[Any] | Mapping[str, Any]], per_set: bool) -> Flow[int]:
    sets = len(chunk) if per_set else 1
    query = c.env.plans.get(f"batch {sets}", c.stmt, c.meta,
                            lambda: batch_before_image(c.stmt, c.meta, c.env.style, sets))
    found: Result = yield Execute(query.sql, query.bind(chunk if per_set else chunk[:1]), rows_only=True)
    before = c.shape.records(found.rows or [])
    total = 0
    if c.stmt.kind is Kind.DELETE:
        for params in chunk:
            c.params = params
            result = yield from c.business()
            total += len(result.rows or []) if c.stmt.returning is not None and result.rowcount < 0 else result.rowcount
        if total != len(before):
            raise c.mismatch(f"its {len(chunk)} parameter sets deleted {total} row(s), the before image holds "
                             f"{len(before)}")
        c.record(SqlType.DELETE, before, TableRecords.empty(c.meta), before)
        return total
    if c.env.dialect.update_returning and c.returns_stored:
        latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        positions = [c.meta.column_names.index(pk) for pk in c.meta.primary_key]
        for params in chunk:
            c.params = params
            mine, result = yield from c.returning(c.meta.column_names)
            total += max(result.rowcount, 0)
            for row in mine:  # a later set may change a row again: its last version is the after image
                latest[tuple(row[i] for i in positions)] = row
        after = c.shape.records(list(latest.values()))
        extra = _keys(after) - _keys(before)
        if extra:
            raise c.mismatch(f"it updated {len(extra)} row(s) the before image did not hold")
        before = _only(before, _keys(after))
    else:
        for params in chunk:
            c.params = params
            result = yield from c.business()
            if result.rowcount > len(before):
                raise c.mismatch(f"it updated {result.rowcount} row(s), the before image holds {len(before)}")
            total += max(result.rowcount, 0)
        after = yield from c.by_keys(before.primary_keys())
    c.record(SqlType.UPDATE, before, after, after)
    return total


def _join_inserts(ctx: ConnectionContext, mark: int, lock_mark: int) -> None:
    """The INSERT undo items recorded since ``mark`` as one item (and one lock image), when they are
    all INSERTs into one table: their rows are distinct (a key inserted twice would have failed)."""
    items = ctx.undo_items[mark:]
    if len(items) < 2 or any(i.sql_type is not SqlType.INSERT or i.table_name != items[0].table_name
                             for i in items):
        return
    images = [i.after_image for i in items if i.after_image is not None]
    if len(images) != len(items) or len(ctx.lock_images) - lock_mark != len(items):
        return
    first = images[0]
    after = TableRecords(first.table_name, first.primary_key, tuple(r for image in images for r in image.rows))
    del ctx.undo_items[mark:]
    del ctx.lock_images[lock_mark:]
    ctx.add(SQLUndoLog(SqlType.INSERT, items[0].table_name, items[0].before_image, after), after)


def covered_flow(env: Env, ctx: ConnectionContext, stmt: Statement, params: Params | Batch, *,
                 autocommit: bool) -> Flow[Result]:
    """A statement (or batch) AT mode covers, on a connection in autocommit mode or not: tied to the
    current global transaction (or global_lock), under the current lock-retry policy; an autocommit
    connection is put back in autocommit mode afterwards, whatever happened."""
    ctx.bind(get_xid(), requires_global_lock())
    policy = current_lock_retry(env.lock_retry)
    if not autocommit:
        result: Result = yield from explicit_flow(env, ctx, stmt, params, policy)
        return result
    try:
        result = yield from autocommit_flow(env, ctx, stmt, params, policy)
    except BaseException:
        with contextlib.suppress(Exception):  # the flow's error is the one to report
            yield Restore()
        raise
    yield Restore()
    return result


def explicit_flow(env: Env, ctx: ConnectionContext, stmt: Statement, params: Params | Batch,
                  policy: LockRetry | None = None) -> Flow[Result]:
    """A statement in a local transaction the caller commits (autocommit off)."""
    yield Begin()
    result: Result = yield from statement_flow(env, ctx, stmt, params, policy)
    return result


def autocommit_flow(env: Env, ctx: ConnectionContext, stmt: Statement, params: Params | Batch,
                    policy: LockRetry | None = None) -> Flow[Result]:
    """A statement on an autocommit connection: pyseata opens the local transaction, runs the
    statement and commits; on a lock conflict it rolls back (freeing the rows), waits and runs
    the statement again with fresh images (Seata's ``executeAutoCommitTrue``)."""
    policy = policy or env.lock_retry
    ctx_xid, global_lock = ctx.xid, ctx.global_lock
    for attempt in range(policy.attempts):
        ctx.bind(ctx_xid, global_lock)  # again after a retry's reset: the retry is covered like the first try
        yield Begin()
        try:
            result: Result = yield from statement_flow(env, ctx, stmt, params, policy)
            yield from commit_flow(env, ctx, None, user_transaction=False)
            return result
        except LockConflictError as exc:
            yield from _abandon(ctx)
            if attempt + 1 >= policy.attempts:
                raise _timeout(env, exc.xid or ctx_xid, policy, exc) from exc
            log.debug("xid=%s lock conflict on %s, attempt %d; retrying the statement", ctx_xid, env.resource_id,
                      attempt + 1)
            yield Sleep(policy.interval)
        except BaseException:
            yield from _abandon(ctx)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _abandon(ctx: ConnectionContext) -> Flow[None]:
    ctx.reset()
    yield Rollback()


def _timeout(env: Env, xid: str | None, policy: LockRetry, exc: BaseException) -> LockWaitTimeoutError:
    fail_fast = isinstance(exc, LockConflictError) and exc.code == Code.LockKeyConflictFailFast
    why = ("the global transaction holding them is rolling back" if fail_fast else
           f"still held by another global transaction after {policy.attempts} attempt(s) "
           f"{policy.interval * 1000:g} ms apart")
    return LockWaitTimeoutError(f"global lock wait timeout on resource {env.resource_id} (xid {xid or '-'}): "
                                f"{why}; the local transaction was rolled back ({exc})")


# --- per kind ---------------------------------------------------------------------------------------


def rows_by_keys(env: Env, meta: TableMeta, keys: Sequence[tuple[Any, ...]], *,
                 for_update: bool = False) -> Flow[TableRecords]:
    """Every column of the rows whose primary keys are ``keys`` (in chunks)."""
    shape = env.plans.shape(meta, env.style)
    rows: list[tuple[Any, ...]] = []
    for begin in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[begin : begin + KEYS_PER_QUERY]
        result: Result = yield Execute(shape.by_keys_sql(len(chunk), for_update), [v for key in chunk for v in key],
                                       rows_only=True)
        rows.extend(result.rows or [])
    return shape.records(rows)


def _keys(records: TableRecords) -> set[tuple[Any, ...]]:
    return set(records.primary_keys())


def _only(records: TableRecords, keys: set[tuple[Any, ...]]) -> TableRecords:
    rows = records.rows
    kept = tuple(r for r, key in zip(rows, records.primary_keys(), strict=True) if key in keys)
    return records if len(kept) == len(rows) else TableRecords(records.table_name, records.primary_key, kept)


def _update(c: _Call) -> Flow[Result]:
    before = yield from c.query("before", before_image)
    if c.env.dialect.update_returning and c.returns_stored:
        mine, result = yield from c.returning(c.meta.column_names)
        after = c.shape.records(mine)
        changed = _keys(after)
        extra = changed - _keys(before)
        if extra:
            raise c.mismatch(f"it updated {len(extra)} row(s) the before image did not hold")
        before = _only(before, changed)  # rows the WHERE no longer matched were not changed
    else:
        result = yield from c.business()
        if result.rowcount > len(before):  # MySQL counts changed rows: never more than it matched
            raise c.mismatch(f"it updated {result.rowcount} row(s), the before image holds {len(before)}")
        after = yield from c.by_keys(before.primary_keys())
    c.record(SqlType.UPDATE, before, after, after)
    return result


def _delete(c: _Call) -> Flow[Result]:
    before = yield from c.query("before", before_image)
    result = yield from c.business()
    count = len(result.rows or []) if c.stmt.returning is not None and result.rowcount < 0 else result.rowcount
    if count != len(before):
        raise c.mismatch(f"it deleted {count} row(s), the before image holds {len(before)}")
    c.record(SqlType.DELETE, before, TableRecords.empty(c.meta), before)
    return result


def _insert(c: _Call) -> Flow[Result]:
    source = c.plan("keys", insert_keys)
    if c.env.dialect.insert_returning and c.returns_stored:
        # Every column back with the statement: the after image costs no query.
        mine, result = yield from c.returning(c.meta.column_names)
        after = c.shape.records(mine)
    elif c.env.dialect.insert_returning:
        keys, result = yield from c.returning(c.meta.primary_key)
        after = yield from c.by_keys(keys)
    elif source is KeySource.VALUES:
        result = yield from c.business()
        after = yield from c.query("inserted", inserted_rows)
    else:  # MySQL AUTO_INCREMENT: the first id, then one per row at the server's increment
        result = yield from c.business()
        step = yield from _auto_increment_step(c.ctx)
        first = int(result.lastrowid or 0)
        if first <= 0:
            raise c.mismatch("the driver reported no generated key (lastrowid)")
        after = yield from c.by_keys([(first + i * step,) for i in range(result.rowcount)])
    if result.rowcount >= 0 and len(after) != result.rowcount:
        raise c.mismatch(f"it inserted {result.rowcount} row(s), the after image found {len(after)}")
    c.record(SqlType.INSERT, TableRecords.empty(c.meta), after, after)
    return result


def _auto_increment_step(ctx: ConnectionContext) -> Flow[int]:
    if ctx.auto_increment_step is None:
        result: Result = yield Execute("SELECT @@auto_increment_increment")
        ctx.auto_increment_step = int((result.rows or [(1,)])[0][0])
    return ctx.auto_increment_step


def _upsert(c: _Call) -> Flow[Result]:
    before = yield from c.query("probe", conflict_probe)
    result, after = yield from _UPSERTS[c.env.dialect.name](c, before)
    c.record(SqlType.INSERT_ON_DUPLICATE_UPDATE, before, after, after)
    return result


def _merge(returned: TableRecords, before: TableRecords) -> TableRecords:
    """Rows an upsert returned plus the probed rows it left alone (DO NOTHING, a WHERE that failed)."""
    seen = _keys(returned)
    kept = tuple(r for r in before.rows if r.key(before.primary_key) not in seen)
    return TableRecords(returned.table_name, returned.primary_key, returned.rows + kept)


_UpsertResult: TypeAlias = Flow[tuple[Result, TableRecords]]


def _upsert_sqlite(c: _Call, before: TableRecords) -> _UpsertResult:
    keys, result = yield from c.returning(c.meta.primary_key)
    returned = yield from c.by_keys(keys)
    return result, _merge(returned, before)


def _upsert_postgres(c: _Call, before: TableRecords) -> _UpsertResult:
    """Each returned row says ``xmax = 0`` when inserted. An updated row the probe did not lock was
    inserted by a concurrent transaction after the probe looked: its undo would delete that row."""
    mine, result = yield from c.returning((*c.meta.column_names, "xmax"))
    known = _keys(before)
    positions = [c.meta.column_names.index(pk) for pk in c.meta.primary_key]
    for row in mine:
        if str(row[-1]) != "0" and tuple(row[i] for i in positions) not in known:
            raise c.mismatch("it updated a row its conflict probe did not see")
    returned = c.shape.records([row[:-1] for row in mine])
    return result, _merge(returned, before)


def _upsert_mysql(c: _Call, before: TableRecords) -> _UpsertResult:
    """ON DUPLICATE KEY UPDATE / INSERT IGNORE: the probe again (now it finds the inserted rows
    too) plus the probed rows by key (an update may have changed their unique values)."""
    result = yield from c.business()
    again = yield from c.query("probe", conflict_probe)
    by_key = yield from c.by_keys(before.primary_keys())
    after = _merge(again, by_key)
    inserted = len(_keys(after) - _keys(before))
    unchanged = [r for r in _only(after, _keys(before)).rows if r in before.rows]
    changed = len(before) - len(unchanged)
    # MySQL counts 1 per inserted row and 2 per updated row (1 per unchanged one with CLIENT_FOUND_ROWS).
    if result.rowcount >= 0 and inserted < result.rowcount - 2 * changed - len(unchanged):
        raise c.mismatch(f"it reports {result.rowcount} affected row(s), but only {inserted} inserted row(s) "
                         "can be found by the conflict probe (give every row a value for a unique key)")
    return result, after


_UPSERTS: Mapping[str, Callable[[_Call, TableRecords], _UpsertResult]] = {
    "postgres": _upsert_postgres,
    "sqlite": _upsert_sqlite,  # the database is locked whole: no concurrent insert can race the probe
    "mysql": _upsert_mysql,
    "mariadb": _upsert_mysql,  # its RETURNING does not tell an updated row from an inserted one
}

_SAVEPOINT = "pyseata_select_for_update"


def _select_for_update(c: _Call) -> Flow[Result]:
    """Lock the rows locally, then ask the TC whether another global transaction holds them; if so,
    roll back to a savepoint (freeing the rows) and try again."""
    xid, policy = c.ctx.xid, c.policy
    last: LockConflictError | None = None
    for attempt in range(policy.attempts):
        yield Execute(f"SAVEPOINT {_SAVEPOINT}")
        keys = yield from c.query("pk", before_image)
        lock_key = build_lock_key([keys])
        free: bool = True if not lock_key else (yield LockQuery(xid, c.env.resource_id, lock_key))
        if free:
            yield Execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            result: Result = yield Execute(c.stmt.sql, c.params)
            return result
        yield Execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        last = LockConflictError(f"rows {lock_key} are locked by another global transaction", xid=xid)
        if attempt + 1 < policy.attempts:
            yield Sleep(policy.interval)
    assert last is not None
    raise _timeout(c.env, xid, policy, last)


_HANDLERS: Mapping[Kind, Callable[[_Call], Flow[Result]]] = {

    Kind.UPDATE: _update,
    Kind.DELETE: _delete,
    Kind.INSERT: _insert,
    Kind.UPSERT: _upsert,
    Kind.SELECT_FOR_UPDATE: _select_for_update,
}


# --- local commit ----------------------------------------------------------------------------------


# applicationData by (user transaction, skip check lock): the four JSON texts there can be.
_APPLICATION_DATA: Mapping[tuple[bool, bool], str | None] = {
    (user, skip): json.dumps({**({"autoCommit": False} if user else {}), **({"skipCheckLock": True} if skip else {})},
                             separators=(",", ":")) if user or skip else None
    for user in (False, True) for skip in (False, True)
}


def _application_data(ctx: ConnectionContext, user_transaction: bool, first: bool) -> str | None:
    # autoCommit false: the TC answers FailFast when the holder is rolling back.
    # skipCheckLock: pure inserts, the lock rows' unique key is check enough.
    skip = first and all(not item.before_image or not item.before_image.rows for item in ctx.undo_items)
    return _APPLICATION_DATA[(user_transaction, skip)]


def commit_flow(env: Env, ctx: ConnectionContext, policy: LockRetry | None, *,
                user_transaction: bool = True) -> Flow[None]:
    """Commit the local transaction: register the branch and write the undo log first when it
    changed rows in a global transaction; check the global locks first under global_lock.

    ``policy`` None: one registration attempt, a conflict propagates as LockConflictError (the
    caller retries the statements). Otherwise only the registration is retried, holding the
    local row locks; a final conflict rolls back and raises :class:`LockWaitTimeoutError`.
    """
    if ctx.broken:
        reason = ctx.broken
        yield from _abandon(ctx)
        raise TransactionBrokenError(f"commit refused, the local transaction was rolled back: {reason}")
    if ctx.xid and ctx.undo_items:
        yield from _commit_branch(env, ctx, policy, user_transaction)
    elif ctx.xid is None and ctx.global_lock and ctx.lock_images:
        yield from _check_global_locks(env, ctx, policy)
        yield Commit()
    else:
        yield Commit()
    ctx.reset()


def _commit_branch(env: Env, ctx: ConnectionContext, policy: LockRetry | None, user_transaction: bool) -> Flow[None]:
    xid = ctx.xid
    assert xid is not None
    lock_key = ctx.lock_key()
    attempts = 1 if policy is None else policy.attempts
    branch_id = 0
    for attempt in range(attempts):
        try:
            branch_id = yield Register(xid, env.resource_id, lock_key,
                                       _application_data(ctx, user_transaction, attempt == 0))
            break
        except LockConflictError as exc:
            if policy is None:
                raise
            if attempt + 1 >= attempts or exc.code == Code.LockKeyConflictFailFast:
                yield from _abandon(ctx)
                raise _timeout(env, xid, policy, exc) from exc
            yield Sleep(policy.interval)
        except BaseException:
            yield from _abandon(ctx)
            raise
    try:
        context, payload = pack(BranchUndoLog(xid, branch_id, tuple(ctx.undo_items)), env.undo)
        yield Execute(env.undo_table.insert_sql(), env.undo_table.row_params(xid, branch_id, context, payload))
        yield Commit()
    except BaseException as exc:
        log.error("xid=%s branch=%d phase one failed on %s after registration (%s: %s); reporting PhaseOne_Failed",
                  xid, branch_id, env.resource_id, type(exc).__name__, exc, extra={"xid": xid})
        try:
            yield Report(xid, branch_id, BranchStatus.PhaseOne_Failed, env.resource_id)
        except Exception as report_error:  # the TC rolls the branch back anyway; the undo log is not there
            log.warning("xid=%s branch=%d could not report PhaseOne_Failed: %s", xid, branch_id, report_error)
        try:
            yield from _abandon(ctx)
        except Exception:
            ctx.reset()
        raise


def _check_global_locks(env: Env, ctx: ConnectionContext, policy: LockRetry | None) -> Flow[None]:
    """global_lock: commit only when no global transaction holds the rows this transaction changed."""
    lock_key = ctx.lock_key()
    attempts = 1 if policy is None else policy.attempts
    for attempt in range(attempts):
        free: bool = yield LockQuery(None, env.resource_id, lock_key)
        if free:
            return
        if attempt + 1 < attempts:
            yield Sleep(policy.interval if policy is not None else 0.0)
    conflict = LockConflictError(f"rows {lock_key} are locked by a global transaction", Code.LockKeyConflict)
    if policy is None:
        raise conflict
    yield from _abandon(ctx)
    raise _timeout(env, None, policy, conflict)
