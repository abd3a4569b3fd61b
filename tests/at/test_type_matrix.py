"""Every common column type, on each database: inserted, read back through the DB-API driver,
written to rollback_info, stored in the undo_log table, read back and compared exactly, NULLs too.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pyseata.at.images import TableRecords, diff_records, same_value
from pyseata.at.meta import read_table_meta
from pyseata.at.undo import BranchUndoLog, SqlType, SQLUndoLog, UndoConfig, UndoLogTable, pack, unpack

from .conftest import Db

# (column, SQL type, how the value is written in the INSERT, the value)
Column = tuple[str, str, str, Any]

SQLITE: list[Column] = [
    ("c_integer", "INTEGER", "?", -(2**63)),
    ("c_bigint", "BIGINT", "?", 2**63 - 1),
    ("c_real", "REAL", "?", 0.1),
    ("c_double", "DOUBLE", "?", -1.7976931348623157e308),
    ("c_numeric", "NUMERIC(10,2)", "?", 12.5),
    ("c_boolean", "BOOLEAN", "?", 1),
    ("c_varchar", "VARCHAR(40)", "?", "héllo, wörld ✓ 'quoted'"),
    ("c_text", "TEXT", "?", "line1\nline2\t\x00end"),
    ("c_blob", "BLOB", "?", bytes(range(256))),
    ("c_date", "DATE", "?", "2024-02-29"),
    ("c_datetime", "DATETIME", "?", "2024-02-29 23:59:59.999999"),
    ("c_json", "JSON", "?", '{"a": [1, 2.5, null]}'),
]

POSTGRES: list[Column] = [
    ("c_smallint", "SMALLINT", "%s", -32768),
    ("c_integer", "INTEGER", "%s", 2**31 - 1),
    ("c_bigint", "BIGINT", "%s", -(2**63)),
    ("c_numeric", "NUMERIC(30,10)", "%s", Decimal("-12345678901234567890.0123456789")),
    ("c_numeric_free", "NUMERIC", "%s", Decimal("1.500")),
    ("c_numeric_nan", "NUMERIC", "%s", Decimal("NaN")),
    ("c_real", "REAL", "%s", 0.1),
    ("c_double", "DOUBLE PRECISION", "%s", 1e-310),
    ("c_double_nan", "DOUBLE PRECISION", "%s", float("nan")),
    ("c_double_inf", "DOUBLE PRECISION", "%s", float("-inf")),
    ("c_double_negzero", "DOUBLE PRECISION", "%s", -0.0),
    ("c_boolean", "BOOLEAN", "%s", True),
    ("c_char", "CHAR(5)", "%s", "ab   "),
    ("c_varchar", "VARCHAR(40)", "%s", "héllo ✓ 100% sure"),
    ("c_text", "TEXT", "%s", "line1\nline2 \\ end"),
    ("c_bytea", "BYTEA", "%s", bytes(range(256))),
    ("c_date", "DATE", "%s", date(1, 1, 1)),
    ("c_time", "TIME(6)", "%s", time(23, 59, 59, 999999)),
    ("c_timetz", "TIMETZ", "%s", time(12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))),
    ("c_timestamp", "TIMESTAMP(6)", "%s", datetime(2024, 3, 31, 2, 30, 0, 1)),
    ("c_timestamptz", "TIMESTAMPTZ", "%s", datetime(2024, 10, 27, 1, 30, 0, 654321, tzinfo=ZoneInfo("UTC"))),
    ("c_interval", "INTERVAL", "%s", timedelta(days=-3, seconds=5, microseconds=7)),
    ("c_json", "JSON", "%s::json", {"a": [1, 2.5, None], "b": {"c": "d"}}),
    ("c_jsonb", "JSONB", "%s::jsonb", [1, "two", {"three": 3.0}]),
    ("c_uuid", "UUID", "%s", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("c_int_array", "INTEGER[]", "%s", [1, None, 3]),
    ("c_text_array", "TEXT[]", "%s", ["a", "b,c", ""]),
    ("c_inet", "INET", "%s", ipaddress.ip_interface("192.168.0.1/24")),
    ("c_cidr", "CIDR", "%s", ipaddress.ip_network("10.0.0.0/8")),
    ("c_xml", "XML", "%s", "<a>b</a>"),
]

MARIADB: list[Column] = [
    ("c_tinyint", "TINYINT", "%s", -128),
    ("c_bool", "BOOLEAN", "%s", 1),
    ("c_smallint", "SMALLINT", "%s", 32767),
    ("c_mediumint", "MEDIUMINT", "%s", -8388608),
    ("c_int", "INT", "%s", 2**31 - 1),
    ("c_bigint", "BIGINT", "%s", -(2**63)),
    ("c_ubigint", "BIGINT UNSIGNED", "%s", 2**64 - 1),
    ("c_decimal", "DECIMAL(30,10)", "%s", Decimal("-12345678901234567890.0123456789")),
    ("c_float", "FLOAT", "%s", 0.5),
    ("c_double", "DOUBLE", "%s", 0.1),
    ("c_bit", "BIT(12)", "%s", b"\x0f\xff"),
    ("c_char", "CHAR(5)", "%s", "ab"),
    ("c_varchar", "VARCHAR(40)", "%s", "héllo ✓ 100% sure"),
    ("c_text", "TEXT", "%s", "line1\nline2 \\ end"),
    ("c_binary", "BINARY(4)", "%s", b"\x00\x01\x02\x03"),
    ("c_varbinary", "VARBINARY(300)", "%s", bytes(range(256))),
    ("c_blob", "LONGBLOB", "%s", b"\xff" * 1000),
    ("c_date", "DATE", "%s", date(1000, 1, 1)),
    ("c_time", "TIME(6)", "%s", timedelta(hours=-838, minutes=-59, seconds=-59)),
    ("c_time2", "TIME(6)", "%s", timedelta(hours=1, microseconds=5)),
    ("c_datetime", "DATETIME(6)", "%s", datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ("c_timestamp", "TIMESTAMP(6) NULL", "%s", datetime(2038, 1, 19, 3, 14, 7, 1)),
    ("c_year", "YEAR", "%s", 2155),
    ("c_json", "JSON", "%s", '{"a": [1, 2.5, null]}'),
    ("c_enum", "ENUM('x','y')", "%s", "y"),
    ("c_set", "SET('a','b','c')", "%s", "a,c"),
    ("c_uuid", "UUID", "%s", "12345678-1234-5678-1234-567812345678"),
]

MATRIX = {"sqlite": SQLITE, "postgres": POSTGRES, "mariadb": MARIADB}


def _create_and_fill(db: Db) -> list[Column]:
    columns = MATRIX[db.kind]
    key = "id INTEGER PRIMARY KEY" if db.kind == "sqlite" else "id INT PRIMARY KEY"
    db.run(f"CREATE TABLE matrix ({key}, {', '.join(f'{n} {t}' for n, t, _m, _v in columns)})")
    if db.kind == "postgres":
        db.run("SET TIME ZONE 'Asia/Kathmandu'")  # +05:45: timestamptz comes back with an odd offset
    names = ", ".join(n for n, *_ in columns)
    marks = ", ".join(m for _n, _t, m, _v in columns)
    values = []
    for name, _t, _m, value in columns:
        if db.kind == "postgres" and name in ("c_json", "c_jsonb"):
            value = json.dumps(value)
        values.append(value)
    p = db.p
    db.run(f"INSERT INTO matrix (id, {names}) VALUES ({p}, {marks})", [1, *values])
    db.run(f"INSERT INTO matrix (id) VALUES ({p})", [2])  # every column NULL
    return columns


def _identical(a: Any, b: Any) -> bool:
    if not same_value(a, b):
        return False
    if isinstance(a, datetime | time):
        return bool(a.utcoffset() == b.utcoffset())
    return True


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "zip"])
def test_every_type_survives_the_undo_log_exactly(db: Db, compressed: bool) -> None:
    columns = _create_and_fill(db)
    meta = read_table_meta(db.conn, db.dialect, "matrix")
    names, rows = db.query("SELECT * FROM matrix ORDER BY id")
    image = TableRecords.from_rows(meta, names, rows)
    read_back = {f.name: f.value for f in image.rows[0].fields}
    for name, _type, _mark, value in columns:  # the driver gives back what was written (timestamptz: the instant)
        assert same_value(read_back[name], value), (name, read_back[name])
    if db.kind == "postgres":
        assert read_back["c_timestamptz"].utcoffset() == timedelta(hours=5, minutes=45)

    undo = UndoLogTable.of(db.dialect, style=db.style)
    for statement in undo.ddl():
        db.run(statement)
    log = BranchUndoLog("xid-1", 7, (SQLUndoLog(SqlType.UPDATE, meta.lock_name, image, image),))
    config = UndoConfig(threshold=0 if compressed else "64k", zone="America/New_York")
    context, payload = pack(log, config)
    assert ("compressorType=ZIP" in context) is compressed
    db.run(undo.insert_sql(), undo.row_params("xid-1", 7, context, payload))
    (stored,) = db.run(undo.select_sql(), [7, "xid-1"])
    back = unpack(stored[2], bytes(stored[3]), UndoConfig(java_zone="Asia/Tokyo"))

    restored = back.sql_undo_logs[0].before_image
    assert restored is not None and restored.primary_key == ("id",)
    for mine, theirs in zip(image.rows, restored.rows, strict=True):
        for a, b in zip(mine.fields, theirs.fields, strict=True):
            assert (a.name, a.type, a.key_type) == (b.name, b.type, b.key_type)
            assert _identical(a.value, b.value), (a.name, a.value, b.value)
    assert all(f.value is None for f in restored.rows[1].fields if f.name != "id")
    # What the rollback check does: the rows as they are now, against the logged image.
    names, rows = db.query("SELECT * FROM matrix ORDER BY id")
    assert diff_records(restored, TableRecords.from_rows(meta, names, rows)) == ()
