"""ClientConfig: Seata's defaults, kwargs > environment > TOML file > defaults, errors naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pyseata.client.config import ClientConfig, load_config
from pyseata.errors import ConfigError
from pyseata.rpc.client import TcAddress
from pyseata.rpc.registry import Role

NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyseata.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_seatas() -> None:
    config = load_config(application_id="shop", environ=NO_ENV)
    assert (config.tx_service_group, dict(config.vgroup_mapping), dict(config.grouplist)) == (
        "default_tx_group", {"default_tx_group": "default"}, {"default": "127.0.0.1:8091"},
    )  # fmt: skip
    assert (config.commit_retry_count, config.rollback_retry_count) == (5, 5)
    assert config.default_timeout == 60.0
    assert (config.tm_request_timeout, config.rm_request_timeout) == (30.0, 15.0)


def test_precedence_is_kwargs_then_environment_then_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [client]
        application_id = "from-file"
        commit_retry_count = 2
        rollback_retry_count = 3
        default_timeout = 10
        [client.grouplist]
        default = "10.0.0.1:8091"
    """)  # fmt: skip
    environ = {"PYSEATA_COMMIT_RETRY_COUNT": "7", "PYSEATA_ROLLBACK_RETRY_COUNT": "8", "PYSEATA_OTHER": "ignored"}
    config = load_config(path, environ=environ, commit_retry_count=9)
    assert config.application_id == "from-file"  # only the file sets it
    assert config.commit_retry_count == 9  # kwargs beat the environment and the file
    assert config.rollback_retry_count == 8  # the environment beats the file
    assert config.default_timeout == 10.0  # the file beats the default
    assert config.transport().tc_addresses() == (TcAddress("10.0.0.1", 8091),)


def test_the_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[client]\napplication_id = "env-file"\n')
    assert load_config(environ={"PYSEATA_CONFIG_FILE": str(path)}).application_id == "env-file"


def test_mapping_strings_from_the_environment() -> None:
    environ = {
        "PYSEATA_APPLICATION_ID": "shop",
        "PYSEATA_TX_SERVICE_GROUP": "shop_group",
        "PYSEATA_VGROUP_MAPPING": "shop_group=east; other=west",
        "PYSEATA_GROUPLIST": "east=10.0.0.5:8091,10.0.0.6:8091;west=10.1.0.5:8091",
    }
    config = load_config(environ=environ)
    assert dict(config.vgroup_mapping) == {"shop_group": "east", "other": "west"}
    assert config.transport().tc_addresses() == (TcAddress("10.0.0.5", 8091), TcAddress("10.0.0.6", 8091))


def test_bare_strings_refer_to_the_groups_cluster() -> None:
    config = load_config(application_id="shop", tx_service_group="g", vgroup_mapping="east",
                         grouplist="10.0.0.5:8091", environ=NO_ENV)  # fmt: skip
    assert dict(config.vgroup_mapping) == {"g": "east"}
    assert dict(config.grouplist) == {"east": "10.0.0.5:8091"}


def test_a_lone_group_maps_to_the_default_cluster() -> None:
    config = ClientConfig("shop", tx_service_group="mine", grouplist={"default": "10.0.0.5:8091"})
    assert config.transport().tc_addresses() == (TcAddress("10.0.0.5", 8091),)


def test_transport_settings_carry_over() -> None:
    config = ClientConfig("shop", tm_request_timeout=3, rm_request_timeout=4, connect_timeout=2, secret="s3cret")
    transport = config.transport()
    assert (transport.request_timeout(Role.TM), transport.request_timeout(Role.RM), transport.connect_timeout) == (
        3, 4, 2,
    )  # fmt: skip
    assert transport.credentials is not None and transport.credentials.secret == "s3cret"
    assert "s3cret" not in repr(config)


def test_config_is_immutable() -> None:
    config = ClientConfig("shop")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.commit_retry_count = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.grouplist["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("settings", "environ", "message"),
    [
        ({}, {}, "application_id is required"),
        ({"application_id": ""}, {}, "application_id must be a non-empty string"),
        ({"application_id": "a"}, {"PYSEATA_COMMIT_RETRY_COUNT": "abc"},
         "PYSEATA_COMMIT_RETRY_COUNT: commit_retry_count must be an integer, not 'abc'"),
        ({"application_id": "a"}, {"PYSEATA_TM_REQUEST_TIMEOUT": "soon"}, "tm_request_timeout must be a number"),
        ({"application_id": "a", "rollback_retry_count": 0}, {}, "rollback_retry_count must be an integer >= 1"),
        ({"application_id": "a", "default_timeout": -1}, {}, "default_timeout must be > 0 seconds"),
        ({"application_id": "a", "commit_retry_count": 2.5}, {}, "commit_retry_count must be an integer"),
        ({"application_id": "a", "retry_count": 2}, {}, "unknown client setting 'retry_count'"),
        ({"application_id": "a", "grouplist": "nohost"}, {}, "'nohost' is not host:port"),
        ({"application_id": "a", "grouplist": "east=1.2.3.4:1"}, {}, "names cluster 'default'"),
        ({"application_id": "a", "vgroup_mapping": "g=;x"}, {}, "vgroup_mapping: 'g=' is not 'name=value'"),
        ({"application_id": "a", "access_key": "k"}, {}, "access_key is only used with secret"),
    ],
)  # fmt: skip
def test_errors_name_the_key(settings: dict[str, Any], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(environ=environ, **settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[client\n", "is not valid TOML"),
        ('[server]\nport = 1\n', "has no \\[client\\] table"),
        ('[client]\napplication_id = "a"\ncommit_retry_cuont = 1\n', "unknown client setting 'commit_retry_cuont'"),
        ('[client]\napplication_id = "a"\ncommit_retry_count = "many"\n',
         r"\[client\]: commit_retry_count must be an integer"),
        ('[client]\napplication_id = "a"\n[client.grouplist]\ndefault = 8091\n',
         "grouplist must be a table of strings"),
    ],
)  # fmt: skip
def test_file_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path, environ=NO_ENV)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ=NO_ENV)


def test_empty_environment_values_clear_optional_settings() -> None:
    config = load_config(application_id="a", secret="x", environ={"PYSEATA_SECRET": ""})
    assert config.secret == "x"  # kwargs win
    assert load_config(environ={"PYSEATA_APPLICATION_ID": "a", "PYSEATA_SECRET": ""}).secret is None
