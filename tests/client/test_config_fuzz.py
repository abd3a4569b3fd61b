"""The client's configuration from hostile input: keyword arguments, ``PYSEATA_*`` variables, a
TOML file and the constructor itself, with random keys, values and types, give a working
ClientConfig or a ConfigError naming the setting; never a TypeError, ValueError or tomllib error."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from configfuzz import arbitrary_values, env_values, toml_document, toml_values
from pyseata.client.config import CONFIG_FILE_ENV, ENV_PREFIX, ClientConfig, load_config
from pyseata.errors import ConfigError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = sorted(f.name for f in fields(ClientConfig))
SOURCES = ("file", "environment", "argument")
SECRET = "s3cr3t-value"


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client") / "pyseata.toml"


def _load(config_path: Path, source: str, values: dict[str, Any]) -> ClientConfig:
    app = {} if "application_id" in values else {"application_id": "app"}
    if source == "file":
        config_path.write_text(toml_document("client", values), encoding="utf-8")
        return load_config(config_path, environ={}, **app)
    if source == "environment":
        return load_config(environ={ENV_PREFIX + k.upper(): v for k, v in values.items()}, **app)
    return load_config(environ={}, **app, **values)


def _works(config: ClientConfig) -> None:
    """What the client will rely on: the types it declares, and a TC address to connect to."""
    for f in fields(config):
        value = getattr(config, f.name)
        declared = str(f.type)
        if value is None:
            assert declared.endswith("| None"), f.name
        elif declared.startswith("Mapping"):
            assert isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in value.items()), f.name
        elif declared.startswith("float"):
            assert type(value) in (int, float) and not math.isnan(value), (f.name, value)
        else:
            assert type(value).__name__ == declared.removesuffix(" | None"), (f.name, value)
    addresses = config.transport().tc_addresses()
    assert addresses
    for address in addresses:  # each one a name a connection attempt can resolve
        assert 0 < address.port < 65536
        assert address.host.isprintable() and not any(ch.isspace() for ch in address.host), address
        address.host.encode("idna")


@FUZZ
@given(st.sampled_from(NAMES), st.sampled_from(SOURCES), st.data())
@example("tm_request_timeout", "argument", 10**400).via("beyond a float: was an OverflowError")
@example("grouplist", "argument", "h:\u00b2").via("str.isdigit() but not int(): was a ValueError")
@example("grouplist", "environment", "h:" + "9" * 5000).via("too many digits for int(): was a ValueError")
@example("grouplist", "file", {"default": "h:\u00b2"})
@example("vgroup_mapping", "argument", "=")
@example("access_key", "environment", "k")
def test_one_setting_from_one_source(config_path: Path, name: str, source: str, data: Any) -> None:
    if isinstance(data, st.DataObject):
        values = {"environment": env_values, "file": toml_values, "argument": arbitrary_values}
        raw = data.draw(values[source], label="value")
    else:
        raw = data
    try:
        config = _load(config_path, source, {name: raw})
    except ConfigError as exc:
        assert name in str(exc), str(exc)
        return
    _works(config)


@FUZZ
@given(st.sampled_from(NAMES), arbitrary_values)
@example("vgroup_mapping", [1]).via("not a mapping: was a TypeError")
@example("grouplist", {"default": 5}).via("not a string: was an AttributeError")
@example("grouplist", {"default": "h:\u00b2"})
@example("commit_retry_count", True)
@example("tm_request_timeout", "5")
@example("secret", 5)
def test_the_constructor_checks_each_setting(name: str, raw: Any) -> None:
    extra = {"secret": SECRET} if name == "access_key" else {}
    try:
        config = ClientConfig(**({"application_id": "app"} | extra | {name: raw}))
    except ConfigError as exc:
        assert name in str(exc), str(exc)
        return
    _works(config)


@FUZZ
@given(st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=10), toml_values, max_size=5),
       st.dictionaries(st.sampled_from([n.upper() for n in NAMES]), env_values, max_size=4),
       st.dictionaries(st.sampled_from(NAMES), arbitrary_values, max_size=3),
       st.sampled_from(["client", None]))
def test_many_settings_from_every_source(config_path: Path, file_values: dict[str, Any], env: dict[str, str],
                                         arguments: dict[str, Any], section: str | None) -> None:
    config_path.write_text(toml_document(section, file_values), encoding="utf-8")
    environ = {ENV_PREFIX + k: v for k, v in env.items()} | {CONFIG_FILE_ENV: str(config_path)}
    try:
        config = load_config(environ=environ, **arguments)
    except ConfigError as exc:
        assert str(exc).strip()
        return
    _works(config)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200))
@example("[client\napplication_id = 'a'")
@example("[client]\napplication_id = ")
@example(b"\xff[client]")
@example("client = 'x'")
@example("[client]\napplication_id = 'a'\napplication_id = 'b'")
def test_a_malformed_file(config_path: Path, content: str | bytes) -> None:
    config_path.write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
    try:
        config = load_config(config_path, environ={}, application_id="app")
    except ConfigError as exc:
        assert str(config_path) in str(exc) or "client" in str(exc), str(exc)
        return
    _works(config)


@pytest.mark.parametrize("path", ["pyseata\x00.toml", "/", "/nonexistent/pyseata.toml", "x" * 5000])
def test_an_unusable_file_name(path: str) -> None:
    """A NUL in the name was a ValueError ("embedded null byte")."""
    with pytest.raises(ConfigError, match="config file"):
        load_config(environ={CONFIG_FILE_ENV: path}, application_id="app")


def test_a_secret_is_not_shown_in_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, application_id="app", secret=[SECRET])
    assert "secret" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize("grouplist", ["a\x00b:8091", "a b:8091", "a..b:8091", "x" * 64 + ":8091", "h:8091,a\tb:8092"])
def test_a_tc_address_no_connection_could_resolve_is_refused(grouplist: str) -> None:
    """These loaded, then every connection attempt failed with an "unexpected error" traceback."""
    with pytest.raises(ConfigError, match="grouplist"):
        load_config(environ={}, application_id="app", grouplist=grouplist)
