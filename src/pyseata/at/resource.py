"""The AT resource: one database as the RM knows it, and its phase two.

:class:`DataSource` is Seata's ``DataSourceProxy``: a resource id, a way to open connections
(``connect``), the dialect, the metadata cache and the undo-log settings. It registers itself with
the process's RM, hands out proxy connections (:meth:`DataSource.connect`, :meth:`DataSource.wrap`)
and answers the TC's phase two (BEHAVIOUR.md 3.7):

- **commit**: answers PhaseTwo_Committed at once and queues the branch; a background thread
  deletes the queued undo logs every ``commit_delay`` seconds, up to 1000 branches per DELETE,
  re-queueing them when the database fails.
- **rollback**: one local transaction on a connection of its own. Lock the undo_log row. None
  there: insert the *defense* row (log_status 1) so a phase one arriving later fails on its
  unique key, as Seata does. Otherwise, for each statement in reverse order: lock the rows it
  touched and compare them with its after image; equal -> restore the before image (delete the
  rows it inserted, update back the rows it updated, insert the rows it deleted); equal to the
  before image -> nothing to do; anything else is a *dirty write*: a change made outside the
  global transaction, which restoring would overwrite. Then nothing is changed, the rollback
  answers PhaseTwo_RollbackFailed_Unretryable (the TC ends RollbackFailed and keeps the locks)
  and the log names the XID, the branch, and every row and column that differs.

The rollback is an I/O-free flow (:func:`rollback_flow`) like phase one, driven here by the
synchronous :class:`~pyseata.at.dbapi.SyncDriver`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pyseata.at.connection import LockRetry
from pyseata.at.dbapi import ATConnection, DriverOps, SyncDriver, driver_of
from pyseata.at.errors import ATError
from pyseata.at.executor import (
    DEFAULT_LOCK_RETRY,
    DEFAULT_UNDO,
    Begin,
    Commit,
    Env,
    Execute,
    Flow,
    Result,
    Rollback,
    rows_by_keys,
    table_meta,
)
from pyseata.at.images import RowDiff, TableRecords, diff_records, format_diff
from pyseata.at.meta import TableMeta
from pyseata.at.undo import SQLUndoLog, UndoConfig, UndoLogStatus, unpack
from pyseata.client.rm import DEFAULT_REGISTRY, BranchRequest, UnretryableError
from pyseata.protocol.enums import BranchType

__all__ = ["DataSource", "DirtyWriteError", "registered_data_source", "rollback_flow"]

log = logging.getLogger("pyseata.at")

DELETE_BATCH = 1000  # branches per DELETE of committed undo logs (Seata's)
_QUEUE_LIMIT = 10_000  # queued branches before a commit flushes first
_DEFENSE_RACE_ATTEMPTS = 5


class DirtyWriteError(UnretryableError, ATError):
    """Rows an AT branch changed were changed again outside its global transaction: restoring the
    before image would lose that change, so the rollback stops for an operator."""

    def __init__(self, xid: str, branch_id: int, table: str, diffs: Sequence[RowDiff]) -> None:
        self.xid, self.branch_id, self.table, self.diffs = xid, branch_id, table, tuple(diffs)
        super().__init__(f"xid={xid} branch={branch_id}: dirty write on {table}, nothing rolled back; the rows now "
                         f"differ from the branch's after image:\n{format_diff(diffs)}")


# --- phase two rollback, as a flow ------------------------------------------------------------------


def rollback_flow(env: Env, xid: str, branch_id: int) -> Flow[None]:
    """Undo one branch in one local transaction (see the module doc)."""
    table = env.undo_table
    for _attempt in range(_DEFENSE_RACE_ATTEMPTS):
        yield Begin()
        found: Result = yield Execute(table.select_sql(), [branch_id, xid])
        rows = found.rows or []
        if not rows:
            try:
                yield Execute(table.insert_sql(), table.defense_params(xid, branch_id))
                yield Commit()
            except env.integrity_errors:
                yield Rollback()  # phase one committed its undo log meanwhile: read it again
                continue
            log.info("xid=%s branch=%d rollback on %s before its phase one: defense row written", xid, branch_id,
                     env.resource_id, extra={"xid": xid})
            return
        _branch, _xid, context, payload, status = rows[0][:5]
        if int(status) == UndoLogStatus.GLOBAL_FINISHED:
            yield Commit()
            return
        undo = unpack(None if context is None else str(context), bytes(payload), env.undo)
        for item in reversed(undo.sql_undo_logs):
            yield from _undo_item(env, xid, branch_id, item)
        yield Execute(table.delete_sql(), [branch_id, xid])
        yield Commit()
        return
    raise ATError(f"xid={xid} branch={branch_id}: the undo log kept appearing and vanishing; retry later")


def _split_name(name: str) -> tuple[str | None, str]:
    schema, dot, table = name.rpartition(".")
    return (schema, table) if dot else (None, name)


def _rekey(records: TableRecords | None, meta: TableMeta) -> TableRecords:
    # The key order is the table's (a log written by Java lists key columns in column order).
    if records is None:
        return TableRecords.empty(meta)
    return TableRecords(meta.lock_name, meta.primary_key, records.rows)


def _undo_item(env: Env, xid: str, branch_id: int, item: SQLUndoLog) -> Flow[None]:
    meta = yield from table_meta(env, _split_name(item.table_name))
    before, after = _rekey(item.before_image, meta), _rekey(item.after_image, meta)
    if not diff_records(before, after):
        return
    keys = list(dict.fromkeys(after.primary_keys() + before.primary_keys()))
    current = yield from rows_by_keys(env, meta, keys, for_update=True)
    dirty = diff_records(after, current)
    if dirty:
        if not diff_records(before, current):
            return  # already as before (Seata: "already undone")
        raise DirtyWriteError(xid, branch_id, item.table_name, dirty)
    for sql, params in _undo_statements(env, meta, before, after):
        yield Execute(sql, params)


def _undo_statements(env: Env, meta: TableMeta, before: TableRecords,
                     after: TableRecords) -> list[tuple[str, list[Any]]]:
    """DELETE the rows only the after image has, UPDATE back the rows both have, INSERT the rows
    only the before image has: one rule for INSERT, UPDATE, DELETE and upserts."""
    st, d = env.style, env.dialect
    pk = meta.primary_key

    def name(column: str) -> str:
        quoted = d.quote(column)
        return quoted.replace("%", "%%") if st.percent else quoted

    def value(column: str, v: Any) -> Any:
        return env.adapt(meta.column(column), v)

    table = meta.qualified.replace("%", "%%") if st.percent else meta.qualified
    before_keys, after_keys = set(before.primary_keys()), set(after.primary_keys())
    statements: list[tuple[str, list[Any]]] = []
    where = " AND ".join(f"{name(c)} = {st.render(i)}" for i, c in enumerate(pk))
    for key in after.primary_keys():
        if key not in before_keys:
            statements.append((f"DELETE FROM {table} WHERE {where}",
                               [value(c, v) for c, v in zip(pk, key, strict=True)]))
    for row in before.rows:
        key = row.key(pk)
        if key in after_keys:
            # A column the database computes (or an identity no UPDATE may set) is left to the database.
            fields = [f for f in row.fields if f.name not in pk and meta.column(f.name).writable]
            if not fields:
                continue
            sets = ", ".join(f"{name(f.name)} = {st.render(i)}" for i, f in enumerate(fields))
            cond = " AND ".join(f"{name(c)} = {st.render(len(fields) + i)}" for i, c in enumerate(pk))
            params = [value(f.name, f.value) for f in fields] + [value(c, v) for c, v in zip(pk, key, strict=True)]
            statements.append((f"UPDATE {table} SET {sets} WHERE {cond}", params))
        else:
            fields = [f for f in row.fields if not meta.column(f.name).generated]
            cols = ", ".join(name(f.name) for f in fields)
            marks = ", ".join(st.render(i) for i in range(len(fields)))
            # PostgreSQL's GENERATED ALWAYS AS IDENTITY takes the deleted row's own number only so.
            overriding = " OVERRIDING SYSTEM VALUE" if any(meta.column(f.name).identity_always for f in fields) else ""
            statements.append((f"INSERT INTO {table} ({cols}){overriding} VALUES ({marks})",
                               [value(f.name, f.value) for f in fields]))
    return statements


# --- the resource -----------------------------------------------------------------------------------


def registered_data_source(resource_id: str) -> DataSource | None:
    """The AT data source declared in this process under ``resource_id``, if any."""
    found = DEFAULT_REGISTRY.get(BranchType.AT, resource_id)
    return found if isinstance(found, DataSource) else None


class DataSource:
    """One database as an AT resource (Seata's ``DataSourceProxy``).

    ``connect`` opens a raw DB-API connection (sqlite3, PyMySQL, psycopg); it is called for
    phase two, for the background deletion of undo logs, and by :meth:`connect`. Without
    ``dialect`` / ``resource_id`` one connection is opened at once to find them out.
    ``register=False`` keeps it out of the process's RM (tests, tools).
    """

    branch_type = BranchType.AT
    unretryable = (DirtyWriteError,)

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        resource_id: str | None = None,
        dialect: str | None = None,
        undo: UndoConfig = DEFAULT_UNDO,
        lock_retry: LockRetry = DEFAULT_LOCK_RETRY,
        commit_delay: float = 1.0,
        register: bool = True,
        ops: DriverOps | None = None,
    ) -> None:
        self._factory = connect
        if ops is None or dialect is None or resource_id is None:
            probe = connect()
            try:
                ops = ops or driver_of(probe)
                dialect = dialect or ops.dialect(probe)
                resource_id = resource_id or ops.resource_id(probe)
            finally:
                probe.close()
        self.ops = ops
        self.env = Env.of(resource_id, dialect, ops.positional, undo=undo, lock_retry=lock_retry, adapt=ops.adapt,
                          integrity_errors=ops.integrity_errors())
        self.commit_delay = commit_delay
        self._queue: list[tuple[str, int]] = []
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False
        if register:
            DEFAULT_REGISTRY.add(self)

    @property
    def resource_id(self) -> str:
        return self.env.resource_id

    def __repr__(self) -> str:
        return f"DataSource({self.resource_id!r}, {self.env.dialect.name})"

    # --- connections ---------------------------------------------------------------------------------

    def connect(self) -> ATConnection:
        """A new proxy connection."""
        return ATConnection(self._factory(), self)

    def wrap(self, raw: Any) -> ATConnection:
        """A proxy for a connection opened elsewhere (to this same database)."""
        return ATConnection(raw, self)

    def _run(self, flow: Flow[Any]) -> Any:
        """Runs a flow in one local transaction of a fresh connection, which it then closes."""
        raw = self._factory()
        try:
            was_auto = self.ops.autocommit(raw)
            try:
                return SyncDriver(raw, self.ops).run(flow)
            except BaseException:
                raw.rollback()
                raise
            finally:
                if was_auto:
                    self.ops.restore(raw)
        finally:
            raw.close()

    def create_undo_log_table(self) -> None:
        """Creates the undo_log table (Seata's DDL for the dialect) if it does not exist."""
        raw = self._factory()
        try:
            cursor = raw.cursor()
            for statement in self.env.undo_table.ddl():
                cursor.execute(statement)
            raw.commit()
        finally:
            raw.close()

    def refresh_metadata(self) -> None:
        """Forget cached table metadata (after DDL); it is read again on next use."""
        self.env.meta.invalidate()

    # --- phase two -----------------------------------------------------------------------------------

    def branch_rollback(self, request: BranchRequest) -> bool:
        try:
            self._run(rollback_flow(self.env, request.xid, request.branch_id))
        except DirtyWriteError as exc:
            log.error("%s", exc, extra={"xid": request.xid})
            raise
        return True

    def branch_commit(self, request: BranchRequest) -> bool:
        with self._cond:
            full = len(self._queue) >= _QUEUE_LIMIT
        if full:
            self.flush()
        with self._cond:
            self._queue.append((request.xid, request.branch_id))
            self._start_worker()  # it deletes every commit_delay seconds, not per commit
        return True

    def pending_deletes(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self) -> None:
        """Deletes the undo logs of every committed branch queued so far (the worker does it every
        ``commit_delay`` seconds); failed batches go back to the queue."""
        with self._cond:
            batch, self._queue = self._queue, []
        for begin in range(0, len(batch), DELETE_BATCH):
            chunk = batch[begin : begin + DELETE_BATCH]
            try:
                self._run(self._delete_flow(chunk))
            except Exception as exc:
                log.warning("deleting %d committed undo log(s) of %s failed, will retry: %s", len(chunk),
                            self.resource_id, exc)
                with self._cond:
                    self._queue[:0] = batch[begin:]
                return

    def _delete_flow(self, chunk: list[tuple[str, int]]) -> Flow[None]:
        xids = list(dict.fromkeys(x for x, _ in chunk))
        branches = list(dict.fromkeys(b for _, b in chunk))
        yield Begin()
        yield Execute(self.env.undo_table.delete_many_sql(len(branches), len(xids)), [*branches, *xids])
        yield Commit()

    def delete_undo_logs(self, save_days: int) -> None:
        """The TC's UndoLogDelete: undo logs older than ``save_days`` days go."""
        self._run(self._old_logs_flow(max(int(save_days), 0)))

    def _old_logs_flow(self, days: int) -> Flow[None]:
        table = self.env.undo_table.qualified
        sql = _OLD_LOGS[self.env.dialect.name].format(table=table, p=self.env.style.render(0))
        yield Begin()
        yield Execute(sql, [f"-{days} days" if self.env.dialect.name == "sqlite" else days])
        yield Commit()

    def _start_worker(self) -> None:
        if self._worker is None and not self._closed:
            self._worker = threading.Thread(target=self._work, name=f"pyseata-at-undo-{self.resource_id}",
                                            daemon=True)
            self._worker.start()

    def _work(self) -> None:
        # One batch per commit_delay whatever the commit rate (Seata's AsyncWorker: once a second). A
        # flush per commit would open a connection per commit, and its DELETE would contend with the
        # undo_log INSERTs of the branches committing meanwhile.
        while True:
            with self._cond:
                deadline = time.monotonic() + self.commit_delay
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._closed:
                    return
                idle = not self._queue
            if not idle:
                self.flush()

    def close(self) -> None:
        """Deletes what is queued, stops the worker and leaves the RM's registry."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(5)
        self.flush()
        if DEFAULT_REGISTRY.get(BranchType.AT, self.resource_id) is self:
            DEFAULT_REGISTRY.remove(BranchType.AT, self.resource_id)


_OLD_LOGS = {
    "sqlite": "DELETE FROM {table} WHERE log_created < strftime('%Y-%m-%d %H:%M:%f', 'now', {p})",
    "postgres": "DELETE FROM {table} WHERE log_created < now() - {p} * interval '1 day'",
    "mysql": "DELETE FROM {table} WHERE log_created < NOW(6) - INTERVAL {p} DAY",
    "mariadb": "DELETE FROM {table} WHERE log_created < NOW(6) - INTERVAL {p} DAY",
}
