"""Seata's lock-key grammar ``table:pk1,pk2;table2:pk3`` and the TC's row keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyseata.coordinator.lockkeys import (
    RowKey,
    normalize_row_keys,
    parse_lock_key,
    split_row_key,
)
from pyseata.errors import TransactionError
from pyseata.protocol.enums import TransactionExceptionCode as Code

RES = "jdbc:mysql://db:3306/shop"


def test_one_table_several_pks() -> None:
    assert parse_lock_key(RES, "t_stock:1,2,3") == [
        RowKey(RES, "t_stock", "1"), RowKey(RES, "t_stock", "2"), RowKey(RES, "t_stock", "3"),
    ]


def test_several_tables() -> None:
    got = parse_lock_key(RES, "t_order:1001;t_stock:7")
    assert [k.key for k in got] == [f"{RES}^^^t_order^^^1001", f"{RES}^^^t_stock^^^7"]


def test_duplicates_dropped_first_seen_order_kept() -> None:
    got = parse_lock_key(RES, "b:2,1,2;a:1;b:1")
    assert [(k.table_name, k.pk) for k in got] == [("b", "2"), ("b", "1"), ("a", "1")]


def test_composite_pk_stays_one_value() -> None:
    assert parse_lock_key(RES, "t_order:1001_A") == [RowKey(RES, "t_order", "1001_A")]


def test_pk_may_contain_a_colon() -> None:
    assert parse_lock_key(RES, "t:2024-01-01 10:00:00") == [RowKey(RES, "t", "2024-01-01 10:00:00")]


def test_schema_qualified_table() -> None:
    assert parse_lock_key(RES, "public.t_order:1") == [RowKey(RES, "public.t_order", "1")]


@pytest.mark.parametrize("lock_key", ["", None])
def test_no_lock_key_means_no_rows(lock_key: str | None) -> None:
    assert parse_lock_key(RES, lock_key) == []
    assert parse_lock_key("", lock_key) == []


@pytest.mark.parametrize(
    ("lock_key", "names"),
    [
        ("t_stock", "no ':'"),
        ("t_stock:1;t_order", "'t_order' has no ':'"),
        ("t_stock:1;", "part '' has no ':'"),
        (":1", "empty table name"),
        ("  :1", "empty table name"),
        ("t:", "empty primary key"),
        ("t:1,,2", "empty primary key"),
        ("t:1,", "empty primary key"),
        ("t:,1", "empty primary key"),
        ("t: ", "empty primary key"),
    ],
)
def test_malformed_lock_keys_are_refused(lock_key: str, names: str) -> None:
    with pytest.raises(TransactionError) as info:
        parse_lock_key(RES, lock_key, xid="10.0.0.1:8091:1")
    err = info.value
    assert names in str(err) and repr(lock_key) in str(err)
    assert err.code is Code.BranchRegisterFailed
    assert err.xid == "10.0.0.1:8091:1"


def test_code_follows_the_request() -> None:
    with pytest.raises(TransactionError) as info:
        parse_lock_key(RES, "bad", code=Code.LockableCheckFailed)
    assert info.value.code is Code.LockableCheckFailed


def test_lock_key_without_resource_is_refused() -> None:
    with pytest.raises(TransactionError, match="resource id"):
        parse_lock_key("", "t:1")


def test_split_row_key() -> None:
    assert split_row_key(f"{RES}^^^t_order^^^1001_A") == RowKey(RES, "t_order", "1001_A")
    assert split_row_key("r^^^t^^^a^^^b") == RowKey("r", "t", "a^^^b")  # the pk takes the rest


@pytest.mark.parametrize("row_key", ["", "r^^^t", "r^^^t^^^", "^^^t^^^1", "r^^^^^^1", "plain"])
def test_malformed_row_keys(row_key: str) -> None:
    with pytest.raises(TransactionError, match="malformed row key"):
        split_row_key(row_key)


def test_normalize_row_keys_accepts_both_forms() -> None:
    parsed = RowKey(RES, "t", "1")
    assert normalize_row_keys([parsed, parsed.key, f"{RES}^^^t^^^2"]) == [parsed, RowKey(RES, "t", "2")]


_name = st.text(st.characters(blacklist_characters=":;,^", blacklist_categories=["Cs"]), min_size=1).filter(
    str.strip
)
_pk = st.text(st.characters(blacklist_characters=";,^", blacklist_categories=["Cs"]), min_size=1).filter(
    str.strip
)


@given(st.lists(st.tuples(_name, st.lists(_pk, min_size=1, max_size=4)), min_size=1, max_size=4))
def test_format_then_parse_round_trip(groups: list[tuple[str, list[str]]]) -> None:
    lock_key = ";".join(f"{table}:{','.join(pks)}" for table, pks in groups)
    expected = list(dict.fromkeys(RowKey(RES, table, pk) for table, pks in groups for pk in pks))
    parsed = parse_lock_key(RES, lock_key)
    assert parsed == expected
    assert [split_row_key(k.key) for k in parsed] == parsed
