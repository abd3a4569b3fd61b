"""Hypothesis strategies for configuration fuzzing: values of every TOML type, written as TOML text
(tomllib reads but does not write), and values as the environment or a caller would give them."""

from __future__ import annotations

import datetime
import math
from typing import Any

from hypothesis import strategies as st

__all__ = ["arbitrary_values", "env_values", "toml_document", "toml_scalars", "toml_values"]


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(section: str | None, values: dict[str, Any]) -> str:
    """``values`` as the TOML table ``[section]`` (the top level when None)."""
    lines = [f"[{section}]"] if section else []
    lines += [f"{_string(k)} = {_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


_TEXT = st.text(max_size=20)
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
    st.sampled_from(["", "none", "null", "0", "1", "-1", "2.5", "true", "off", "65536", "1e400", "nan", "1_000"]),
    st.dates(),
    st.times().map(lambda t: t.replace(microsecond=0)),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)

# Environment variables are strings: numbers as people type them, and anything else.
env_values = st.one_of(
    st.text(max_size=30),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "none", "NULL", "true", "FALSE", "yes", "0", "1", "1e400", "-0", "1_0", "\u00b2",
                     "\u0663", "9" * 5000, "0x10", "10 ", "a=b", "=", ";", "h:1", "h:\u00b2", "[::1]:8091"]),
)

# Whatever a caller might pass as a keyword argument.
arbitrary_values = st.one_of(
    toml_values,
    st.none(),
    st.integers(),  # unbounded: 10**400 does not fit a float
    st.binary(max_size=8),
    st.sampled_from([object(), 1j, float("nan"), [], {}, ()]),
)
