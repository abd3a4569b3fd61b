"""rollback_info in Seata's Jackson shape, exact value round trips, compression, and the undo_log table."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyseata.at.dialects import JavaType
from pyseata.at.errors import UndoLogFormatError, UndoValueError
from pyseata.at.images import Field, KeyType, Row, TableRecords, diff_records, same_value
from pyseata.at.undo import (
    BranchUndoLog,
    SqlType,
    SQLUndoLog,
    UndoConfig,
    UndoLogTable,
    decode_context,
    decode_undo_log,
    decode_value,
    encode_context,
    encode_undo_log,
    encode_value,
    pack,
    parse_size,
    unpack,
)
from pyseata.protocol.compress import is_available
from pyseata.protocol.enums import CompressorType

from .conftest import Db

XID = "10.0.0.1:8091:2612341069705662465"


def _row(**values: Any) -> Row:
    types = {int: JavaType.BIGINT, str: JavaType.VARCHAR, Decimal: JavaType.DECIMAL, datetime: JavaType.TIMESTAMP}
    return Row(tuple(
        Field(name, types.get(type(v), JavaType.OTHER), v, KeyType.PRIMARY_KEY if name == "id" else KeyType.NULL)
        for name, v in values.items()
    ))


def _update_log() -> BranchUndoLog:
    before = TableRecords("t_account", ("id",), (_row(id=1, money=Decimal("100.00"), note="a"),))
    after = TableRecords("t_account", ("id",), (_row(id=1, money=Decimal("90.00"), note="a"),))
    inserted = TableRecords("t_order", ("id",), (_row(id=7, at=datetime(2024, 1, 2, 3, 4, 5, 678901)),))
    return BranchUndoLog(XID, 2612341069705662466, (
        SQLUndoLog(SqlType.UPDATE, "t_account", before, after),
        SQLUndoLog(SqlType.INSERT, "t_order", TableRecords("t_order", ("id",)), inserted),
    ))


# --- the Jackson shape ------------------------------------------------------------------------------


def test_written_in_seatas_jackson_shape() -> None:
    doc = json.loads(encode_undo_log(_update_log()))
    assert doc["@class"] == "org.apache.seata.rm.datasource.undo.BranchUndoLog"
    assert (doc["xid"], doc["branchId"]) == (XID, 2612341069705662466)
    kind, items = doc["sqlUndoLogs"]
    assert kind == "java.util.ArrayList" and len(items) == 2
    update = items[0]
    assert update["@class"] == "org.apache.seata.rm.datasource.undo.SQLUndoLog"
    assert (update["sqlType"], update["tableName"]) == ("UPDATE", "t_account")
    image = update["beforeImage"]
    assert image["@class"] == "org.apache.seata.rm.datasource.sql.struct.TableRecords"
    row = image["rows"][1][0]
    assert row["@class"] == "org.apache.seata.rm.datasource.sql.struct.Row"
    fields = row["fields"][1]
    assert fields[0] == {"@class": "org.apache.seata.rm.datasource.sql.struct.Field", "name": "id",
                         "keyType": "PRIMARY_KEY", "type": JavaType.BIGINT, "value": ["java.lang.Long", 1]}
    assert fields[1]["value"] == ["java.math.BigDecimal", 100.0] and fields[2]["value"] == "a"
    empty = items[1]["beforeImage"]
    assert empty["@class"].endswith("TableRecords$EmptyTableRecords") and empty["rows"] == ["java.util.ArrayList", []]
    stamp = items[1]["afterImage"]["rows"][1][0]["fields"][1][1]["value"]
    assert stamp == ["java.sql.Timestamp", [1704164645678, 678901000]]  # UTC wall clock, nanos of the second


def test_decimal_digits_are_written_as_they_are() -> None:
    text = encode_undo_log(BranchUndoLog("x", 1, (SQLUndoLog(SqlType.DELETE, "t", TableRecords(
        "t", ("id",), (_row(id=1, money=Decimal("100.00"), big=Decimal("55555555555555555555.55555555555555555555")),)),
        None),)))
    assert b'["java.math.BigDecimal",100.00]' in text
    assert b'["java.math.BigDecimal",55555555555555555555.55555555555555555555]' in text
    assert b'"afterImage":null' in text


def test_round_trip_of_a_whole_branch_log() -> None:
    log = _update_log()
    back = decode_undo_log(encode_undo_log(log))
    assert (back.xid, back.branch_id) == (log.xid, log.branch_id)
    for ours, theirs in zip(log.sql_undo_logs, back.sql_undo_logs, strict=True):
        assert (ours.sql_type, ours.table_name) == (theirs.sql_type, theirs.table_name)
        for a, b in ((ours.before_image, theirs.before_image), (ours.after_image, theirs.after_image)):
            assert a is not None and b is not None
            assert (a.table_name, a.primary_key, len(a)) == (b.table_name, b.primary_key, len(b))
            assert diff_records(a, b) == ()
            assert [f.type for r in a.rows for f in r.fields] == [f.type for r in b.rows for f in r.fields]


# A log written by Seata 1.2's Java RM (MySQL, io.seata.* classes, keyType "PrimaryKey"), as printed
# in a public Seata tutorial; and a Seata 2.x one with the typed values Jackson writes.
JAVA_1_2 = (
    b'{"@class":"io.seata.rm.datasource.undo.BranchUndoLog","xid":"172.19.0.5:8091:2009254518",'
    b'"branchId":2009254519,"sqlUndoLogs":["java.util.ArrayList",[{"@class":"io.seata.rm.datasource.undo.SQLUndoLog",'
    b'"sqlType":"INSERT","tableName":"service_at","beforeImage":{"@class":'
    b'"io.seata.rm.datasource.sql.struct.TableRecords$EmptyTableRecords","tableName":"service_at","rows":'
    b'["java.util.ArrayList",[]]},"afterImage":{"@class":"io.seata.rm.datasource.sql.struct.TableRecords",'
    b'"tableName":"service_at","rows":["java.util.ArrayList",[{"@class":"io.seata.rm.datasource.sql.struct.Row",'
    b'"fields":["java.util.ArrayList",[{"@class":"io.seata.rm.datasource.sql.struct.Field","name":"id",'
    b'"keyType":"PrimaryKey","type":4,"value":4},{"@class":"io.seata.rm.datasource.sql.struct.Field","name":"NAME",'
    b'"keyType":"NULL","type":12,"value":"az2"}]]}]]}}]]}'
)
JAVA_2_X = json.dumps({
    "@class": "org.apache.seata.rm.datasource.undo.BranchUndoLog", "xid": XID, "branchId": 42,
    "sqlUndoLogs": ["java.util.ArrayList", [{
        "@class": "org.apache.seata.rm.datasource.undo.SQLUndoLog", "sqlType": "UPDATE", "tableName": "t",
        "beforeImage": {"@class": "org.apache.seata.rm.datasource.sql.struct.TableRecords", "tableName": "t",
                        "rows": ["java.util.ArrayList", [{
                            "@class": "org.apache.seata.rm.datasource.sql.struct.Row",
                            "fields": ["java.util.ArrayList", [
                                {"name": "id", "keyType": "PRIMARY_KEY", "type": -5, "value": ["java.lang.Long", 9]},
                                {"name": "ts", "keyType": "NULL", "type": 93,
                                 "value": ["java.sql.Timestamp", [1565405366926, 926554000]]},
                                {"name": "ms", "keyType": "NULL", "type": 93,
                                 "value": ["java.time.LocalDateTime", 1565405366926]},
                                {"name": "d", "keyType": "NULL", "type": 91, "value": ["java.sql.Date", 1621267200000]},
                                {"name": "tm", "keyType": "NULL", "type": 92, "value": ["java.sql.Time", "10:49:26"]},
                                {"name": "blob", "keyType": "NULL", "type": 2004,
                                 "value": ["javax.sql.rowset.serial.SerialBlob", "aGVsbG8="]},
                                {"name": "bin", "keyType": "NULL", "type": -2, "value": ["[B", "AAE="]},
                                {"name": "f", "keyType": "NULL", "type": 7, "value": ["java.lang.Float", 0.1]},
                                {"name": "dbl", "keyType": "NULL", "type": 8, "value": 999999.999999999},
                                {"name": "nan", "keyType": "NULL", "type": 8, "value": "NaN"},
                                {"name": "big", "keyType": "NULL", "type": -5,
                                 "value": ["java.math.BigInteger", 18446744073709551615]},
                                {"name": "flag", "keyType": "NULL", "type": -7, "value": True},
                                {"name": "doc", "keyType": "NULL", "type": 1111, "value": {
                                    "@class": "org.postgresql.util.PGobject", "type": "jsonb",
                                    "value": "{\"a\": [1, 2.5]}", "null": False}},
                                {"name": "u", "keyType": "NULL", "type": 1111,
                                 "value": ["java.util.UUID", "12345678-1234-5678-1234-567812345678"]},
                                {"name": "none", "keyType": "NULL", "type": 12, "value": None},
                            ]]}]]},
        "afterImage": None}]]}).encode()


def test_reads_a_log_written_by_seata_1_2() -> None:
    log = decode_undo_log(JAVA_1_2)
    assert (log.xid, log.branch_id) == ("172.19.0.5:8091:2009254518", 2009254519)
    (item,) = log.sql_undo_logs
    assert item.sql_type is SqlType.INSERT and item.before_image is not None and len(item.before_image) == 0
    assert item.after_image is not None and item.after_image.primary_key == ("id",)
    assert [(f.name, f.key_type, f.type, f.value) for f in item.after_image.rows[0].fields] == [
        ("id", KeyType.PRIMARY_KEY, 4, 4), ("NAME", KeyType.NULL, 12, "az2"),
    ]


def test_reads_java_typed_values_in_the_jvm_zone() -> None:
    context = "serializer=jackson&compressorType=NONE"  # written by Java: no timeZone
    log = unpack(context, JAVA_2_X, UndoConfig(java_zone="Asia/Shanghai"))
    image = log.sql_undo_logs[0].before_image
    assert image is not None
    values = {f.name: f.value for f in image.rows[0].fields}
    assert values["ts"] == datetime(2019, 8, 10, 10, 49, 26, 926554)
    assert values["ms"] == datetime(2019, 8, 10, 10, 49, 26, 926000)
    assert values["d"] == date(2021, 5, 18) and values["tm"] == time(10, 49, 26)
    assert values["blob"] == b"hello" and values["bin"] == b"\x00\x01"
    assert values["f"] == 0.10000000149011612  # the float32 0.1 a Java Float holds
    assert values["dbl"] == 999999.999999999 and values["nan"] == "NaN"  # Jackson writes Double.NaN as a string
    assert values["big"] == 2**64 - 1 and values["flag"] is True
    assert values["doc"] == {"a": [1, 2.5]} and values["u"] == uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert values["none"] is None and values["id"] == 9


def test_the_defense_payload_is_an_empty_log() -> None:
    assert decode_undo_log(b"{}") == BranchUndoLog("", 0)


@pytest.mark.parametrize(("payload", "message"), [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"sqlUndoLogs": [{"sqlType": "NOPE"}]}', "unexpected shape"),
    (b'{"sqlUndoLogs": [{"sqlType": "INSERT", "afterImage": {"rows": [{"fields": [{"name": "x", "value": '
     b'["com.acme.Money", 1]}]}]}}]}', "com.acme.Money"),
    (b"[" * 100_000, "nested too deeply"),  # was a RecursionError out of json.loads
    (b'{"a":' * 100_000, "nested too deeply"),
])
def test_unreadable_logs_say_why(payload: bytes, message: str) -> None:
    with pytest.raises(UndoLogFormatError, match=message):
        decode_undo_log(payload)


# --- values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "java_type", "form"), [
    (5, JavaType.INTEGER, 5),
    (5, JavaType.BIGINT, ["java.lang.Long", 5]),
    (2**40, JavaType.INTEGER, ["java.lang.Long", 2**40]),
    (2**64, JavaType.NUMERIC, ["java.math.BigInteger", 2**64]),
    (0.5, JavaType.DOUBLE, 0.5),
    (0.5, JavaType.REAL, ["java.lang.Float", 0.5]),
    (0.1, JavaType.REAL, 0.1),  # not a float32: a Java Float could not hold it
    (float("-inf"), JavaType.DOUBLE, ["java.lang.Double", "-Infinity"]),
    (Decimal("-0.00"), JavaType.DECIMAL, ["java.math.BigDecimal", Decimal("-0.00")]),
    (Decimal("sNaN"), JavaType.NUMERIC, ["py:Decimal", "sNaN"]),
    (b"\x00\xff", JavaType.BINARY, ["[B", "AP8="]),
    (timedelta(hours=-1), JavaType.OTHER, ["py:timedelta", [-1, 82800, 0]]),
])
def test_java_forms(value: Any, java_type: int, form: Any) -> None:
    got, py = encode_value(value, java_type)
    assert got == form and py is None


def test_lossy_java_forms_carry_an_exact_py_value() -> None:
    paris = ZoneInfo("Europe/Paris")
    aware = datetime(2024, 7, 1, 12, 0, 0, 5, tzinfo=paris)
    form, py = encode_value(aware, JavaType.TIMESTAMP)
    assert form == ["java.sql.Timestamp", [1719828000000, 5000]]  # the instant, as Java writes a timestamptz
    assert py == ["py:datetime", "2024-07-01T12:00:00.000005+02:00"]
    assert encode_value(time(1, 2, 3, 4), JavaType.TIME) == (
        ["java.sql.Time", "01:02:03"], ["py:time", "01:02:03.000004"]
    )
    text = encode_undo_log(BranchUndoLog("x", 1, (SQLUndoLog(SqlType.DELETE, "t", TableRecords(
        "t", ("id",), (Row((Field("id", -5, 1, KeyType.PRIMARY_KEY), Field("at", 93, aware))),)), None),)))
    assert b'"pyValue":["py:datetime","2024-07-01T12:00:00.000005+02:00"]' in text


@pytest.mark.parametrize("value", [object(), {1, 2}, 1j, bytearray(b"x")])
def test_values_an_undo_log_cannot_carry_are_refused(value: Any) -> None:
    with pytest.raises(UndoValueError, match="cannot be written"):
        encode_value(value)


ZONES = ["UTC", "Europe/Paris", "America/Sao_Paulo", "Asia/Kathmandu", "Pacific/Kiritimati", "America/St_Johns"]
JAVA_TYPES = [JavaType.OTHER, JavaType.BIGINT, JavaType.INTEGER, JavaType.REAL, JavaType.DOUBLE, JavaType.ARRAY,
              JavaType.TIMESTAMP]

offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-14 * 60 + 1, 14 * 60 - 1))
zones = st.sampled_from([ZoneInfo(z) for z in ZONES]) | offsets
json_docs = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.decimals() | st.text()
    | st.binary(max_size=40) | st.datetimes() | st.datetimes(timezones=zones) | st.dates() | st.times()
    | st.times(timezones=offsets) | st.timedeltas() | st.uuids() | st.ip_addresses()
)
values = scalars | st.dictionaries(st.text(max_size=5), json_docs, max_size=3) | st.lists(scalars, max_size=4)


def _identical(a: Any, b: Any) -> bool:
    if not same_value(a, b):
        return False
    if isinstance(a, datetime | time):
        return bool(a.utcoffset() == b.utcoffset())
    if isinstance(a, list):
        return all(_identical(x, y) for x, y in zip(a, b, strict=True))
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, java_type=st.sampled_from(JAVA_TYPES), zone=st.sampled_from(ZONES))
def test_every_value_round_trips_exactly(value: Any, java_type: int, zone: str) -> None:
    form, py = encode_value(value, java_type, zone=ZoneInfo(zone))
    back = decode_value(form, py, zone=ZoneInfo(zone))
    assert _identical(back, value), (value, form, py, back)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(scalars, min_size=1, max_size=5), min_size=1, max_size=4), zone=st.sampled_from(ZONES))
def test_whole_logs_round_trip_exactly_through_json_and_compression(rows: list[list[Any]], zone: str) -> None:
    image = TableRecords("t", ("id",), tuple(
        Row((Field("id", JavaType.BIGINT, i, KeyType.PRIMARY_KEY),
             *(Field(f"c{j}", JavaType.OTHER, v) for j, v in enumerate(row))))
        for i, row in enumerate(rows)
    ))
    log = BranchUndoLog(XID, 1, (SQLUndoLog(SqlType.DELETE, "t", image, TableRecords("t", ("id",))),))
    config = UndoConfig(threshold=0 if len(rows) % 2 else "64k", zone=zone)
    back = unpack(*pack(log, config), UndoConfig(java_zone="Asia/Tokyo"))  # the context names the zone
    restored = back.sql_undo_logs[0].before_image
    assert restored is not None
    for mine, theirs in zip(image.rows, restored.rows, strict=True):
        assert all(_identical(a.value, b.value) for a, b in zip(mine.fields, theirs.fields, strict=True))


def test_float_special_values_and_signed_zero() -> None:
    for value in (float("nan"), float("inf"), -0.0, 5e-324, 1.7976931348623157e308):
        for java_type in (JavaType.DOUBLE, JavaType.REAL):
            back = decode_value(*encode_value(value, java_type))
            assert same_value(back, value) and math.copysign(1, back) == math.copysign(1, value)


# --- compression and context ------------------------------------------------------------------------


def _log_of_size(size: int) -> BranchUndoLog:
    """A log whose JSON is exactly ``size`` bytes."""
    def make(filler: str) -> BranchUndoLog:
        image = TableRecords("t", ("id",), (Row((Field("id", -5, 1, KeyType.PRIMARY_KEY),
                                                 Field("v", 12, filler))),))
        return BranchUndoLog(XID, 1, (SQLUndoLog(SqlType.DELETE, "t", image, None),))

    base = len(encode_undo_log(make("")))
    log = make("x" * (size - base))
    assert len(encode_undo_log(log)) == size
    return log


def test_compressed_only_above_the_threshold() -> None:
    config = UndoConfig(threshold="1k")
    context, payload = pack(_log_of_size(1024), config)
    assert decode_context(context)["compressorType"] == "NONE" and len(payload) == 1024
    context, payload = pack(_log_of_size(1025), config)
    assert decode_context(context) == {"serializer": "jackson", "compressorType": "ZIP", "timeZone": "UTC"}
    assert payload[:2] == b"PK" and len(payload) < 1025
    assert unpack(context, payload).sql_undo_logs[0].before_image is not None
    context, payload = pack(_log_of_size(5000), UndoConfig(compress=False, threshold=0))
    assert decode_context(context)["compressorType"] == "NONE"


@pytest.mark.parametrize("kind", [k for k in CompressorType if k not in (CompressorType.NONE, CompressorType.SEVENZ)])
def test_every_seata_compressor(kind: CompressorType) -> None:
    if not is_available(kind):
        pytest.skip(f"{kind.name} needs an optional library")
    log = _log_of_size(3000)
    context, payload = pack(log, UndoConfig(compressor=kind, threshold=100))
    assert f"compressorType={kind.name}" in context
    assert unpack(context, payload) == decode_undo_log(encode_undo_log(log))


def test_default_threshold_is_seatas_64k() -> None:
    assert parse_size(UndoConfig().threshold) == 65536
    assert [parse_size(s) for s in ("4096", "1k", "2M", "1g", 7)] == [4096, 1024, 2 << 20, 1 << 30, 7]
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_context_follows_javas_map_encoding() -> None:
    context = encode_context({"serializer": "jackson", "compressorType": "NONE"})
    assert context == "serializer=jackson&compressorType=NONE"
    assert decode_context("serializer=jackson&compressorType=ZIP&map=1048576&junk&a=b=c&") == {
        "serializer": "jackson", "compressorType": "ZIP", "map": "1048576",
    }
    assert decode_context(None) == {} and decode_context("") == {}


@pytest.mark.parametrize(("context", "message"), [
    ("serializer=kryo&compressorType=NONE", "serializer 'kryo' is not supported"),
    ("serializer=jackson&compressorType=FANCY", "unknown compressorType"),
    ("serializer=jackson&compressorType=GZIP", "does not decompress"),
])
def test_unpack_refuses_what_it_cannot_read(context: str, message: str) -> None:
    with pytest.raises(UndoLogFormatError, match=message):
        unpack(context, b"{}")


def test_decompression_is_bounded() -> None:
    context, payload = pack(_log_of_size(20000), UndoConfig(threshold=0))
    with pytest.raises(UndoLogFormatError, match="does not decompress"):
        unpack(context, payload, UndoConfig(max_size="10k"))


# --- the undo_log table -----------------------------------------------------------------------------

SEATA_COLUMNS = {
    "mariadb": ["branch_id", "xid", "context", "rollback_info", "log_status", "log_created", "log_modified"],
    "postgres": ["id", "branch_id", "xid", "context", "rollback_info", "log_status", "log_created", "log_modified"],
    "sqlite": ["id", "branch_id", "xid", "context", "rollback_info", "log_status", "log_created", "log_modified"],
}


def test_undo_log_table_life_cycle(db: Db) -> None:
    table = UndoLogTable.of(db.dialect, style=db.style)
    for statement in table.ddl():
        db.run(statement)
    for statement in table.ddl():  # IF NOT EXISTS: running the script twice is harmless
        db.run(statement)
    columns, _rows = db.query(f"SELECT * FROM {table.qualified}")
    assert columns == SEATA_COLUMNS[db.kind]

    context, payload = pack(_update_log())
    db.run(table.insert_sql(), table.row_params(XID, 11, context, payload))
    db.run(table.insert_sql(), table.row_params(XID, 12, context, payload))
    (row,) = db.run(table.select_sql(), [11, XID])
    branch_id, xid, stored_context, rollback_info, status = row
    assert (branch_id, xid, stored_context, status) == (11, XID, context, 0)
    assert unpack(stored_context, bytes(rollback_info)).branch_id == _update_log().branch_id

    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):  # the anti-suspension guard
        db.run(table.insert_sql(), table.defense_params(XID, 11))
    db.run(table.insert_sql(), table.defense_params(XID, 13))
    assert db.run(table.select_sql(), [13, XID])[0][2:] == ("serializer=jackson&compressorType=NONE", b"{}", 1)

    db.run(table.delete_sql(), [11, XID])
    db.run(table.delete_many_sql(2, 1), [12, 13, XID])
    assert db.run(f"SELECT COUNT(*) FROM {table.qualified}") == [(0,)]
    created = db.run(f"SELECT log_created FROM {table.qualified}")
    assert created == []


def test_undo_log_table_with_another_name(make_db: Callable[[str], Db]) -> None:
    db = make_db("postgres")
    table = UndoLogTable.of("postgres", "my_undo", style="pyformat")
    for statement in table.ddl():
        db.run(statement)
    db.run(table.insert_sql(), {f"p{i}": v for i, v in enumerate(table.row_params("x", 1, "c", b"{}"))})
    assert db.run(table.select_sql(), {"p0": 1, "p1": "x"})[0][:3] == (1, "x", "c")


@pytest.mark.parametrize("node", [
    {"a": [Decimal("1.50"), Decimal("-0"), Decimal("1E+2"), 1.5, -0.0, True, None, 2**70, "é\"\\"]},
    ["\x00pyseata:BigDecimal\x00", Decimal("3.10")],  # a string equal to the fast writer's marker
    ["\"\x00pyseata:BigDecimal\x00", Decimal("3.10"), Decimal("4")],
    {"k": "plain", "n": [1, 2, {"x": "\u2028"}]},
])
def test_the_fast_json_writer_writes_what_the_exact_writer_writes(node: Any) -> None:
    from pyseata.at.undo import _dumps, _write

    out: list[str] = []
    _write(node, out)
    assert _dumps(node) == "".join(out).encode("utf-8")


def test_a_string_like_the_decimal_marker_survives_the_undo_log() -> None:
    image = TableRecords("t", ("id",), (Row((Field("id", 4, 1, KeyType.PRIMARY_KEY),
                                             Field("s", 12, "\x00pyseata:BigDecimal\x00"),
                                             Field("d", 3, Decimal("0.10")))),))
    log = BranchUndoLog("x", 1, (SQLUndoLog(SqlType.UPDATE, "t", image, image),))
    assert decode_undo_log(encode_undo_log(log)) == log
