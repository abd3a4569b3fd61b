"""Global lock keys from images: Seata's grammar, Java's text for key values, refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pyseata.at.dialects import JavaType
from pyseata.at.errors import LockKeyError
from pyseata.at.images import Field, KeyType, Row, TableRecords
from pyseata.at.lockkeys import build_lock_key, key_text, row_keys
from pyseata.coordinator.lockkeys import parse_lock_key


def _records(table: str, primary_key: tuple[str, ...], *rows: dict[str, Any]) -> TableRecords:
    return TableRecords(table, primary_key, tuple(
        Row(tuple(Field(name, JavaType.OTHER, value, KeyType.PRIMARY_KEY if name in primary_key else KeyType.NULL)
                  for name, value in row.items()))
        for row in rows
    ))


def test_one_table_several_rows() -> None:
    image = _records("t_stock", ("id",), {"id": 1, "n": 5}, {"id": 2, "n": 6})
    assert build_lock_key([image]) == "t_stock:1,2"


def test_composite_key_joined_in_primary_key_order_not_column_order() -> None:
    image = _records("t_order_item", ("order_id", "sku"), {"sku": "A", "qty": 1, "order_id": 1001},
                     {"sku": "B", "qty": 2, "order_id": 1001})
    assert row_keys(image) == ["1001_A", "1001_B"]
    assert build_lock_key([image]) == "t_order_item:1001_A,1001_B"


def test_several_tables_merged_in_first_seen_order_without_repeats() -> None:
    a1 = _records("a", ("id",), {"id": 1})
    b = _records("b", ("id",), {"id": 9})
    a2 = _records("a", ("id",), {"id": 2}, {"id": 1})
    empty = _records("c", ("id",))
    assert build_lock_key([a1, b, empty, a2]) == "a:1,2;b:9"
    assert build_lock_key([empty]) == ""


def test_the_tc_reads_what_we_build() -> None:
    key = build_lock_key([
        _records("public.t_order", ("id", "region"), {"id": 7, "region": "eu:west"}),
        _records("t_stock", ("sku",), {"sku": "X-1"}),
    ])
    parsed = parse_lock_key("jdbc:postgresql://db/shop", key)
    assert [(k.table_name, k.pk) for k in parsed] == [("public.t_order", "7_eu:west"), ("t_stock", "X-1")]


JAVA_TEXT = [
    (7, "7"),
    (-2**63, "-9223372036854775808"),
    ("ab c", "ab c"),
    (True, "true"),
    (Decimal("10.50"), "10.50"),
    (Decimal("1E+3"), "1E+3"),
    (Decimal("0.0000001"), "1E-7"),
    (1.0, "1.0"),
    (1e7, "1.0E7"),
    (0.001, "0.001"),
    (1.5e-5, "1.5E-5"),
    (datetime(2024, 5, 1, 10, 0), "2024-05-01 10:00:00.0"),
    (datetime(2024, 5, 1, 10, 0, 0, 120000), "2024-05-01 10:00:00.12"),
    (datetime(2024, 5, 1, 10, 0, tzinfo=UTC), "2024-05-01 10:00:00.0"),
    (date(2024, 5, 1), "2024-05-01"),
    (time(9, 5, 3), "09:05:03"),
    (timedelta(hours=30, seconds=1), "30:00:01"),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    (b"\x01\xab", "01ab"),
]


@pytest.mark.parametrize(("value", "text"), JAVA_TEXT, ids=[repr(v) for v, _t in JAVA_TEXT])
def test_key_values_written_as_java_writes_them(value: Any, text: str) -> None:
    assert key_text(value) == text


@pytest.mark.parametrize("value", ["a,b", "a;b", "x,", ","])
def test_a_key_value_with_a_separator_is_refused(value: str) -> None:
    image = _records("t", ("code",), {"code": value})
    with pytest.raises(LockKeyError, match="contains"):
        build_lock_key([image])


def test_a_key_of_unknown_type_is_refused() -> None:
    with pytest.raises(LockKeyError, match="type object"):
        key_text(object())


def test_a_table_name_with_a_separator_is_refused() -> None:
    with pytest.raises(LockKeyError, match="table name"):
        build_lock_key([_records("a:b", ("id",), {"id": 1})])
