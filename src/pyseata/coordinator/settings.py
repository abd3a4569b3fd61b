"""``pyseata server`` settings: defaults, then a TOML file, then ``PYSEATA_SERVER_*`` environment
variables, then command-line flags (each overrides the one before)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints
from urllib.parse import urlsplit

from pyseata.configfile import read_toml
from pyseata.errors import ConfigError

__all__ = ["ServerSettings", "load_settings"]

ENV_PREFIX = "PYSEATA_SERVER_"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8091
    store: str = "sqlite:///pyseata-tc.db"
    advertise_host: str | None = None  # put in XIDs; default: host (or this machine's address for 0.0.0.0)
    worker_id: int | None = None
    log_level: str = "INFO"
    secret: str | None = None  # shared secret clients must sign their registration with
    access_key: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    batch_response: bool = False
    drain_timeout: float = 10.0
    idle_timeout: float = 15.0
    branch_request_timeout: float = 15.0
    unresponsive_rm_cooldown: float = 5.0
    finished_outcomes_kept: int = 100_000
    retry_period: float = 1.0
    retry_backoff_max: float = 30.0
    max_commit_retry_ms: int | None = None
    max_rollback_retry_ms: int | None = None
    dead_session_ms: int = 10_000
    rollback_retry_timeout_unlock: bool = False
    default_timeout_ms: int = 60_000
    alert_webhook: str | None = None

    def validate(self) -> ServerSettings:
        checks = [
            (0 <= self.port <= 65535, "port", "between 0 and 65535"),
            (self.worker_id is None or 0 <= self.worker_id <= 1023, "worker_id", "between 0 and 1023"),
            (self.drain_timeout >= 0, "drain_timeout", "zero or more seconds"),
            (self.idle_timeout > 0, "idle_timeout", "more than zero seconds"),
            (self.branch_request_timeout > 0, "branch_request_timeout", "more than zero seconds"),
            (self.unresponsive_rm_cooldown >= 0, "unresponsive_rm_cooldown", "zero (off) or more seconds"),
            (self.finished_outcomes_kept >= 0, "finished_outcomes_kept", "zero (off) or more"),
            (self.retry_period > 0, "retry_period", "more than zero seconds"),
            (self.retry_backoff_max >= self.retry_period, "retry_backoff_max", "at least retry_period"),
            (self.max_commit_retry_ms is None or self.max_commit_retry_ms >= 0, "max_commit_retry_ms",
             "zero or more (or unset: retry forever)"),
            (self.max_rollback_retry_ms is None or self.max_rollback_retry_ms >= 0, "max_rollback_retry_ms",
             "zero or more (or unset: retry forever)"),
            (self.dead_session_ms >= 0, "dead_session_ms", "zero or more"),
            (self.default_timeout_ms > 0, "default_timeout_ms", "more than zero"),
            ((self.tls_cert is None) == (self.tls_key is None), "tls_cert/tls_key", "set together"),
            (self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), "log_level",
             "one of DEBUG, INFO, WARNING, ERROR"),
            (_is_host(self.host, 253), "host", "a host name or IP address (ASCII, no spaces)"),
            (self.advertise_host is None or _is_host(self.advertise_host, _MAX_ADVERTISED), "advertise_host",
             f"a host name or IP address (ASCII, no spaces, at most {_MAX_ADVERTISED} characters: it goes into "
             "XIDs, which are at most 128)"),
            *((value is None or "\x00" not in value, name, "a path without NUL characters")
              for name, value in (("store", self.store), ("tls_cert", self.tls_cert), ("tls_key", self.tls_key))),
            (self.alert_webhook is None or _is_http_url(self.alert_webhook), "alert_webhook",
             "an http:// or https:// URL"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ConfigError(f"server setting {name} must be {rule}")
        return self


_MAX_ADVERTISED = 100  # + ":65535:" + a 19-digit transaction id stays within Seata's 128-character XIDs


def _is_host(host: str, longest: int) -> bool:
    """Something the resolver can be asked about, and that can go into an XID as it is."""
    if not 0 < len(host) <= longest or not (host.isascii() and host.isprintable()) or " " in host:
        return False
    try:
        host.encode("idna")  # empty or over-long labels ("a..b", 64 letters) fail here, not in getaddrinfo
    except UnicodeError:
        return False
    return True


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and url.isprintable() and " " not in url


def _base(hint: Any) -> tuple[type, bool]:
    """(the value type, whether None is allowed) of a field's type hint."""
    args = [a for a in get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), bool(get_args(hint))


def _convert(name: str, hint: Any, raw: Any, source: str) -> Any:
    kind, optional = _base(hint)
    if raw is None or (optional and isinstance(raw, str) and raw.strip().lower() in ("", "none", "null")):
        if optional:
            return None
        raise ConfigError(f"{source}: {name} must not be empty")
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            value = str(raw).strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            # int(2.5) would silently give 2, and int(True) 1: refuse both.
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if not isinstance(raw, str):  # e.g. host = 5 in TOML: a typo, not a host name
            raise ValueError(raw)
        return raw
    except (ValueError, TypeError, OverflowError):  # TypeError: a TOML list, table or date; Overflow: 1e400
        raise ConfigError(f"{source}: {name}={raw!r} is not a valid {kind.__name__}") from None


def _apply(settings: ServerSettings, values: dict[str, Any], source: str) -> ServerSettings:
    hints = get_type_hints(ServerSettings)
    known = {f.name for f in fields(ServerSettings)}
    changes = {}
    for key, raw in values.items():
        name = key.replace("-", "_").lower()
        if name not in known:
            raise ConfigError(f"{source}: unknown setting {key!r}; known settings: {', '.join(sorted(known))}")
        changes[name] = _convert(name, hints[name], raw, source)
    return replace(settings, **changes)


def load_settings(config_file: str | None = None, flags: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> ServerSettings:
    settings = ServerSettings()
    if config_file:
        path = Path(config_file)
        data = read_toml(path)
        section = data.get("server", data)
        if not isinstance(section, dict):
            raise ConfigError(f"config file {path}: [server] must be a table")
        settings = _apply(settings, section, str(path))
    env = os.environ if environ is None else environ
    from_env = {k[len(ENV_PREFIX):]: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    settings = _apply(settings, from_env, "environment")
    settings = _apply(settings, {k: v for k, v in (flags or {}).items() if v is not None}, "command line")
    return settings.validate()
