"""The client's one configuration object, from keyword arguments, environment and a TOML file.

Precedence, per key: keyword arguments > ``PYSEATA_*`` environment variables > the ``[client]``
table of a TOML file > defaults (Seata's). Names are Seata's where a user would look for them::

    config = load_config(application_id="shop", grouplist="10.0.0.5:8091")

    # pyseata.toml                          # environment
    [client]                                # PYSEATA_APPLICATION_ID=shop
    application_id = "shop"                 # PYSEATA_TX_SERVICE_GROUP=shop_group
    tx_service_group = "shop_group"         # PYSEATA_VGROUP_MAPPING="shop_group=east"
    [client.vgroup_mapping]                 # PYSEATA_GROUPLIST="east=10.0.0.5:8091,10.0.0.6:8091"
    shop_group = "east"                     # PYSEATA_COMMIT_RETRY_COUNT=3
    [client.grouplist]                      # PYSEATA_CONFIG_FILE=pyseata.toml  (the file to read)
    east = "10.0.0.5:8091,10.0.0.6:8091"

``vgroup_mapping`` and ``grouplist`` also take one string: ``"group=cluster;group2=cluster2"``, or
a bare cluster name (the mapping of ``tx_service_group``); ``"cluster=host:port,host:port;..."``,
or bare ``host:port,...`` (the addresses of the cluster ``tx_service_group`` maps to).
Durations are seconds. Every error is a :class:`~pyseata.errors.ConfigError` naming the key and
where the value came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pyseata.configfile import read_toml
from pyseata.errors import ConfigError
from pyseata.rpc.auth import Credentials
from pyseata.rpc.client import DEFAULT_CLUSTER, DEFAULT_GROUPLIST, DEFAULT_TX_GROUP, ClientTransportConfig

__all__ = ["ENV_PREFIX", "ClientConfig", "load_config"]

ENV_PREFIX = "PYSEATA_"
CONFIG_FILE_ENV = "PYSEATA_CONFIG_FILE"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything the TM (and RM) side needs. Build it with :func:`load_config`, or directly."""

    application_id: str
    tx_service_group: str = DEFAULT_TX_GROUP
    # Empty: tx_service_group -> "default" (Seata insists on an entry; a lone group needs no ceremony).
    vgroup_mapping: Mapping[str, str] = field(default_factory=dict)
    grouplist: Mapping[str, str] = field(default_factory=lambda: {DEFAULT_CLUSTER: DEFAULT_GROUPLIST})
    tm_request_timeout: float = 30.0  # Seata: transport.rpcTmRequestTimeout
    rm_request_timeout: float = 15.0  # Seata: transport.rpcRmRequestTimeout
    connect_timeout: float = 10.0  # TCP connect plus registration, per attempt
    default_timeout: float = 60.0  # Seata: client.tm.defaultGlobalTransactionTimeout (seconds here)
    commit_retry_count: int = 5  # attempts in all, on transport errors (Seata: client.tm.commitRetryCount)
    rollback_retry_count: int = 5  # Seata: client.tm.rollbackRetryCount
    retry_interval: float = 1.0  # pause between attempts (Seata retries at once)
    secret: str | None = field(default=None, repr=False)  # when the TC requires signed registration
    access_key: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(f.name, getattr(self, f.name))
        mapping = dict(self.vgroup_mapping) or {self.tx_service_group: DEFAULT_CLUSTER}
        object.__setattr__(self, "vgroup_mapping", MappingProxyType(mapping))
        object.__setattr__(self, "grouplist", MappingProxyType(dict(self.grouplist)))
        if self.access_key is not None and self.secret is None:
            raise ConfigError("access_key is only used with secret: set secret too, or drop access_key")
        try:
            addresses = self.transport().tc_addresses()  # the lookup chain must resolve now, not at the first begin
        except ConfigError:
            raise
        except ValueError as exc:  # a port int() cannot read although str.isdigit() said yes ('8\u00b2')
            raise ConfigError(f"grouplist {dict(self.grouplist)!r} is not 'host:port[,host:port]': {exc}") from None
        for address in addresses:
            if not _is_host(address.host):
                raise ConfigError(f"grouplist: {address.host!r} is not a host name or IP address")

    def transport(self) -> ClientTransportConfig:
        """The transport settings for :class:`~pyseata.rpc.client.RpcClient`."""
        credentials = Credentials(self.secret, self.access_key) if self.secret is not None else None
        return ClientTransportConfig(
            application_id=self.application_id,
            tx_service_group=self.tx_service_group,
            vgroup_mapping=self.vgroup_mapping,
            grouplist=self.grouplist,
            tm_request_timeout=self.tm_request_timeout,
            rm_request_timeout=self.rm_request_timeout,
            connect_timeout=self.connect_timeout,
            credentials=credentials,
        )


# --- per-key rules (shared by the constructor and the loader, so both name the key) -------------

def _str_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_host(host: str) -> bool:
    """A name the resolver can be asked about: else every connection attempt fails the same way."""
    if not host.isprintable() or any(ch.isspace() for ch in host):
        return False
    try:
        host.encode("idna")  # empty or over-long labels ("a..b", 64 letters)
    except UnicodeError:
        return False
    return True


def _number(value: Any) -> bool:
    """An int or float: not a bool, not a string or a Decimal the transport could not time with."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "application_id": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "tx_service_group": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "tm_request_timeout": (lambda v: _number(v) and v > 0, "> 0 seconds"),
    "rm_request_timeout": (lambda v: _number(v) and v > 0, "> 0 seconds"),
    "connect_timeout": (lambda v: _number(v) and v > 0, "> 0 seconds"),
    "default_timeout": (lambda v: _number(v) and v > 0, "> 0 seconds"),
    "commit_retry_count": (lambda v: _number(v) and isinstance(v, int) and v >= 1, "an integer >= 1 (attempts in all)"),
    "rollback_retry_count": (lambda v: _number(v) and isinstance(v, int) and v >= 1,
                             "an integer >= 1 (attempts in all)"),
    "retry_interval": (lambda v: _number(v) and v >= 0, ">= 0 seconds"),
    "vgroup_mapping": (_str_mapping, "a mapping of group names to cluster names"),
    "grouplist": (_str_mapping, "a mapping of cluster names to 'host:port[,host:port]'"),
    "secret": (lambda v: v is None or isinstance(v, str), "a string (or None)"),
    "access_key": (lambda v: v is None or isinstance(v, str), "a string (or None)"),
}
_HIDDEN = frozenset({"secret"})  # its value never goes into a message


def _shown(name: str, value: Any) -> str:
    return f"a {type(value).__name__} (not shown)" if name in _HIDDEN else repr(value)


def _check(name: str, value: Any, source: str = "") -> None:
    rule = _RULES.get(name)
    if rule is None:
        return
    ok, text = rule
    try:
        passed = ok(value)
    except TypeError:
        passed = False
    if not passed:
        raise ConfigError(f"{source}{name} must be {text}, not {_shown(name, value)}")


# --- converting raw values (strings from the environment, TOML values) -------------------------


def _to_str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("a string")
    return raw


def _to_int(raw: Any) -> int:
    if isinstance(raw, (bool, float)):
        raise ValueError("an integer")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError("an integer") from None


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("a number of seconds")
    try:
        return float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float (10**400)
        raise ValueError("a number of seconds") from None


def _to_mapping(raw: Any) -> Mapping[str, str] | str:
    # A string stays a string here: bare forms need tx_service_group, resolved after merging.
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        return dict(raw)
    raise ValueError("a table of strings, or a 'key=value;key=value' string")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "Mapping[str, str]": _to_mapping,
}


def _kinds() -> dict[str, tuple[Callable[[Any], Any], bool]]:
    """field name -> (converter, whether None is allowed)."""
    kinds: dict[str, tuple[Callable[[Any], Any], bool]] = {}
    for f in fields(ClientConfig):
        text = str(f.type)
        optional = text.endswith(" | None")
        kinds[f.name] = (_CONVERTERS[text.removesuffix(" | None")], optional)
    return kinds


_KINDS = _kinds()


def _convert(name: str, raw: Any, source: str) -> Any:
    convert, optional = _KINDS[name]
    if optional and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "null"))):
        return None
    try:
        value = convert(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}{name} must be {exc}, not {_shown(name, raw)}") from None
    if convert is not _to_mapping:
        _check(name, value, source)
    return value


def _pairs(text: str, key: str, source: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{source}{key}: {item!r} is not 'name=value' (entries are separated by ';')")
        result[name.strip()] = value.strip()
    return result


# --- loading ----------------------------------------------------------------------------------


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **settings: Any,
) -> ClientConfig:
    """Builds the :class:`ClientConfig` from ``settings`` > environment > ``config_file`` > defaults.

    ``config_file`` defaults to ``$PYSEATA_CONFIG_FILE``; ``environ`` to ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    known = {f.name for f in fields(ClientConfig)}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_file if config_file is not None else environ.get(CONFIG_FILE_ENV) or None
    layers = [
        *([(_read_file(Path(path)), f"config file {path} [client]: ")] if path is not None else []),
        ({n: environ[ENV_PREFIX + n.upper()] for n in known if ENV_PREFIX + n.upper() in environ}, "environment "),
        (settings, ""),
    ]
    for layer, where in layers:
        for key, raw in layer.items():
            if key not in known:
                raise ConfigError(f"{where}unknown client setting {key!r}; known: {', '.join(sorted(known))}")
            source = f"{where}PYSEATA_{key.upper()}: " if where == "environment " else where
            values[key] = _convert(key, raw, source)
            sources[key] = source
    if "application_id" not in values:
        raise ConfigError(
            "application_id is required: pass application_id=..., set PYSEATA_APPLICATION_ID, "
            "or put application_id in the [client] table of the config file"
        )
    _resolve_mappings(values, sources)
    return ClientConfig(**values)


def _resolve_mappings(values: dict[str, Any], sources: dict[str, str]) -> None:
    group = values.get("tx_service_group", DEFAULT_TX_GROUP)
    mapping = values.get("vgroup_mapping")
    if isinstance(mapping, str):
        source = sources["vgroup_mapping"]
        mapping = _pairs(mapping, "vgroup_mapping", source) if "=" in mapping else {group: mapping.strip()}
        values["vgroup_mapping"] = mapping
    grouplist = values.get("grouplist")
    if isinstance(grouplist, str):
        source = sources["grouplist"]
        if "=" in grouplist:
            values["grouplist"] = _pairs(grouplist, "grouplist", source)
        else:
            cluster = (mapping or {group: DEFAULT_CLUSTER}).get(group, DEFAULT_CLUSTER)
            values["grouplist"] = {cluster: grouplist.strip()}


def _read_file(path: Path) -> dict[str, Any]:
    data = read_toml(path)
    section = data.get("client")
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path} has no [client] table; put the client settings under [client]")
    return section
