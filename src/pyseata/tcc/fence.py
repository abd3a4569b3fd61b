"""The TCC fence: Seata's ``tcc_fence_log``, in the same local transaction as the business change.

One row per branch, keyed ``(xid, branch_id)``; its status says how far the branch got
(BEHAVIOUR.md 4.2-4.3)::

    try       INSERT 1 (tried), then the try, one local transaction. A duplicate key means the
              cancel came first: the try is refused (:class:`TryRefusedError`): *suspension*.
    confirm   row 1 -> UPDATE to 2 (committed), then the confirm, one local transaction;
              row 2 -> done already (idempotent); no row -> not tried here yet: retry later.
    cancel    row 1 -> UPDATE to 3 (rollbacked), then the cancel, one local transaction;
              row 3 or 4 -> done already; no row -> *empty rollback*: INSERT 4 (suspended) and
              succeed without calling the cancel, so a try arriving later is refused.

Two cases Seata answers with a retryable "false" are final here (:class:`FenceStateError`, an
:class:`~pyseata.client.rm.UnretryableError`): a confirm finding the branch rolled back or
suspended, a cancel finding it committed. No retry can change a finished row, so the TC should
stop and tell an operator rather than retry forever.

The fence is per database: give it a DB-API connection factory (sqlite3, psycopg 3, PyMySQL; the
dialect names the SQL below) and use the connection it hands the try, confirm and cancel
(``action_context().connection``) for the business change. Rows of finished branches are deleted
after ``clean_after`` seconds by a background cleaner every ``clean_period`` seconds (0: never;
:meth:`Fence.clean` runs it by hand). Suspended rows must outlive any late try: keep
``clean_after`` above the longest global transaction timeout.

Timestamps are UTC. On MySQL/MariaDB prefer READ COMMITTED for the business transactions: under
REPEATABLE READ the ``SELECT ... FOR UPDATE`` of a missing row takes gap locks that can deadlock
against a concurrent try (Seata documents the same); a deadlock only costs a retry.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, TypeVar

from pyseata.client.rm import PhaseTwoResult, UnretryableError
from pyseata.errors import PyseataError
from pyseata.protocol.enums import BranchStatus

__all__ = [
    "DIALECTS",
    "Dialect",
    "Fence",
    "FenceError",
    "FenceRaceError",
    "FenceRowMissingError",
    "FenceStateError",
    "FenceStatus",
    "TryRefusedError",
]

log = logging.getLogger("pyseata.tcc.fence")

T = TypeVar("T")


class FenceStatus(IntEnum):
    """``tcc_fence_log.status``: Seata's codes."""

    TRIED = 1
    COMMITTED = 2
    ROLLBACKED = 3
    SUSPENDED = 4


_FINISHED = (FenceStatus.COMMITTED, FenceStatus.ROLLBACKED, FenceStatus.SUSPENDED)


class FenceError(PyseataError):
    """The fence stopped a TCC phase; ``.xid`` and ``.branch_id`` name the branch."""

    def __init__(self, message: str, *, xid: str, branch_id: int) -> None:
        super().__init__(message)
        self.xid, self.branch_id = xid, branch_id


class TryRefusedError(FenceError):
    """The try arrived after its branch was cancelled (suspension): it must not run."""


class FenceRowMissingError(FenceError):
    """A confirm for a branch whose try left no row here (yet): retryable."""


class FenceRaceError(FenceError):
    """The row changed under us (a try or another phase two at the same moment): retryable."""


class FenceStateError(FenceError, UnretryableError):
    """The row says the branch ended the other way (confirm after cancel, or the reverse)."""


# --- the SQL of each database: one table --------------------------------------------------------


def _sqlite_start(conn: Any) -> None:
    # Take the write lock up front: SQLite has no SELECT ... FOR UPDATE.
    if not conn.in_transaction:
        conn.execute("BEGIN IMMEDIATE")


def _psycopg_start(conn: Any) -> None:
    if conn.autocommit:
        conn.autocommit = False  # the fence row and the business change need one transaction


def _pymysql_start(conn: Any) -> None:
    conn.begin()  # also when the factory's connections autocommit


def _sqlite_duplicate(exc: BaseException) -> bool:
    return type(exc).__name__ == "IntegrityError" and "UNIQUE" in str(exc).upper()


def _psycopg_duplicate(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "23505"  # unique_violation


def _pymysql_duplicate(exc: BaseException) -> bool:
    return type(exc).__name__ == "IntegrityError" and bool(exc.args) and exc.args[0] == 1062  # ER_DUP_ENTRY


def _text_ms(moment: datetime) -> str:
    return moment.isoformat(" ", "milliseconds")  # sorts as it compares


def _datetime_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # DATETIME(3) / TIMESTAMP(3)


_MYSQL_DDL = (
    """CREATE TABLE IF NOT EXISTS {table} (
    xid VARCHAR(128) NOT NULL, branch_id BIGINT NOT NULL, action_name VARCHAR(64) NOT NULL,
    status TINYINT NOT NULL COMMENT 'tried:1; committed:2; rollbacked:3; suspended:4',
    gmt_create DATETIME(3) NOT NULL, gmt_modified DATETIME(3) NOT NULL,
    PRIMARY KEY (xid, branch_id), KEY idx_gmt_modified (gmt_modified), KEY idx_status (status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4""",
)
# PostgreSQL and SQLite name indexes per schema, not per table: prefixed with the table, so that a
# TC's lock_table (idx_status) or a second fence table in the same schema cannot clash.
_POSTGRESQL_DDL = (
    """CREATE TABLE IF NOT EXISTS {table} (
    xid VARCHAR(128) NOT NULL, branch_id BIGINT NOT NULL, action_name VARCHAR(64) NOT NULL,
    status SMALLINT NOT NULL, gmt_create TIMESTAMP(3) NOT NULL, gmt_modified TIMESTAMP(3) NOT NULL,
    CONSTRAINT pk_{base} PRIMARY KEY (xid, branch_id))""",
    "CREATE INDEX IF NOT EXISTS idx_{base}_gmt_modified ON {table} (gmt_modified)",
    "CREATE INDEX IF NOT EXISTS idx_{base}_status ON {table} (status)",
)
_SQLITE_DDL = (
    """CREATE TABLE IF NOT EXISTS {table} (
    xid VARCHAR(128) NOT NULL, branch_id BIGINT NOT NULL, action_name VARCHAR(64) NOT NULL,
    status SMALLINT NOT NULL, gmt_create TEXT NOT NULL, gmt_modified TEXT NOT NULL,
    PRIMARY KEY (xid, branch_id))""",
    "CREATE INDEX IF NOT EXISTS {schema}idx_{base}_gmt_modified ON {base} (gmt_modified)",
    "CREATE INDEX IF NOT EXISTS {schema}idx_{base}_status ON {base} (status)",
)
_FINISHED_SQL = ", ".join(str(int(s)) for s in _FINISHED)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between databases; everything else is one SQL text with ``{p}`` placeholders."""

    name: str
    placeholder: str
    for_update: str  # appended to the row read
    ddl: tuple[str, ...]
    cleanup: str  # deletes one batch of finished rows older than a cutoff
    start: Callable[[Any], None]  # puts a fresh connection in a transaction of its own
    timestamp: Callable[[datetime], Any]
    is_duplicate: Callable[[BaseException], bool]


DIALECTS: dict[str, Dialect] = {
    "sqlite": Dialect(
        "sqlite", "?", "", _SQLITE_DDL,
        "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE gmt_modified < {p} "
        "AND status IN ({finished}) LIMIT {p})",
        _sqlite_start, _text_ms, _sqlite_duplicate,
    ),
    "postgresql": Dialect(
        "postgresql", "%s", " FOR UPDATE", _POSTGRESQL_DDL,
        "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE gmt_modified < {p} "
        "AND status IN ({finished}) LIMIT {p})",
        _psycopg_start, _datetime_ms, _psycopg_duplicate,
    ),
    "mysql": Dialect(
        "mysql", "%s", " FOR UPDATE", _MYSQL_DDL,
        "DELETE FROM {table} WHERE gmt_modified < {p} AND status IN ({finished}) LIMIT {p}",
        _pymysql_start, _datetime_ms, _pymysql_duplicate,
    ),
}  # fmt: skip
DIALECTS["mariadb"] = DIALECTS["mysql"]

_TABLE_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class _Sql:
    insert: str
    select: str
    update: str
    cleanup: str
    ddl: tuple[str, ...]

    @classmethod
    def of(cls, dialect: Dialect, table: str) -> _Sql:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"fence table name {table!r} must be an identifier, optionally schema-qualified")
        schema, _, base = table.rpartition(".")
        names = {"table": table, "base": base, "schema": f"{schema}." if schema else "", "finished": _FINISHED_SQL}
        p = dialect.placeholder
        return cls(
            insert=f"INSERT INTO {table} (xid, branch_id, action_name, status, gmt_create, gmt_modified) "
                   f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
            select=f"SELECT status FROM {table} WHERE xid = {p} AND branch_id = {p}{dialect.for_update}",
            update=f"UPDATE {table} SET status = {p}, gmt_modified = {p} "
                   f"WHERE xid = {p} AND branch_id = {p} AND status = {p}",
            cleanup=dialect.cleanup.format(p=p, **names),
            ddl=tuple(statement.format(**names) for statement in dialect.ddl),
        )  # fmt: skip


# --- what phase two does for each row status: one table per phase ---------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    run: FenceStatus | None = None  # TRIED -> this status, then the business confirm/cancel
    insert: FenceStatus | None = None  # no row: record this status and succeed without the business step
    done: bool = False  # finished before: succeed again (idempotent)
    error: type[FenceError] | None = None
    why: str = ""


_COMMIT: dict[FenceStatus | None, _Step] = {
    None: _Step(error=FenceRowMissingError, why="its try left no fence row here (yet)"),
    FenceStatus.TRIED: _Step(run=FenceStatus.COMMITTED),
    FenceStatus.COMMITTED: _Step(done=True),
    FenceStatus.ROLLBACKED: _Step(error=FenceStateError, why="it was cancelled already"),
    FenceStatus.SUSPENDED: _Step(error=FenceStateError, why="it was cancelled before its try (suspended)"),
}
_ROLLBACK: dict[FenceStatus | None, _Step] = {
    None: _Step(insert=FenceStatus.SUSPENDED),  # empty rollback
    FenceStatus.TRIED: _Step(run=FenceStatus.ROLLBACKED),
    FenceStatus.COMMITTED: _Step(error=FenceStateError, why="it was confirmed already"),
    FenceStatus.ROLLBACKED: _Step(done=True),
    FenceStatus.SUSPENDED: _Step(done=True),
}
_SUCCESS = (None, True, BranchStatus.PhaseTwo_Committed, BranchStatus.PhaseTwo_Rollbacked)


class _UndoError(Exception):
    """Rolls the local transaction back while handing the business result out."""

    def __init__(self, result: PhaseTwoResult) -> None:
        self.result = result


@dataclass(frozen=True, slots=True)
class _Branch:
    xid: str
    branch_id: int
    action_name: str

    def describe(self, phase: str) -> str:
        return f"{phase} of {self.action_name} (xid {self.xid}, branch {self.branch_id})"


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- the fence ------------------------------------------------------------------------------------


class Fence:
    """The fence of one database. ``connect()`` returns a new DB-API connection; ``release(conn)``
    gives it back (default: ``conn.close()``; pass the pool's put-back for a pool)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        dialect: str | Dialect,
        *,
        table: str = "tcc_fence_log",
        release: Callable[[Any], None] | None = None,
        clean_after: float = 86_400.0,
        clean_period: float = 86_400.0,
        clean_batch: int = 1000,
        first_clean_delay: float | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if isinstance(dialect, str):
            if dialect.lower() not in DIALECTS:
                raise ValueError(f"unknown fence dialect {dialect!r}; known: {', '.join(sorted(DIALECTS))}")
            dialect = DIALECTS[dialect.lower()]
        if clean_after <= 0 or clean_batch < 1:
            raise ValueError("clean_after must be > 0 seconds and clean_batch >= 1")
        self.dialect = dialect
        self.table = table
        self.sql = _Sql.of(dialect, table)
        self.connect = connect
        self.release: Callable[[Any], None] = release if release is not None else _close
        self.clean_after, self.clean_period, self.clean_batch = clean_after, clean_period, clean_batch
        # Seata starts the first clean-up 0-59 s after start-up, so a fleet restarted together spreads out.
        self.first_clean_delay = random.uniform(0, 59) if first_clean_delay is None else first_clean_delay
        self.clock = clock
        self._cleaner: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Fence({self.dialect.name}, table={self.table!r})"

    # --- schema and inspection -------------------------------------------------------------------------

    def create_table(self) -> None:
        """Creates the table and its indexes unless they exist (Seata's DDL)."""
        with self.transaction() as conn:
            for statement in self.sql.ddl:
                _execute(conn, statement, ())

    def status(self, xid: str, branch_id: int) -> FenceStatus | None:
        """The branch's row status, or None (for operators and tests)."""
        with self.transaction() as conn:
            row = _execute(conn, self.sql.select, (xid, branch_id), fetch=True)
        return None if row is None else FenceStatus(row[0])

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection in a fresh local transaction: committed at the end, rolled back on error."""
        conn = self.connect()
        try:
            self.dialect.start(conn)
            yield conn
            conn.commit()
        except BaseException:
            _quietly(conn.rollback)
            raise
        finally:
            self.release(conn)

    # --- the three phases ------------------------------------------------------------------------------

    def prepare(self, xid: str, branch_id: int, action_name: str, body: Callable[[Any], T]) -> T:
        """Records the try and runs ``body(connection)`` in the same local transaction."""
        self._ensure_cleaner()
        with self.transaction() as conn:
            try:
                self._insert(conn, _Branch(xid, branch_id, action_name), FenceStatus.TRIED)
            except Exception as exc:
                if not self.dialect.is_duplicate(exc):
                    raise
                log.warning("xid=%s branch=%d fence: try of %s refused, its cancel came first (suspension)",
                            xid, branch_id, action_name, extra={"xid": xid})  # fmt: skip
                raise TryRefusedError(
                    f"the try of {action_name} (xid {xid}, branch {branch_id}) arrived after its rollback "
                    "and is refused: the global transaction is being rolled back",
                    xid=xid, branch_id=branch_id,
                ) from None  # fmt: skip
            return body(conn)

    def commit(
        self, xid: str, branch_id: int, action_name: str, body: Callable[[Any], PhaseTwoResult]
    ) -> PhaseTwoResult:
        """Runs the confirm ``body(connection)`` exactly once; True once the branch is confirmed.
        A body result other than success rolls the local transaction back and is returned."""
        return self._phase_two(_COMMIT, "confirm", _Branch(xid, branch_id, action_name), body)

    def rollback(
        self, xid: str, branch_id: int, action_name: str, body: Callable[[Any], PhaseTwoResult]
    ) -> PhaseTwoResult:
        """Runs the cancel ``body(connection)`` at most once (never without a try); True once done."""
        return self._phase_two(_ROLLBACK, "cancel", _Branch(xid, branch_id, action_name), body)

    def _phase_two(self, steps: dict[FenceStatus | None, _Step], phase: str, branch: _Branch,
                   body: Callable[[Any], PhaseTwoResult]) -> PhaseTwoResult:  # fmt: skip
        self._ensure_cleaner()
        xid, branch_id = branch.xid, branch.branch_id
        try:
            with self.transaction() as conn:
                row = _execute(conn, self.sql.select, (xid, branch_id), fetch=True)
                found = None if row is None else FenceStatus(row[0])
                step = steps[found]
                if step.error is not None:
                    raise step.error(f"{branch.describe(phase)} cannot run: {step.why}", xid=xid, branch_id=branch_id)
                if step.done:
                    log.info("xid=%s branch=%d fence: %s again, already done (%s)", xid, branch_id, phase,
                             found.name if found else "-", extra={"xid": xid})  # fmt: skip
                    return True
                if step.insert is not None:
                    self._record_empty(conn, branch, step.insert, phase)
                    return True
                assert step.run is not None
                self._move(conn, branch, step.run, phase)
                result = body(conn)
                if result not in _SUCCESS:
                    raise _UndoError(result)
                return True
        except _UndoError as undo:
            return undo.result

    def _record_empty(self, conn: Any, branch: _Branch, status: FenceStatus, phase: str) -> None:
        try:
            self._insert(conn, branch, status)
        except Exception as exc:
            if not self.dialect.is_duplicate(exc):
                raise
            # The try inserted its row meanwhile: next time the row is there to act on.
            raise FenceRaceError(f"{branch.describe(phase)}: its try is running right now", xid=branch.xid,
                                 branch_id=branch.branch_id) from None  # fmt: skip
        log.info("xid=%s branch=%d fence: %s before any try (empty rollback); a late try will be refused",
                 branch.xid, branch.branch_id, phase, extra={"xid": branch.xid})  # fmt: skip

    def _insert(self, conn: Any, branch: _Branch, status: FenceStatus) -> None:
        now = self.dialect.timestamp(self.clock())
        _execute(conn, self.sql.insert, (branch.xid, branch.branch_id, branch.action_name, int(status), now, now))

    def _move(self, conn: Any, branch: _Branch, status: FenceStatus, phase: str) -> None:
        now = self.dialect.timestamp(self.clock())
        params = (int(status), now, branch.xid, branch.branch_id, int(FenceStatus.TRIED))
        if _execute(conn, self.sql.update, params) != 1:  # the row is locked: only a database without row locks
            raise FenceRaceError(f"{branch.describe(phase)}: the fence row changed meanwhile", xid=branch.xid,
                                 branch_id=branch.branch_id)  # fmt: skip

    # --- clean-up --------------------------------------------------------------------------------------

    def clean(self, older_than: float | None = None) -> int:
        """Deletes the rows of finished branches last changed more than ``older_than`` seconds ago
        (default ``clean_after``), in batches of ``clean_batch``, one transaction each; returns
        how many went."""
        cutoff = self.dialect.timestamp(self.clock() - timedelta(seconds=self.clean_after if older_than is None
                                                                 else older_than))  # fmt: skip
        total = 0
        while True:
            with self.transaction() as conn:
                deleted: int = _execute(conn, self.sql.cleanup, (cutoff, self.clean_batch))
            total += max(deleted, 0)
            if deleted < self.clean_batch:
                return total

    def start_cleaner(self) -> None:
        """Starts the background clean-up (done by the first try, confirm or cancel anyway)."""
        with self._lock:
            if self.clean_period <= 0 or self._cleaner is not None or self._stop.is_set():
                return
            self._cleaner = threading.Thread(target=self._clean_loop, name=f"pyseata-fence-clean-{self.table}",
                                             daemon=True)  # fmt: skip
            self._cleaner.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stops the cleaner (for good)."""
        self._stop.set()
        cleaner = self._cleaner
        if cleaner is not None and cleaner is not threading.current_thread():
            cleaner.join(timeout)

    def _ensure_cleaner(self) -> None:
        if self._cleaner is None and self.clean_period > 0:
            self.start_cleaner()

    def _clean_loop(self) -> None:
        delay = self.first_clean_delay
        while not self._stop.wait(delay):
            try:
                deleted = self.clean()
            except Exception:
                log.exception("fence clean-up of %s failed; next try in %g s", self.table, self.clean_period)
            else:
                log.log(logging.INFO if deleted else logging.DEBUG, "fence clean-up: %d old row(s) of %s deleted",
                        deleted, self.table)  # fmt: skip
            delay = self.clean_period


def _execute(conn: Any, sql: str, params: tuple[Any, ...], *, fetch: bool = False) -> Any:
    """Runs one statement; returns the first row (``fetch``) or the row count."""
    cursor = conn.cursor()
    try:
        if params:
            cursor.execute(sql, params)
        else:  # no parameters: drivers that format with % must not touch the text
            cursor.execute(sql)
        return cursor.fetchone() if fetch else cursor.rowcount
    finally:
        cursor.close()


def _close(conn: Any) -> None:
    conn.close()


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:  # the connection may be gone; the original error matters more
        log.debug("ignored during fence clean-up of a failed transaction: %r", exc)
