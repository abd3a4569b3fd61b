"""AT mode on asyncpg: the flows of :mod:`pyseata.at.executor`, awaited on an ``asyncpg.Connection``.

::

    import asyncpg
    from pyseata.at.asyncpg import connect_asyncpg

    conn = await connect_asyncpg(await asyncpg.connect(DSN), data_source=orders)  # or resource_id=...

    async with global_transaction():
        async with conn.transaction():      # one branch: registered, undo log written, committed at the end
            await conn.execute("UPDATE stock SET qty = qty - $1 WHERE sku = $2", 1, "A-1")
        await conn.execute("DELETE FROM cart WHERE id = $1", 7)  # outside transaction(): a branch of its own

Outside a global transaction (and :func:`pyseata.at.global_lock`) every call goes straight to
asyncpg. Inside, ``execute``, ``fetch``, ``fetchrow`` and ``fetchval`` of statements AT mode covers
run as the executor's flows say (recognised as PostgreSQL with ``$1`` parameters); the rows they
give are :class:`AsyncpgRow` tuples (indexable by column name too) instead of asyncpg ``Record`` objects.
``transaction()`` inside a global transaction opens the local transaction whose end registers the
branch; nested ``transaction()`` blocks become savepoints that keep the undo items in step.

Phase two (undo log deletion, rollback) runs on the resource's :class:`~pyseata.at.resource.DataSource`,
synchronous connections to the same database, as for psycopg's ``AsyncConnection``.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pyseata.at.connection import ConnectionContext, current_lock_retry, savepoint_command
from pyseata.at.dbapi import AsyncDriver, AsyncDriverOps, DriverOps, ProxyConnection, _ends_transaction
from pyseata.at.dialects import Paramstyle
from pyseata.at.executor import (
    Batch,
    Commit,
    Env,
    Params,
    Result,
    Rollback,
    commit_flow,
    covered_flow,
    recognize_cached,
)
from pyseata.at.recognizer import Kind
from pyseata.client.context import get_xid, requires_global_lock

if TYPE_CHECKING:
    from pyseata.at.resource import DataSource

__all__ = ["ASYNCPG_OPS", "ATAsyncpgConnection", "AsyncpgDriver", "AsyncpgRow", "connect_asyncpg"]


def _require_asyncpg() -> Any:
    try:
        return importlib.import_module("asyncpg")  # lazily: the package is an optional extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("AT mode on asyncpg needs the asyncpg package: pip install 'pyseata[postgresql]' "
                          "(or pip install asyncpg)") from exc


# --- what asyncpg is as a driver ---------------------------------------------------------------------


def _autocommit(raw: Any) -> bool:
    return not raw.is_in_transaction()


async def _begin(raw: Any) -> None:
    if not raw.is_in_transaction():
        await raw.execute("BEGIN")


async def _restore(_raw: Any) -> None:
    return None


def _errors() -> tuple[type[BaseException], ...]:
    return (_require_asyncpg().UniqueViolationError,)


def _settings(raw: Any) -> tuple[str, int, Any]:
    addr = getattr(raw, "_addr", None)
    params = getattr(raw, "_params", None)
    if isinstance(addr, tuple):
        return str(addr[0]), int(addr[1]), params
    return str(addr or ""), 5432, params  # a Unix socket path


def _reopen(raw: Any) -> Callable[[], Any]:
    """Synchronous psycopg connections like ``raw``: same server, user, password, database and settings."""
    import psycopg

    host, port, params = _settings(raw)
    options: dict[str, Any] = {"host": host, "port": port}
    if params is not None:
        options.update(user=params.user, password=params.password or None, dbname=params.database)
        settings = dict(params.server_settings or {})
        if settings:
            options["options"] = " ".join(f"-c {k}={v}" for k, v in settings.items())
    options = {k: v for k, v in options.items() if v is not None}
    return lambda: psycopg.connect(**options)


def _resource_id(raw: Any) -> str:
    host, port, params = _settings(raw)
    return f"postgresql://{host}:{port}/{params.database if params is not None else ''}"


def _no_sync(_raw: Any) -> None:
    raise TypeError("an asyncpg connection has no synchronous transaction calls")


ASYNCPG_OPS = AsyncDriverOps(
    DriverOps("asyncpg", Paramstyle.DOLLAR, Paramstyle.DOLLAR, lambda _raw: "postgres", _autocommit, _no_sync,
              _no_sync, False, _errors, _reopen, _resource_id, exit_closes=False),
    _autocommit, _begin, _restore,
)

# The flows write SQL in the driver's paramstyle: asyncpg's Env differs from the DataSource's (psycopg's
# %s) in its style (and so its table-metadata and plan caches); one per resource.
_ENVS: weakref.WeakKeyDictionary[DataSource, Env] = weakref.WeakKeyDictionary()


def _env_of(source: DataSource) -> Env:
    env = _ENVS.get(source)
    if env is None:
        base = source.env
        env = Env.of(base.resource_id, base.dialect, Paramstyle.DOLLAR, undo=base.undo, lock_retry=base.lock_retry,
                     integrity_errors=_errors())
        _ENVS[source] = env
    return env


# --- rows ----------------------------------------------------------------------------------------------


class AsyncpgRow(tuple[Any, ...]):
    """A row of a covered statement: a tuple that also answers ``row["column"]`` like asyncpg's Record."""

    _names: tuple[str, ...] = ()

    @classmethod
    def of(cls, names: Sequence[str], values: Sequence[Any]) -> AsyncpgRow:
        row = cls(values)
        row._names = tuple(names)
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return super().__getitem__(self._names.index(key))
            except ValueError:
                raise KeyError(key) from None
        return super().__getitem__(key)

    def keys(self) -> tuple[str, ...]:
        return self._names

    def values(self) -> tuple[Any, ...]:
        return tuple(self)

    def items(self) -> list[tuple[str, Any]]:
        return list(zip(self._names, self, strict=False))

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._names else default


# --- the driver of flows ---------------------------------------------------------------------------------


class AsyncpgDriver(AsyncDriver):
    """:class:`~pyseata.at.dbapi.AsyncDriver` on an asyncpg connection: statements run prepared (rows,
    column names and the command status at once); commit and rollback end the connection's
    ``transaction()`` when one is open. ``Result.lastrowid`` carries the command status (``UPDATE 2``)."""

    def __init__(self, raw: Any, transaction: Any = None) -> None:
        super().__init__(raw, ASYNCPG_OPS)
        self._transaction = transaction

    async def _step(self, step: Any) -> Any:
        if isinstance(step, Commit | Rollback):
            end = "commit" if isinstance(step, Commit) else "rollback"
            if self._transaction is not None:
                await getattr(self._transaction, end)()
            elif self.raw.is_in_transaction():
                await self.raw.execute(end.upper())
            return None
        return await super()._step(step)

    async def execute(self, sql: str, params: Params) -> Result:
        if isinstance(params, Mapping):
            raise TypeError("asyncpg takes positional parameters ($1, $2, ...), not a mapping")
        args = list(params or ())
        statement = await self.raw.prepare(sql)
        attributes = statement.get_attributes()
        records = await statement.fetch(*args)
        status = statement.get_statusmsg() or ""
        names = tuple(a.name for a in attributes)
        description = tuple((name, None, None, None, None, None, None) for name in names) if attributes else None
        rows = [tuple(r) for r in records] if attributes else None
        last = status.rsplit(" ", 1)[-1] if status else ""
        rowcount = int(last) if last.isdigit() else (len(records) if attributes else -1)
        return Result(description, rows, rowcount, status)


# --- the proxy -----------------------------------------------------------------------------------------------


def _covered() -> bool:
    return get_xid() is not None or requires_global_lock()


def _rows(result: Result) -> list[AsyncpgRow]:
    names = result.columns
    return [AsyncpgRow.of(names, r) for r in result.rows or []]


class ATAsyncpgConnection(ProxyConnection):
    """An ``asyncpg.Connection`` whose local transactions become AT branches inside global transactions.
    Everything this class does not name is the raw connection's."""

    _savepoints = itertools.count(1)

    def __init__(self, raw: Any, source: DataSource) -> None:
        self._raw, self._source = raw, source
        self._env, self._ctx = _env_of(source), ConnectionContext()
        self._transaction: Any = None  # the asyncpg Transaction of a covered transaction() block

    # --- statements ----------------------------------------------------------------------------------------

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        if not _covered():
            status: str = await self._raw.execute(query, *args, timeout=timeout)
            return status
        result = await self._statement(query, args)
        return str(result.lastrowid or "")

    async def executemany(self, command: str, args: Any, *, timeout: float | None = None) -> None:
        if not _covered():
            await self._raw.executemany(command, args, timeout=timeout)
            return
        sets = tuple(tuple(one) for one in args)
        if sets:
            await self._statement(command, Batch(sets))

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        if not _covered():
            return list(await self._raw.fetch(query, *args, timeout=timeout))
        return _rows(await self._statement(query, args))

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        if not _covered():
            return await self._raw.fetchrow(query, *args, timeout=timeout)
        rows = _rows(await self._statement(query, args))
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        if not _covered():
            return await self._raw.fetchval(query, *args, column=column, timeout=timeout)
        rows = _rows(await self._statement(query, args))
        return rows[0][column] if rows else None

    # --- transactions ----------------------------------------------------------------------------------------

    def transaction(self, **options: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        """asyncpg's ``transaction()``; inside a global transaction its end is the AT commit (branch
        registration with lock retry, undo log, commit), nested blocks are savepoints."""
        if not _covered():
            if self._transaction is not None:
                raise RuntimeError("a transaction() block opened inside a global transaction is still open")
            tx: contextlib.AbstractAsyncContextManager[Any] = self._raw.transaction(**options)
            return tx
        if self._transaction is not None:
            return self._savepoint()
        return self._covered_transaction(options)

    @contextlib.asynccontextmanager
    async def _covered_transaction(self, options: Mapping[str, Any]) -> AsyncIterator[ATAsyncpgConnection]:
        transaction = self._raw.transaction(**options)
        await transaction.start()
        self._transaction = transaction
        self._ctx.bind(get_xid(), requires_global_lock())
        try:
            try:
                yield self
            except BaseException:
                with contextlib.suppress(Exception):  # the block's error is the one to report
                    await transaction.rollback()
                raise
            await AsyncpgDriver(self._raw, transaction).run(
                commit_flow(self._env, self._ctx, current_lock_retry(self._env.lock_retry)))
        finally:
            self._transaction = None
            self._ctx.reset()

    @contextlib.asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[ATAsyncpgConnection]:
        name = f"pyseata_asyncpg_{next(self._savepoints)}"
        await self._raw.execute(f"SAVEPOINT {name}")
        self._ctx.savepoint(name)
        try:
            yield self
        except BaseException:
            await self._raw.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self._ctx.rollback_to(name)
            raise
        await self._raw.execute(f"RELEASE SAVEPOINT {name}")
        self._ctx.release(name)

    def is_in_transaction(self) -> bool:
        return bool(self._raw.is_in_transaction())

    async def close(self, *, timeout: float | None = None) -> None:
        self._ctx.reset()
        await self._raw.close(timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    # --- one statement inside a global transaction (or global_lock) -----------------------------------------

    async def _statement(self, sql: str, params: Sequence[Any] | Batch) -> Result:
        env, ctx = self._env, self._ctx
        first = params.sets[0] if isinstance(params, Batch) else params
        stmt = recognize_cached(sql, env.dialect.name, Paramstyle.DOLLAR if first else None)
        driver = AsyncpgDriver(self._raw, self._transaction)
        if not stmt.intercepted:
            if isinstance(params, Batch):
                total = 0
                for one in params.sets:
                    result = await self._statement(sql, tuple(one))
                    total += max(result.rowcount, 0)
                return Result(None, None, total, None)
            if stmt.kind is Kind.OTHER and _ends_transaction(sql) and (ctx.active or self._transaction is not None):
                raise ValueError("end a transaction() block to commit in a global transaction, not COMMIT / ROLLBACK")
            result = await driver.execute(sql, params)
            command = savepoint_command(sql) if ctx.active else None
            if command is not None:
                ctx.apply(command)
            return result
        autocommit = self._transaction is None and not self._raw.is_in_transaction()
        return await driver.run(covered_flow(env, ctx, stmt, params, autocommit=autocommit))


async def connect_asyncpg(raw: Any, resource_id: str | None = None, *,
                          data_source: DataSource | None = None) -> ATAsyncpgConnection:
    """Wrap an ``asyncpg.Connection`` for AT mode.

    The resource is ``data_source``, else the AT resource registered under ``resource_id`` (by default
    ``postgresql://host:port/database``), else a new :class:`~pyseata.at.resource.DataSource` registered
    under that id whose phase-two connections are synchronous psycopg connections like ``raw``.
    """
    asyncpg = _require_asyncpg()
    if not isinstance(raw, asyncpg.Connection):
        raise TypeError(f"connect_asyncpg wants an asyncpg.Connection, not {type(raw).__module__}.{type(raw).__name__}")
    if data_source is None:
        from pyseata.at.resource import DataSource, registered_data_source

        sync = ASYNCPG_OPS.sync
        rid = resource_id or sync.resource_id(raw)
        data_source = registered_data_source(rid)
        if data_source is None:
            from pyseata.at.dbapi import DRIVERS

            data_source = DataSource(sync.reopen(raw), resource_id=rid, dialect="postgres", ops=DRIVERS["psycopg"])
    return ATAsyncpgConnection(raw, data_source)
