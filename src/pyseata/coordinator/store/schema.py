"""Seata's session tables: names, columns and indexes once, then the DDL of each SQL dialect.

Operators keep their tooling when the tables, columns and indexes carry Seata's names
(``script/server/db/*.sql``; BEHAVIOUR.md 2.2). The column types are each dialect's own. A store
for another SQL dialect adds its DDL here, next to SQLite's, and shares everything else.

pyseata stamps ``gmt_create``/``gmt_modified`` in epoch microseconds (see ``model.py``); in SQLite
they are INTEGER columns.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

from pyseata.coordinator.store.base import FREE_TASK_LOCK_VALUE, SEEDED_TASK_LOCKS, StoreSchemaError

__all__ = [
    "BRANCH_TABLE",
    "DISTRIBUTED_LOCK",
    "GLOBAL_TABLE",
    "LOCK_TABLE",
    "SCHEMA_VERSION",
    "SQLITE_DDL",
    "TABLES",
    "Table",
    "ensure_sqlite_schema",
]

#: Bumped when a change of the tables needs a migration; SQLite keeps it in PRAGMA user_version.
SCHEMA_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]  # in Seata's order; the model classes take them in this order
    indexes: tuple[tuple[str, tuple[str, ...]], ...]  # (index name, columns)

    @property
    def column_list(self) -> str:
        return ", ".join(self.columns)


GLOBAL_TABLE: Final = Table(
    "global_table",
    (
        "xid", "transaction_id", "status", "application_id", "transaction_service_group",
        "transaction_name", "timeout", "begin_time", "application_data", "gmt_create", "gmt_modified",
    ),
    (
        ("idx_global_table_status_gmt_modified", ("status", "gmt_modified")),
        ("idx_global_table_transaction_id", ("transaction_id",)),
    ),
)

BRANCH_TABLE: Final = Table(
    "branch_table",
    (
        "branch_id", "xid", "transaction_id", "resource_group_id", "resource_id", "branch_type",
        "status", "client_id", "application_data", "gmt_create", "gmt_modified",
    ),
    (("idx_branch_table_xid", ("xid",)),),
)

LOCK_TABLE: Final = Table(
    "lock_table",
    (
        "row_key", "xid", "transaction_id", "branch_id", "resource_id", "table_name", "pk", "status",
        "gmt_create", "gmt_modified",
    ),
    (
        ("idx_lock_table_status", ("status",)),
        ("idx_lock_table_branch_id", ("branch_id",)),
        ("idx_lock_table_xid", ("xid",)),
    ),
)

DISTRIBUTED_LOCK: Final = Table("distributed_lock", ("lock_key", "lock_value", "expire"), ())

TABLES: Final = (GLOBAL_TABLE, BRANCH_TABLE, LOCK_TABLE, DISTRIBUTED_LOCK)


# --- SQLite -----------------------------------------------------------------------------------

# Text-keyed tables are WITHOUT ROWID: one b-tree per table instead of a rowid tree plus a
# primary-key index, which halves the work of the hottest inserts and deletes.
# branch_id INTEGER PRIMARY KEY is SQLite's rowid itself, the cheapest key there is.
SQLITE_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS global_table (
        xid                       TEXT    NOT NULL PRIMARY KEY,
        transaction_id            INTEGER,
        status                    INTEGER NOT NULL,
        application_id            TEXT,
        transaction_service_group TEXT,
        transaction_name          TEXT,
        timeout                   INTEGER,
        begin_time                INTEGER,
        application_data          TEXT,
        gmt_create                INTEGER,
        gmt_modified              INTEGER
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS branch_table (
        branch_id         INTEGER NOT NULL PRIMARY KEY,
        xid               TEXT    NOT NULL,
        transaction_id    INTEGER,
        resource_group_id TEXT,
        resource_id       TEXT,
        branch_type       TEXT,
        status            INTEGER,
        client_id         TEXT,
        application_data  TEXT,
        gmt_create        INTEGER,
        gmt_modified      INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS lock_table (
        row_key        TEXT    NOT NULL PRIMARY KEY,
        xid            TEXT,
        transaction_id INTEGER,
        branch_id      INTEGER NOT NULL,
        resource_id    TEXT,
        table_name     TEXT,
        pk             TEXT,
        status         INTEGER NOT NULL DEFAULT 0,
        gmt_create     INTEGER,
        gmt_modified   INTEGER
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS distributed_lock (
        lock_key   TEXT    NOT NULL PRIMARY KEY,
        lock_value TEXT    NOT NULL,
        expire     INTEGER NOT NULL
    ) WITHOUT ROWID""",
    *(
        f"CREATE INDEX IF NOT EXISTS {name} ON {table.name} ({', '.join(columns)})"
        for table in TABLES
        for name, columns in table.indexes
    ),
)

_SEED_TASK_LOCK = "INSERT OR IGNORE INTO distributed_lock (lock_key, lock_value, expire) VALUES (?, ?, 0)"


def ensure_sqlite_schema(conn: sqlite3.Connection, where: str) -> None:
    """Check the tables that exist, then create what is missing and seed ``distributed_lock``.

    Nothing is written when a check fails, so pointing the store at the wrong file is harmless.
    ``conn`` must be in autocommit mode (``isolation_level=None``); ``where`` names the file in
    messages.
    """
    version = conn.execute("PRAGMA user_version").fetchall()[0][0]
    if version > SCHEMA_VERSION:
        raise StoreSchemaError(
            f"{where} holds pyseata store schema version {version}, newer than the {SCHEMA_VERSION} "
            "this pyseata understands: upgrade pyseata, or point the store at another file"
        )
    for table in TABLES:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})").fetchall()}
        missing = [c for c in table.columns if c not in present]
        if present and missing:
            raise StoreSchemaError(
                f"{where}: table {table.name} lacks column(s) {', '.join(missing)}, so it is not a "
                "Seata/pyseata session table; rename or drop it, or point the store at another file"
            )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SQLITE_DDL:
            conn.execute(statement)
        conn.executemany(_SEED_TASK_LOCK, [(key, FREE_TASK_LOCK_VALUE) for key in SEEDED_TASK_LOCKS])
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
