"""``pyseata server`` settings from hostile input: a TOML file, ``PYSEATA_SERVER_*`` variables and
flags with random keys, values and types give valid settings or a ConfigError naming the setting;
never a TypeError, ValueError or tomllib error of their own."""

from __future__ import annotations

import datetime
import math
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from configfuzz import arbitrary_values, env_values, toml_document, toml_values
from pyseata.coordinator.settings import ENV_PREFIX, ServerSettings, _base, load_settings
from pyseata.errors import ConfigError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = sorted(f.name for f in fields(ServerSettings))
HINTS = get_type_hints(ServerSettings)
SOURCES = ("file", "environment", "flag")


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("settings") / "tc.toml"


def _load(config_path: Path, source: str, values: dict[str, Any]) -> ServerSettings:
    if source == "file":
        config_path.write_text(toml_document("server", values), encoding="utf-8")
        return load_settings(str(config_path), environ={})
    if source == "environment":
        return load_settings(None, environ={ENV_PREFIX + k.upper(): v for k, v in values.items()})
    return load_settings(None, flags=values, environ={})


def _well_typed(result: ServerSettings) -> None:
    for name in NAMES:
        kind, optional = _base(HINTS[name])
        value = getattr(result, name)
        if value is None:
            assert optional, name
        else:
            assert type(value) is kind, (name, value)  # exactly: a bool is not an int here
            assert not (kind is float and math.isnan(value)), name


@FUZZ
@given(st.sampled_from(NAMES), st.sampled_from(SOURCES), st.data())
@example("port", "file", [1]).via("a TOML list: was a TypeError")
@example("port", "file", datetime.date(1979, 5, 27)).via("a TOML date: was a TypeError")
@example("drain_timeout", "file", {"a": 1}).via("a TOML table: was a TypeError")
@example("drain_timeout", "flag", 10**400).via("too big for a float: was an OverflowError")
@example("port", "environment", "\u00b2")
@example("retry_period", "environment", "nan")
@example("drain_timeout", "flag", 2**53 + 1).via("an int no float holds exactly: the test compared it unconverted")
def test_one_setting_from_one_source(config_path: Path, name: str, source: str, data: Any) -> None:
    """Each setting, given any value by any source: the value is taken, or the error names it."""
    if isinstance(data, st.DataObject):
        values = {"environment": env_values, "file": toml_values, "flag": arbitrary_values}
        raw = data.draw(values[source], label="value")
    else:
        raw = data
    try:
        result = _load(config_path, source, {name: raw})
    except ConfigError as exc:
        assert name in str(exc), str(exc)
        return
    _well_typed(result)
    if raw is not None and not isinstance(raw, str) and not (isinstance(raw, float) and math.isnan(raw)):
        kind, _ = _base(HINTS[name])
        # a typed value is taken as it is (an int for a float setting as the nearest float: 2**53 + 1
        # cannot be one exactly)
        assert getattr(result, name) == (float(raw) if kind is float else raw), (name, raw)


@FUZZ
@given(st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=12), toml_values, max_size=6),
       st.dictionaries(st.sampled_from([n.upper() for n in NAMES]) | st.text(max_size=8), env_values, max_size=4),
       st.dictionaries(st.sampled_from(NAMES), arbitrary_values, max_size=3),
       st.sampled_from(["server", None]))
def test_many_settings_from_every_source(config_path: Path, file_values: dict[str, Any], env: dict[str, str],
                                         flags: dict[str, Any], section: str | None) -> None:
    config_path.write_text(toml_document(section, file_values), encoding="utf-8")
    try:
        result = load_settings(str(config_path), flags=flags,
                               environ={ENV_PREFIX + k: v for k, v in env.items()} | {"HOME": "/x"})
    except ConfigError as exc:
        assert str(exc).strip()
        return
    _well_typed(result)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200))
@example("[server\nport = 1")
@example("[server]\nport = ")
@example("port = 1\nport = 2")
@example(b"\xff\xfe[server]")
@example("server = 5")
@example("[server]\n[server]")
def test_a_malformed_file(config_path: Path, content: str | bytes) -> None:
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    config_path.write_bytes(content)
    try:
        load_settings(str(config_path), environ={})
    except ConfigError as exc:
        assert str(exc).strip()
        return


@pytest.mark.parametrize("path", ["tc\x00.toml", "", "/", "/nonexistent/tc.toml", "x" * 5000])
def test_an_unusable_file_name(path: str) -> None:
    """A NUL in the name was a ValueError ("embedded null byte"); "" means no file."""
    try:
        result = load_settings(path, environ={})
    except ConfigError as exc:
        assert "config file" in str(exc)
    else:
        assert path == "" and result == ServerSettings()


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), toml_values, max_size=5))
def test_the_toml_writer_round_trips(values: dict[str, Any]) -> None:
    """The strategies above write what they mean (else every file would just be invalid TOML)."""
    parsed = tomllib.loads(toml_document("server", values))["server"]
    assert repr(parsed) == repr(values) or _nan_equal(parsed, values)


def _nan_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_nan_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


# Values load_settings took, with which the TC then failed to start with a traceback (ValueError,
# UnicodeError), or started but would write XIDs no client can carry, or lose every alert.
UNUSABLE = [
    ("host", "a\x00b"), ("host", "\u00e9" * 70), ("host", "x" * 64), ("host", "a..b"), ("host", ""), ("host", " "),
    ("advertise_host", "a:b c"), ("advertise_host", "t\u00e9"), ("advertise_host", "h" * 101),
    ("store", "sqlite:///\x00"), ("tls_cert", "c\x00"), ("tls_key", "k\x00"),
    ("alert_webhook", "not a url"), ("alert_webhook", "ftp://x/hook"), ("alert_webhook", "http://"),
]


@pytest.mark.parametrize(("name", "value"), UNUSABLE)
def test_an_unusable_value_is_refused_by_name(name: str, value: str) -> None:
    pair = {"tls_cert": "tls_key", "tls_key": "tls_cert"}
    environ = {ENV_PREFIX + name.upper(): value} | (
        {ENV_PREFIX + pair[name].upper(): "/etc/x.pem"} if name in pair else {})
    with pytest.raises(ConfigError, match=name):
        load_settings(None, environ=environ)


@pytest.mark.parametrize(("name", "value"), [("host", "0.0.0.0"), ("host", "::"), ("host", "tc.example.com"),
                                             ("advertise_host", "10.0.0.5"), ("advertise_host", "::1"),
                                             ("alert_webhook", "https://alerts.example.com/hook?x=1")])
def test_a_usable_value_is_taken(name: str, value: str) -> None:
    assert getattr(load_settings(None, environ={ENV_PREFIX + name.upper(): value}), name) == value
