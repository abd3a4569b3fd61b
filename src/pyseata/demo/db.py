"""The shop's databases: one URL names one service's database, and gives DB-API connections to it.

A service's URL (what ``python examples/shop/stock.py --db URL`` takes)::

    sqlite:///var/shop/stock.db                                   a file (created when missing)
    postgresql://postgres@127.0.0.1:5432/test?schema=shop_stock    one schema in a database
    mysql://root:secret@127.0.0.1:3306/shop_stock                  one database (MariaDB too:
                                                                  mariadb://...)

The demo is given one URL for all three services (``--db``) and derives each service's own from it
(:func:`service_url`): a file per service in the run's folder, or a schema / database per service
named ``<prefix><service>`` on the server, so that each service really has a database of its own.

Only DB-API is used (sqlite3, psycopg 3, PyMySQL): what the TCC fence and pyseata's AT proxy take.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["Database", "DatabaseUnreachableError", "Kind", "Pool", "execute", "query", "redact", "service_url"]

Kind: TypeAlias = Literal["sqlite", "postgresql", "mysql"]
Params: TypeAlias = Sequence[Any]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")  # schema / database names we create and drop
_SCHEMES: dict[str, Kind] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
CONNECT_TIMEOUT = 5  # seconds: an unreachable server must fail fast, with a message, not hang the demo


class DatabaseUnreachableError(Exception):
    """A database server did not accept our connection; the message names it (without password)."""


def execute(conn: Any, sql: str, params: Params = ()) -> int:
    """Runs one statement on a DB-API connection; returns the row count. Cursors are closed at once
    (sqlite3's are not context managers, PyMySQL's and psycopg's are: this works for all three)."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, tuple(params))
        return int(cursor.rowcount)
    finally:
        cursor.close()


def query(conn: Any, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    cursor = conn.cursor()
    try:
        cursor.execute(sql, tuple(params))
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


@dataclass(frozen=True, slots=True)
class Database:
    """One service's database, from its URL (see the module doc)."""

    url: str
    kind: Kind
    path: str = ""  # sqlite: the file
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    name: str = ""  # postgresql: the database; mysql: the database the service uses
    schema: str = ""  # postgresql: the service's schema

    @classmethod
    def from_url(cls, url: str) -> Database:
        parts = urlsplit(url)
        kind = _SCHEMES.get(parts.scheme.lower())
        if kind is None:
            raise ValueError(f"unsupported database URL {redact(url)!r}: use sqlite:///file, "
                             "postgresql://user@host:port/db?schema=name or mysql://user@host:port/db")  # fmt: skip
        if kind == "sqlite":
            path = unquote(parts.path)
            if not path or path == "/":
                raise ValueError(f"{url!r} names no file: write sqlite:///relative.db or sqlite:////absolute.db")
            # sqlite:///x.db is relative, sqlite:////tmp/x.db absolute (SQLAlchemy's convention).
            return cls(url, kind, path=path[1:] if path.startswith("/") else path)
        query_args = dict(parse_qsl(parts.query))
        name = unquote(parts.path.lstrip("/"))
        schema = query_args.get("schema", "")
        for what, value in (("database", name), ("schema", schema)):
            if value and not _NAME.match(value):
                raise ValueError(f"{what} name {value!r} in {redact(url)!r} must be a plain identifier")
        return cls(
            url, kind, host=parts.hostname or "127.0.0.1",
            port=parts.port or (5432 if kind == "postgresql" else 3306),
            user=unquote(parts.username or ("postgres" if kind == "postgresql" else "root")),
            password=unquote(parts.password or ""), name=name, schema=schema,
        )  # fmt: skip

    # --- using it ---------------------------------------------------------------------------------

    @property
    def p(self) -> str:
        """The driver's placeholder (sqlite3: qmark; psycopg and PyMySQL: format)."""
        return "?" if self.kind == "sqlite" else "%s"

    @property
    def namespace(self) -> str:
        """What the service owns: its file, its schema or its database."""
        return self.path if self.kind == "sqlite" else (self.schema if self.kind == "postgresql" else self.name)

    def connect(self) -> Any:
        """A new DB-API connection, not in autocommit: the caller commits (the TCC fence does)."""
        try:
            if self.kind == "sqlite":
                # The services answer from a thread pool: a writer waits for another instead of failing.
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout = 30000")
                return conn
            if self.kind == "postgresql":
                import psycopg

                options = f"-c search_path={self.schema}" if self.schema else ""
                return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password or None,
                                       dbname=self.name or None, options=options,
                                       connect_timeout=CONNECT_TIMEOUT)  # fmt: skip
            import pymysql

            # READ COMMITTED: under REPEATABLE READ the fence's SELECT ... FOR UPDATE of a missing
            # row takes gap locks that deadlock concurrent tries (see pyseata.tcc.fence).
            return pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                   database=self.name or None, autocommit=False, connect_timeout=CONNECT_TIMEOUT,
                                   init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")  # fmt: skip
        except Exception as exc:
            if self.kind == "sqlite":
                raise DatabaseUnreachableError(f"cannot open SQLite database {self.path}: {exc}") from exc
            server = "PostgreSQL" if self.kind == "postgresql" else "MariaDB/MySQL"
            raise DatabaseUnreachableError(f"cannot connect to the {server} server at {self.where()}: "
                                           f"{_first_line(exc)}") from exc  # fmt: skip

    def pool(self, keep: int = 16) -> Pool:
        """Connections for reuse (see :class:`Pool`)."""
        return Pool(self, keep)

    def run(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """One statement in a transaction of its own; the rows it returned (none for DML/DDL)."""
        with closing(self.connect()) as conn:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, tuple(params))
                rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
            finally:
                cursor.close()
            conn.commit()
        return rows

    def scalar(self, sql: str, params: Params = ()) -> Any:
        rows = self.run(sql, params)
        return rows[0][0] if rows else None

    def has_table(self, table: str) -> bool:
        if self.kind == "sqlite":
            sql = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
            return bool(self.scalar(sql, (table,)))
        schema = (self.schema or "public") if self.kind == "postgresql" else self.name
        sql = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s"
        return bool(self.scalar(sql, (schema, table)))

    def where(self) -> str:
        """Where it is, for messages: never the password."""
        if self.kind == "sqlite":
            return self.path
        return f"{self.host}:{self.port} as {self.user}" + (f", database {self.name}" if self.name else "")

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {self.path}"
        if self.kind == "postgresql":
            return f"PostgreSQL {self.host}:{self.port}/{self.name or self.user} schema {self.schema or 'public'}"
        return f"MariaDB/MySQL {self.host}:{self.port} database {self.name}"

    # --- creating and dropping the namespace (the demo, as operator) -----------------------------

    def reset(self) -> None:
        """Drops and recreates the service's namespace: the demo starts from a known state."""
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(self.path + suffix).unlink(missing_ok=True)
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with closing(self.connect()) as conn:
                # WAL: the demo's checks read while the service writes, without blocking it.
                conn.execute("PRAGMA journal_mode = WAL")
            return
        self._admin(f"DROP {self._container()} IF EXISTS {self.namespace}{' CASCADE' * (self.kind == 'postgresql')}")
        self._admin(f"CREATE {self._container()} {self.namespace}")

    def drop(self) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(self.path + suffix).unlink(missing_ok=True)
            return
        self._admin(f"DROP {self._container()} IF EXISTS {self.namespace}{' CASCADE' * (self.kind == 'postgresql')}")

    def _container(self) -> str:
        if not _NAME.match(self.namespace):
            raise ValueError(f"{self.describe()}: name the service's own schema/database in the URL")
        return "SCHEMA" if self.kind == "postgresql" else "DATABASE"

    def _admin(self, statement: str) -> None:
        server = Database(self.url, self.kind, host=self.host, port=self.port, user=self.user,
                          password=self.password, name=self.name if self.kind == "postgresql" else "")  # fmt: skip
        with closing(server.connect()) as conn:
            execute(conn, statement)
            conn.commit()


class Pool:
    """A few idle connections kept for reuse: ``Fence(pool.connect, db.kind, release=pool.release)``.

    Opening a connection per step costs more than the step (PyMySQL: tens of milliseconds of
    handshake), and a purchase takes seven steps in three services. Connections are handed back
    rolled back or committed (the fence ends every transaction it starts); a closed or broken one
    is dropped instead of kept.
    """

    def __init__(self, db: Database, keep: int = 16) -> None:
        self.db = db
        self.keep = keep
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def connect(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.db.connect()

    def release(self, conn: Any) -> None:
        with self._lock:
            if len(self._idle) < self.keep and not _broken(conn):
                self._idle.append(conn)
                return
        conn.close()

    @contextmanager
    def transaction(self, wrap: Callable[[Any], Any] | None = None) -> Iterator[Any]:
        """A pooled connection for one local transaction: committed when the block ends, rolled
        back when it raises, then handed back. ``wrap`` turns it into another connection first:
        ``pool.transaction(data_source.wrap)`` gives pyseata's AT proxy, whose commit registers
        the AT branch when a global transaction is bound."""
        raw = self.connect()
        conn = wrap(raw) if wrap is not None else raw
        try:
            yield conn
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:  # the connection is gone: drop it; the original error tells more
                self._drop(raw)
            else:
                self.release(raw)
            raise
        self.release(raw)

    def _drop(self, raw: Any) -> None:
        try:
            raw.close()
        except Exception:  # already broken: nothing more to free
            return

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _broken(conn: Any) -> bool:
    if getattr(conn, "closed", False) or getattr(conn, "broken", False):  # psycopg
        return True
    opened = getattr(conn, "open", True)  # PyMySQL
    return not opened


def service_url(base: str, service: str, *, folder: Path, prefix: str) -> str:
    """The URL of ``service``'s own database, from the one URL the demo was given.

    ``sqlite`` (or any sqlite: URL): ``folder/<service>.db``; a PostgreSQL URL: the schema
    ``<prefix><service>`` in its database; a MySQL/MariaDB URL: the database ``<prefix><service>``.
    """
    scheme = urlsplit(base).scheme.lower() if "://" in base else base.lower()
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise ValueError(f"unsupported --db {redact(base)!r}: use sqlite, postgresql://user@host:port/db "
                         "or mysql://user@host:port")  # fmt: skip
    if kind == "sqlite":
        return f"sqlite:///{(folder / f'{service}.db').resolve()}"
    namespace = f"{prefix}{service}"
    if not _NAME.match(namespace):
        raise ValueError(f"--db-prefix {prefix!r} gives {namespace!r}, which is not a plain identifier")
    parts = urlsplit(base)
    if kind == "postgresql":
        query_args = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", namespace)]
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query_args), ""))
    return urlunsplit((parts.scheme, parts.netloc, f"/{namespace}", "", ""))


def redact(url: str) -> str:
    """``url`` with its password replaced, for messages and the summary."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
