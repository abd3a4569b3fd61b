"""``sqlite:///path``: the embedded, durable session store.

Durability: WAL journal with ``synchronous=FULL``, so a call that returned has been committed and
fsynced, and survives a SIGKILL or a power loss.

The costly part of an embedded store in an asyncio server is not SQLite (a write of a few rows
takes microseconds, a commit one fsync) but handing work between the event loop and threads:
waking another thread, and passing the GIL to it and back, costs more than the SQL itself, and on
a busy machine more than the fsync. So the SQL runs on the event loop, and a thread is used only
where waiting could take long:

* **Writes: group commit on the loop.** A write call queues (operation, arguments, future) and,
  when nothing will pick the queue up, schedules one flush with ``call_soon``; so the writes
  issued during one event-loop iteration share a batch. The flush opens one transaction (BEGIN
  IMMEDIATE), runs every operation's SQL in it, commits (one WAL write, one fsync) and only then
  settles every future: a call is answered once its write is durable. The loop is blocked for
  that fsync - a fraction of a millisecond on a local disk, during which requests pile up and
  make the next batch bigger. Should commits grow slow (a stalled or remote disk: over 2 ms on
  average), COMMIT moves to a commit thread, which hands each batch back with one
  ``call_soon_threadsafe``, until commits are quick again (one batch in 64 still commits on the
  loop, to find out); writes queued meanwhile make the next batch. While the commit thread has
  the write connection, the loop does not touch it.
* **Atomic operations without savepoints.** An operation either refuses before it writes anything
  (a failed compare-and-set, a lock conflict, DuplicateKeyError: answers, not failures), or fails
  the whole batch: any other error rolls the transaction back and every call of the batch raises
  StoreError. A half-done operation is never committed, and no call is told it succeeded unless
  it was committed.
* **Point reads on the loop.** get_global, get_branches, get_locks and is_lockable read a few rows
  by key through a read-only connection, on the loop itself: WAL readers never wait for the
  writer, and such a read costs microseconds, less than a thread round trip. They see committed
  data only, so never a write that has not been answered yet.
* **Scans on a reader thread.** find_globals, find_timed_out and the counts may touch many rows;
  they run on a third connection owned by a reader thread.
* **Another process on the same file** (a second TC, a tool): the loop takes the write lock without
  waiting; when the lock is held, the commit thread waits for it (busy timeout) and runs that batch
  itself, and a point read that finds the file locked goes to the reader thread. The loop never
  waits for a lock.
* **One cursor per connection**, reused for every statement (``Connection.execute`` makes a new
  cursor each time), and SQL text kept in module constants, so each statement is prepared once
  and found in the connection's statement cache.

One event loop at a time may use a store; ``close()`` may come from another loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeAlias, TypeVar, TypeVarTuple, cast

from pyseata.coordinator.lockkeys import RowKey, normalize_row_keys
from pyseata.coordinator.model import BranchTransaction, GlobalTransaction, LockStatus, RowLock
from pyseata.coordinator.store.base import (
    FREE_TASK_LOCK_VALUE,
    KEEP,
    DuplicateKeyError,
    ExpectedStatus,
    KeepType,
    LockChange,
    MicroClock,
    RegisterOutcome,
    SessionStore,
    StoreClosedError,
    StoreError,
    expected_statuses,
)
from pyseata.coordinator.store.schema import GLOBAL_TABLE, LOCK_TABLE, ensure_sqlite_schema
from pyseata.errors import ConfigError
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus

__all__ = ["SqliteStore"]

R = TypeVar("R")
E = TypeVar("E", bound=Enum)
Ts = TypeVarTuple("Ts")

#: Most operations one group commit takes; bounds how long one flush keeps the loop busy.
DEFAULT_BATCH_LIMIT: Final = 1024
_BUSY_TIMEOUT_MS: Final = 10_000  # another process writing the same file (a second TC, a tool)
_WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024  # truncate the WAL back to this after checkpoints
#: COMMIT moves off the loop when it takes longer than this on average, and back below the second;
#: meanwhile every _PROBE_EVERY-th batch commits on the loop to time the disk again (the thread's
#: own timing would include waiting for the GIL).
_INLINE_COMMIT_MAX_S: Final = 0.002
_INLINE_COMMIT_RESUME_S: Final = 0.001
_PROBE_EVERY: Final = 64
_LOCKED: Final = frozenset((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))  # primary result codes


class _Cursor(sqlite3.Cursor):
    """The one cursor through which everything runs on its connection (``Connection.execute``
    makes and registers a new cursor per call, a third of a point read's cost). The writer's
    carries the store's clock, so operations can stamp gmt_* columns."""

    stamp: MicroClock


_Op: TypeAlias = Callable[..., Any]  # op(cursor, *args) -> the call's answer
_Call: TypeAlias = tuple[_Op, tuple[Any, ...], "asyncio.Future[Any]"]
_Result: TypeAlias = tuple[bool, Any]  # (succeeded, value or exception)


def _locked(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock (waiting would help)."""
    code = getattr(exc, "sqlite_errorcode", 0)  # absent when not raised by SQLite itself
    return isinstance(exc, sqlite3.OperationalError) and code & 0xFF in _LOCKED


def _wrap(where: str, exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        wrapped = StoreError(f"sqlite store {where}: {exc}")
        wrapped.__cause__ = exc
        return wrapped
    return exc


def _settle(calls: list[_Call], results: list[_Result]) -> None:
    for (_, _, future), (ok, value) in zip(calls, results, strict=True):
        if future.done():  # the caller was cancelled; the operation ran anyway
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _rollback(cur: _Cursor) -> None:
    if cur.connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            cur.execute("ROLLBACK")


# --- writes -----------------------------------------------------------------------------------


class _Batch(NamedTuple):
    """A job for the commit thread: COMMIT what the loop ran, or (results None) run it all."""

    calls: list[_Call]
    results: list[_Result] | None
    loop: asyncio.AbstractEventLoop


class _Stop(NamedTuple):
    loop: asyncio.AbstractEventLoop
    stopped: asyncio.Future[None]


class _GroupCommit:
    """The write path: batches run on the event loop, one transaction and one fsync each.

    COMMIT runs on the loop too while commits are quick (an fsync of a few pages: a fraction of a
    millisecond, less than waking a thread and passing the GIL back and forth twice, which is
    what a commit thread costs on a busy machine). When commits turn slow (a stalled or remote
    disk), they move to the commit thread, so the loop keeps serving everything but writes; every
    _PROBE_EVERY-th batch still commits on the loop to time the disk, and commits come back once
    they are quick again. While ``_committing``, the commit thread owns the
    write connection until it hands the batch back through ``call_soon_threadsafe``; otherwise
    the loop owns it.
    """

    def __init__(self, cur: _Cursor, where: str, batch_limit: int) -> None:
        self._cur = cur
        self._where = where
        self._batch_limit = batch_limit
        self._queued: list[_Call] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # where the queued calls wait
        self._flush_scheduled = False
        self._committing = False  # the commit thread has the connection
        self._inline = True  # COMMIT on the loop
        self._commit_s = 0.0  # moving average of how long a COMMIT on the loop takes
        self._threaded = 0  # batches committed by the thread since the last probe
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._jobs: queue.SimpleQueue[_Batch | _Stop] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pyseata-sqlite-commit", daemon=True)
        self._thread.start()

    def submit(self, op: _Op, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        future = loop.create_future()
        self._queued.append((op, args, future))
        if not (self._flush_scheduled or self._committing):
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve a new event loop; what a closed loop left queued was never run nor answered."""
        old = self._loop
        if old is not None and (self._committing or (self._queued and not old.is_closed())):
            raise StoreError(f"sqlite store {self._where}: still busy with the calls of another event loop")
        self._queued, self._flush_scheduled, self._loop = [], False, loop

    def _flush(self) -> None:
        """On the loop: run the queued calls in one transaction and commit it."""
        self._flush_scheduled = False
        if self._committing or not self._queued:
            return
        calls = self._queued
        if len(calls) > self._batch_limit:
            calls, self._queued = calls[: self._batch_limit], calls[self._batch_limit :]
        else:
            self._queued = []
        cur = self._cur
        try:
            cur.execute("BEGIN IMMEDIATE")  # busy_timeout 0: fails at once if another process writes
        except sqlite3.Error as exc:
            if _locked(exc):  # the thread waits for the lock instead, and runs the batch
                self._committing = True
                self._jobs.put(_Batch(calls, None, cast(asyncio.AbstractEventLoop, self._loop)))
            else:
                self._done(calls, self._failed(len(calls), exc), None)
            return
        try:
            results = _run_calls(cur, calls)
        except Exception as exc:
            _rollback(cur)
            self._done(calls, self._failed(len(calls), exc), None)
            return
        if not self._inline and self._threaded < _PROBE_EVERY:
            self._threaded += 1
            self._committing = True
            self._jobs.put(_Batch(calls, results, cast(asyncio.AbstractEventLoop, self._loop)))
            return
        started = time.perf_counter()
        try:
            cur.execute("COMMIT")
        except Exception as exc:
            _rollback(cur)
            results = self._failed(len(calls), exc)
        self._done(calls, results, time.perf_counter() - started)

    def _done(self, calls: list[_Call], results: list[_Result], commit_s: float | None) -> None:
        """On the loop: the batch is over (committed or failed). Answer its calls."""
        self._committing = False
        if commit_s is not None:  # committed on the loop
            self._commit_s += (commit_s - self._commit_s) / 8
            limit = _INLINE_COMMIT_MAX_S if self._inline else _INLINE_COMMIT_RESUME_S
            self._inline, self._threaded = self._commit_s < limit, 0
        if self._queued and not self._flush_scheduled:  # queued during a threaded commit
            self._flush_scheduled = True
            cast(asyncio.AbstractEventLoop, self._loop).call_soon(self._flush)
        _settle(calls, results)
        if not (self._committing or self._queued):
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _failed(self, n: int, exc: Exception) -> list[_Result]:
        failure = StoreError(
            f"sqlite store {self._where}: a group commit of {n} operation(s) failed and was rolled "
            f"back, none was acknowledged: {exc!r}"
        )
        failure.__cause__ = exc
        return [(False, failure)] * n

    def _run(self) -> None:
        """The commit thread."""
        cur = self._cur
        while True:
            job = self._jobs.get()
            if isinstance(job, _Stop):
                with contextlib.suppress(sqlite3.Error):
                    cur.connection.close()
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(job.stopped.set_result, None)
                return
            calls, results, loop = job
            try:
                if results is None:
                    results = self._run_when_unlocked(calls)
                cur.execute("COMMIT")
            except Exception as exc:  # never let the thread die: callers would wait forever
                _rollback(cur)
                results = self._failed(len(calls), exc)
            try:
                loop.call_soon_threadsafe(self._done, calls, results, None)
            except RuntimeError:  # the loop is closed: nobody waits for these answers any more
                self._committing = False

    def _run_when_unlocked(self, calls: list[_Call]) -> list[_Result]:
        """Another process held the write lock: wait for it here, then run the batch."""
        cur = self._cur
        cur.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        try:
            cur.execute("BEGIN IMMEDIATE")
        finally:
            cur.execute("PRAGMA busy_timeout = 0")
        return _run_calls(cur, calls)

    async def stop(self) -> None:
        """Finish this loop's calls, then close the connection and end the thread."""
        loop = asyncio.get_running_loop()
        while self._loop is loop and (self._queued or self._committing):
            waiter: asyncio.Future[None] = loop.create_future()
            self._idle_waiters.append(waiter)
            await waiter
        stopped: asyncio.Future[None] = loop.create_future()
        self._jobs.put(_Stop(loop, stopped))  # after any batch of a closed loop still committing
        await stopped
        self._thread.join()


def _run_calls(cur: _Cursor, calls: list[_Call]) -> list[_Result]:
    """Each call's operation, in the open transaction. Anything but a refusal fails the batch."""
    results: list[_Result] = []
    append = results.append
    for op, args, _ in calls:
        try:
            append((True, op(cur, *args)))
        except DuplicateKeyError as exc:  # raised before the operation wrote anything
            append((False, exc))
    return results


# --- reads off the loop -----------------------------------------------------------------------


class _Reader:
    """A thread that owns a connection for scans, and for reads that must wait for a lock."""

    def __init__(self, cur: _Cursor, where: str) -> None:
        self._cur = cur
        self._where = where
        self._jobs: queue.SimpleQueue[tuple[_Op, tuple[Any, ...], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="pyseata-sqlite-reader", daemon=True)
        self._thread.start()

    def submit(self, op: _Op, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self._jobs.put((op, args, future))
        return future

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            op, args, future = job
            try:
                result: _Result = (True, op(self._cur, *args))
            except Exception as exc:
                result = (False, _wrap(self._where, exc))
            # a closed loop raises RuntimeError: nobody is waiting for this result any more
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(_settle, [job], [result])

    async def stop(self) -> None:
        await self.submit(_close, ())
        self._jobs.put(None)
        self._thread.join()


def _close(cur: _Cursor) -> None:
    cur.connection.close()


# --- opening ----------------------------------------------------------------------------------

# What to tell the operator, by primary SQLite result code (sqlite_errorcode & 0xFF).
_OPEN_HINTS: Final[dict[int, str]] = {
    sqlite3.SQLITE_NOTADB: "is not a SQLite database: point the store URL at a new file or at an existing "
    "pyseata store",
    sqlite3.SQLITE_CANTOPEN: "cannot be opened: check that its directory exists and this user may write "
    "there",
    sqlite3.SQLITE_READONLY: "is read-only for this process: fix its permissions (and its directory's) or "
    "choose another path",
    sqlite3.SQLITE_PERM: "may not be accessed by this process: fix its permissions or choose another path",
    sqlite3.SQLITE_CORRUPT: "is a corrupt SQLite database: restore it from a backup or point the store at "
    "a new file",
    sqlite3.SQLITE_BUSY: "is locked by another process for too long: stop the other TC or tool using it",
}


def _open_error(where: str, exc: sqlite3.Error) -> ConfigError:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    hint = _OPEN_HINTS.get(code, "cannot be used as the session store")
    error = ConfigError(f"sqlite store {where} {hint} (sqlite: {exc})")
    error.__cause__ = exc
    return error


def _connect(path: Path, where: str, *, role: Literal["writer", "reader", "peek"]) -> sqlite3.Connection:
    """A connection in autocommit mode; readers are read-only, and the loop's ("peek") never
    waits for a lock."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=512
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {0 if role == 'peek' else _BUSY_TIMEOUT_MS}")
        if role != "writer":
            conn.execute("PRAGMA query_only = 1")
            return conn
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # reads the header: not a db?
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
        if str(mode).lower() != "wal":
            raise ConfigError(
                f"sqlite store {where}: the file system refused WAL mode (got {mode!r}); "
                "put the store on a local disk"
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare_path(path: Path, where: str) -> None:
    if path.is_dir():
        raise ConfigError(f"sqlite store {where} is a directory; give a file path, e.g. {path / 'tc.db'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"sqlite store {where}: cannot create its directory {path.parent} ({exc.strerror}); "
            "choose a path in a writable directory"
        ) from exc


_LAST_STAMP = (
    "SELECT max(gmt_modified) FROM global_table UNION ALL SELECT max(gmt_modified) FROM branch_table "
    "UNION ALL SELECT max(gmt_modified) FROM lock_table"
)


def _last_stamp(conn: sqlite3.Connection) -> int:
    """The newest stamp stored, so a restarted clock never orders new rows before old ones."""
    values = [row[0] for row in conn.execute(_LAST_STAMP).fetchall()]
    return max((v for v in values if isinstance(v, int)), default=0)


# --- the store --------------------------------------------------------------------------------


class SqliteStore(SessionStore):
    """Durable :class:`SessionStore` on one SQLite file, with group commit."""

    durable = True

    def __init__(self, path: str | os.PathLike[str], *, batch_limit: int = DEFAULT_BATCH_LIMIT) -> None:
        self.path = Path(path)
        where = str(path)
        _prepare_path(self.path, where)
        try:
            writer = _connect(self.path, where, role="writer")
        except sqlite3.Error as exc:
            raise _open_error(where, exc) from exc
        opened = [writer]
        try:
            ensure_sqlite_schema(writer, where)
            writes = writer.cursor(_Cursor)
            writes.stamp = MicroClock(_last_stamp(writer))
            writer.execute("PRAGMA busy_timeout = 0")  # the loop never waits for a lock
            opened.append(reader := _connect(self.path, where, role="reader"))
            opened.append(peek := _connect(self.path, where, role="peek"))
        except BaseException as exc:
            for conn in opened:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _open_error(where, exc) from exc
            raise
        self._where = where
        self._closed = False
        self._peek = peek.cursor(_Cursor)
        self._writes = _GroupCommit(writes, where, batch_limit)
        self._reader = _Reader(reader.cursor(_Cursor), where)

    def __repr__(self) -> str:
        return f"<SqliteStore {str(self.path)!r}{' closed' if self._closed else ''}>"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the sqlite store {str(self.path)!r} is closed")

    def _write(self, op: Callable[[_Cursor, *Ts], R], *args: *Ts) -> asyncio.Future[R]:
        """Queue a write for the next group commit; the future settles once it is durable."""
        self._check_open()
        return self._writes.submit(op, args)

    async def _read(self, op: Callable[[_Cursor, *Ts], R], *args: *Ts) -> R:
        """A read of a few rows by key, on the event loop itself."""
        self._check_open()
        try:
            return op(self._peek, *args)
        except sqlite3.Error as exc:
            if not _locked(exc):
                raise _wrap(self._where, exc) from exc
        # another process holds a lock a reader must wait for (recovering the WAL): not here
        return await self._scan(op, *args)

    def _scan(self, op: Callable[[_Cursor, *Ts], R], *args: *Ts) -> asyncio.Future[R]:
        """A read that may touch many rows, on the reader thread."""
        self._check_open()
        return self._reader.submit(op, args)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(self._writes.stop(), self._reader.stop())
        self._peek.connection.close()

    # globals

    async def insert_global(self, g: GlobalTransaction) -> None:
        await self._write(_insert_global, g)

    async def get_global(self, xid: str) -> GlobalTransaction | None:
        return await self._read(_get_global, xid)

    async def _set_global_status(
        self, xid: str, new: GlobalStatus, expected: ExpectedStatus, locks: LockChange
    ) -> bool:
        return await self._write(_change_global_status, xid, new, _status_mask(expected), locks)

    async def remove_global(self, xid: str) -> None:
        await self._write(_remove_global, xid)

    async def find_globals(
        self, statuses: Collection[GlobalStatus], *, limit: int
    ) -> list[GlobalTransaction]:
        wanted = sorted({int(s) for s in statuses})
        if not wanted or limit <= 0:
            return []
        return await self._scan(_find_globals, wanted, limit)

    async def find_timed_out(self, now_ms: int, *, limit: int) -> list[GlobalTransaction]:
        if limit <= 0:
            return []
        return await self._scan(_find_timed_out, now_ms, limit)

    async def count_globals(self) -> int:
        return await self._scan(_count, _COUNT_GLOBALS)

    # branches

    async def _register_branch_keys(
        self, branch: BranchTransaction, keys: list[RowKey], skip_check: bool, fail_fast: bool
    ) -> RegisterOutcome:
        return await self._write(_register_branch, branch, keys, skip_check, fail_fast)

    async def get_branches(self, xid: str) -> list[BranchTransaction]:
        return await self._read(_get_branches, xid)

    async def update_branch(
        self,
        xid: str,
        branch_id: int,
        status: BranchStatus,
        application_data: str | Literal[KeepType.KEEP] | None = KEEP,
    ) -> bool:
        return await self._write(_update_branch, xid, branch_id, status, application_data)

    async def remove_branch(self, xid: str, branch_id: int, *, release_locks: bool = True) -> None:
        await self._write(_remove_branch, xid, branch_id, release_locks)

    # row locks

    async def release_global_locks(self, xid: str) -> None:
        await self._write(_release_global_locks, xid)

    async def is_lockable(self, xid: str, row_keys: Sequence[str | RowKey]) -> bool:
        keys = normalize_row_keys(row_keys)
        if not keys:
            return True
        return await self._read(_is_lockable, xid, keys)

    async def get_locks(self, xid: str) -> list[RowLock]:
        return await self._read(_get_locks, xid)

    async def count_locks(self) -> int:
        return await self._scan(_count, _COUNT_LOCKS)

    # distributed task locks

    async def acquire_task_lock(self, key: str, owner: str, ttl_ms: int, now_ms: int) -> bool:
        return await self._write(_acquire_task_lock, key, owner, now_ms + ttl_ms, now_ms)

    async def release_task_lock(self, key: str, owner: str) -> None:
        await self._write(_release_task_lock, key, owner)


# --- operations -------------------------------------------------------------------------------
#
# Each is a plain function of a connection's cursor. Writes run inside the batch's transaction,
# on the loop (or on the commit thread when another process held the lock); reads on whichever
# connection the store picks. A write either refuses before writing anything or lets any error
# fail the whole batch (see the module docstring): no savepoints needed.

_GLOBAL_INSERT: Final = (
    f"INSERT INTO global_table ({GLOBAL_TABLE.column_list}) VALUES ({', '.join('?' * 11)})"
)
_GLOBAL_SELECT: Final = f"SELECT {GLOBAL_TABLE.column_list} FROM global_table"
_GLOBAL_BY_XID: Final = f"{_GLOBAL_SELECT} WHERE xid = ?"
_GLOBAL_STATUS: Final = "SELECT status FROM global_table WHERE xid = ?"
_GLOBAL_SET_STATUS: Final = "UPDATE global_table SET status = ?, gmt_modified = ? WHERE xid = ?"
# the allowed statuses as a bit mask keep this one cached statement for any set
_GLOBAL_CAS_STATUS: Final = (
    "UPDATE global_table SET status = ?, gmt_modified = ? WHERE xid = ? AND (? >> status) & 1"
)
_GLOBALS_IN_STATUS: Final = f"{_GLOBAL_SELECT} WHERE status IN ({{}}) ORDER BY gmt_modified LIMIT ?"
_GLOBALS_TIMED_OUT: Final = (
    f"{_GLOBAL_SELECT} WHERE status = ? AND begin_time + timeout < ? "
    "ORDER BY begin_time + timeout, gmt_modified LIMIT ?"
)
_COUNT_GLOBALS: Final = "SELECT count(*) FROM global_table"
# BranchTransaction's field order, which differs from the table's
_BRANCH_COLUMNS: Final = (
    "branch_id, xid, transaction_id, resource_id, branch_type, status, resource_group_id, client_id, "
    "application_data, gmt_create, gmt_modified"
)
_BRANCH_INSERT: Final = f"INSERT INTO branch_table ({_BRANCH_COLUMNS}) VALUES ({', '.join('?' * 11)})"
_BRANCHES_OF: Final = f"SELECT {_BRANCH_COLUMNS} FROM branch_table WHERE xid = ? ORDER BY gmt_create, branch_id"
_BRANCH_SET_STATUS: Final = (
    "UPDATE branch_table SET status = ?, gmt_modified = ? WHERE branch_id = ? AND xid = ?"
)
_BRANCH_SET_STATUS_DATA: Final = (
    "UPDATE branch_table SET status = ?, application_data = ?, gmt_modified = ? "
    "WHERE branch_id = ? AND xid = ?"
)
_BRANCH_DELETE: Final = "DELETE FROM branch_table WHERE branch_id = ? AND xid = ?"
_LOCK_INSERT: Final = f"INSERT INTO lock_table ({LOCK_TABLE.column_list}) VALUES ({', '.join('?' * 10)})"
_LOCK_HOLDER: Final = "SELECT xid, status FROM lock_table WHERE row_key = ?"
_LOCKS_OF: Final = f"SELECT {LOCK_TABLE.column_list} FROM lock_table WHERE xid = ? ORDER BY row_key"
_LOCKS_DELETE: Final = "DELETE FROM lock_table WHERE xid = ?"
_LOCKS_DELETE_BRANCH: Final = "DELETE FROM lock_table WHERE branch_id = ? AND xid = ?"
_LOCKS_MARK: Final = "UPDATE lock_table SET status = ?, gmt_modified = ? WHERE xid = ?"
_COUNT_LOCKS: Final = "SELECT count(*) FROM lock_table"
_SESSION_DELETE: Final = (
    "DELETE FROM lock_table WHERE xid = ?",
    "DELETE FROM branch_table WHERE xid = ?",
    "DELETE FROM global_table WHERE xid = ?",
)
_TASK_LOCK_SELECT: Final = "SELECT lock_value, expire FROM distributed_lock WHERE lock_key = ?"
_TASK_LOCK_SET: Final = "INSERT OR REPLACE INTO distributed_lock (lock_key, lock_value, expire) VALUES (?, ?, ?)"
_TASK_LOCK_FREE: Final = (
    "UPDATE distributed_lock SET lock_value = ?, expire = 0 WHERE lock_key = ? AND lock_value = ?"
)


class _Members(dict[Any, E]):
    """An enum's members by stored value: a dict lookup per row read instead of an enum call."""

    def __init__(self, convert: Callable[[Any], E], members: Iterable[tuple[Any, E]]) -> None:
        super().__init__(members)
        self._convert = convert

    def __missing__(self, value: Any) -> E:
        return self._convert(value)  # not a member: the enum's own error


_GLOBAL_STATUS_OF: Final = _Members(GlobalStatus, ((s.value, s) for s in GlobalStatus))
_BRANCH_STATUS_OF: Final = _Members(BranchStatus, ((s.value, s) for s in BranchStatus))
_BRANCH_TYPE_OF: Final = _Members(BranchType.__getitem__, ((t.name, t) for t in BranchType))
_LOCK_STATUS_OF: Final = _Members(LockStatus, ((s.value, s) for s in LockStatus))


@functools.cache
def _status_mask(expected: ExpectedStatus) -> int | None:
    """The allowed statuses as a bit mask (None: any), so one cached statement serves every set."""
    allowed = expected_statuses(expected)
    return None if allowed is None else sum(1 << s for s in allowed)


def _global_from_row(row: tuple[Any, ...]) -> GlobalTransaction:
    return GlobalTransaction(row[0], row[1], _GLOBAL_STATUS_OF[row[2]], *row[3:])


def _branch_from_row(row: tuple[Any, ...]) -> BranchTransaction:
    return BranchTransaction(
        row[0], row[1], row[2], row[3], _BRANCH_TYPE_OF[row[4]], _BRANCH_STATUS_OF[row[5]], *row[6:]
    )


def _lock_from_row(row: tuple[Any, ...]) -> RowLock:
    return RowLock(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], _LOCK_STATUS_OF[row[7]], row[8], row[9]
    )


def _insert_global(cur: _Cursor, g: GlobalTransaction) -> None:
    stamp = cur.stamp()
    try:
        cur.execute(
            _GLOBAL_INSERT,
            (
                g.xid, g.transaction_id, int(g.status), g.application_id, g.transaction_service_group,
                g.transaction_name, g.timeout, g.begin_time, g.application_data, stamp, stamp,
            ),
        )
    except sqlite3.IntegrityError as exc:  # a failed statement undoes itself: nothing written
        raise DuplicateKeyError(f"global transaction {g.xid!r} exists already") from exc


def _get_global(cur: _Cursor, xid: str) -> GlobalTransaction | None:
    rows = cur.execute(_GLOBAL_BY_XID, (xid,)).fetchall()
    return _global_from_row(rows[0]) if rows else None


def _change_global_status(
    cur: _Cursor, xid: str, new: GlobalStatus, mask: int | None, locks: LockChange
) -> bool:
    stamp = cur.stamp()
    if mask is None:
        changed = cur.execute(_GLOBAL_SET_STATUS, (new, stamp, xid)).rowcount
    else:
        changed = cur.execute(_GLOBAL_CAS_STATUS, (new, stamp, xid, mask)).rowcount
    if changed != 1:
        return False
    if locks == "release":
        cur.execute(_LOCKS_DELETE, (xid,))
    elif locks == "mark":
        cur.execute(_LOCKS_MARK, (LockStatus.Rollbacking, stamp, xid))
    return True


def _remove_global(cur: _Cursor, xid: str) -> None:
    params = (xid,)
    for sql in _SESSION_DELETE:
        cur.execute(sql, params)


def _find_globals(cur: _Cursor, statuses: list[int], limit: int) -> list[GlobalTransaction]:
    sql = _GLOBALS_IN_STATUS.format(", ".join("?" * len(statuses)))
    return [_global_from_row(r) for r in cur.execute(sql, (*statuses, limit)).fetchall()]


def _find_timed_out(cur: _Cursor, now_ms: int, limit: int) -> list[GlobalTransaction]:
    rows = cur.execute(_GLOBALS_TIMED_OUT, (GlobalStatus.Begin, now_ms, limit)).fetchall()
    return [_global_from_row(r) for r in rows]


def _count(cur: _Cursor, sql: str) -> int:
    return int(cur.execute(sql).fetchall()[0][0])


def _register_branch(
    cur: _Cursor, branch: BranchTransaction, keys: list[RowKey], skip_check: bool, fail_fast: bool
) -> RegisterOutcome:
    xid = branch.xid
    rows = cur.execute(_GLOBAL_STATUS, (xid,)).fetchall()
    if not rows:
        return RegisterOutcome.GLOBAL_NOT_FOUND
    if rows[0][0] != GlobalStatus.Begin:
        return RegisterOutcome.GLOBAL_NOT_ACTIVE
    if skip_check:
        # Seata relies on the row key's uniqueness here: any row there, even this xid's, is a
        # conflict. Looked up first (this transaction is the only writer) so nothing is written.
        to_take = keys
        if any(cur.execute(_LOCK_HOLDER, (k.key,)).fetchall() for k in keys):
            return RegisterOutcome.LOCK_CONFLICT
    else:
        to_take, outcome = _check_locks(cur, xid, keys, fail_fast)
        if outcome is not RegisterOutcome.OK:
            return outcome
    stamp = cur.stamp()
    tid, bid = branch.transaction_id, branch.branch_id
    try:  # the branch row first: if its id exists, this failed statement is all there was
        cur.execute(
            _BRANCH_INSERT,
            (
                bid, xid, tid, branch.resource_id, branch.branch_type.name, int(branch.status),
                branch.resource_group_id, branch.client_id, branch.application_data, stamp, stamp,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise DuplicateKeyError(f"branch {bid} exists already") from exc
    if to_take:
        cur.executemany(
            _LOCK_INSERT,
            [(k.key, xid, tid, bid, k.resource_id, k.table_name, k.pk, 0, stamp, stamp) for k in to_take],
        )
    return RegisterOutcome.OK


def _check_locks(
    cur: _Cursor, xid: str, keys: list[RowKey], fail_fast: bool
) -> tuple[list[RowKey], RegisterOutcome]:
    """The keys still to take, or the conflict that stops the registration."""
    to_take: list[RowKey] = []
    conflict = rollbacking = False
    for k in keys:
        held = cur.execute(_LOCK_HOLDER, (k.key,)).fetchall()
        if not held:
            to_take.append(k)
        elif held[0][0] != xid:
            conflict = True
            rollbacking = rollbacking or held[0][1] == LockStatus.Rollbacking
    if not conflict:
        return to_take, RegisterOutcome.OK
    if fail_fast and rollbacking:
        return [], RegisterOutcome.LOCK_CONFLICT_FAIL_FAST
    return [], RegisterOutcome.LOCK_CONFLICT


def _get_branches(cur: _Cursor, xid: str) -> list[BranchTransaction]:
    return [_branch_from_row(r) for r in cur.execute(_BRANCHES_OF, (xid,)).fetchall()]


def _update_branch(
    cur: _Cursor,
    xid: str,
    branch_id: int,
    status: BranchStatus,
    application_data: str | Literal[KeepType.KEEP] | None,
) -> bool:
    stamp = cur.stamp()
    if application_data is KEEP:
        cur.execute(_BRANCH_SET_STATUS, (status, stamp, branch_id, xid))
    else:
        cur.execute(_BRANCH_SET_STATUS_DATA, (status, application_data, stamp, branch_id, xid))
    return cur.rowcount == 1


def _remove_branch(cur: _Cursor, xid: str, branch_id: int, release_locks: bool) -> None:
    cur.execute(_BRANCH_DELETE, (branch_id, xid))
    if release_locks:
        cur.execute(_LOCKS_DELETE_BRANCH, (branch_id, xid))


def _release_global_locks(cur: _Cursor, xid: str) -> None:
    cur.execute(_LOCKS_DELETE, (xid,))


def _is_lockable(cur: _Cursor, xid: str, keys: list[RowKey]) -> bool:
    for k in keys:
        held = cur.execute(_LOCK_HOLDER, (k.key,)).fetchall()
        if held and held[0][0] != xid:
            return False
    return True


def _get_locks(cur: _Cursor, xid: str) -> list[RowLock]:
    return [_lock_from_row(r) for r in cur.execute(_LOCKS_OF, (xid,)).fetchall()]


def _acquire_task_lock(cur: _Cursor, key: str, owner: str, expire: int, now_ms: int) -> bool:
    rows = cur.execute(_TASK_LOCK_SELECT, (key,)).fetchall()
    if rows:
        value, current_expire = rows[0]
        if value not in (owner, FREE_TASK_LOCK_VALUE) and current_expire >= now_ms:
            return False
    cur.execute(_TASK_LOCK_SET, (key, owner, expire))
    return True


def _release_task_lock(cur: _Cursor, key: str, owner: str) -> None:
    cur.execute(_TASK_LOCK_FREE, (FREE_TASK_LOCK_VALUE, key, owner))
