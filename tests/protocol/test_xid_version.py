from __future__ import annotations

import pytest

from pyseata.protocol.enums import EXCEPTION_CODE_TABLES, exception_code_table_for
from pyseata.protocol.version import is_at_least, version_to_int
from pyseata.protocol.xid import InvalidXidError, Xid, format_xid, parse_xid


@pytest.mark.parametrize(("text", "number"), [
    ("1.5.0", 1_050_000), ("2.2.0", 2_020_000), ("2.3.0-SNAPSHOT", 2_030_000), ("1.4.2", 1_040_200),
    ("0.7.1", 70_100), ("1.5.0.1", 1_050_001), ("2", 2_000_000), ("1.x.3", 1_000_300),
])
def test_version_to_int_as_seata(text: str, number: int) -> None:
    assert version_to_int(text) == number


@pytest.mark.parametrize("bad", ["", "   ", "1.2.3.4.5"])
def test_unusable_versions(bad: str) -> None:
    with pytest.raises(ValueError):
        version_to_int(bad)
    assert not is_at_least(bad, "1.5.0")


def test_exception_table_follows_the_version() -> None:
    assert exception_code_table_for("2.2.0") is EXCEPTION_CODE_TABLES["2.0"]
    assert exception_code_table_for("1.8.0") is EXCEPTION_CODE_TABLES["1.7"]
    assert exception_code_table_for("1.5.2") is EXCEPTION_CODE_TABLES["1.5"]
    assert exception_code_table_for("1.4.2") is EXCEPTION_CODE_TABLES["1.4"]
    assert exception_code_table_for(None) is EXCEPTION_CODE_TABLES["2.0"]


def test_xid_round_trip() -> None:
    xid = format_xid("10.0.0.5", 8091, 2612341069705662465)
    assert xid == "10.0.0.5:8091:2612341069705662465"
    assert parse_xid(xid) == Xid("10.0.0.5", 8091, 2612341069705662465)
    assert parse_xid(xid).address == "10.0.0.5:8091"
    assert str(parse_xid(xid)) == xid
    assert parse_xid("h:8091:-7").transaction_id == -7  # a Java long may be negative


BAD_XIDS = ["", "abc", "host:port:1", "h:8091:x", ":8091:1", "h:0:1", "h:8091:99999999999999999999",
            # int() reads these; a TC never writes them, and Java's parser refuses most of them
            "h:8091:1_2", "h:8091: 5", "h:8091:5\n", "h:80_91:5", "h:+8091:5", "h:8091:\u0663", "h:\u0663:5"]


@pytest.mark.parametrize("bad", BAD_XIDS)
def test_bad_xids_are_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(InvalidXidError, match="XID"):
        parse_xid(bad)
