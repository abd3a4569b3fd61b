"""Translation between the conformance files' Java JSON and pyseata message records."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_type_hints

from pyseata.protocol import messages as m
from pyseata.protocol.enums import CompressorType, MessageType
from pyseata.protocol.frame import Frame

BY_NAME: dict[str, type[m.Message]] = {cls.__name__: cls for cls in m.MESSAGE_CLASSES.values()}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _enum_type(cls: type, name: str) -> type[Enum] | None:
    hint = get_type_hints(cls)[name]
    for candidate in (hint, *get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None


def message_from_java(body: dict[str, Any]) -> m.Message:
    cls = BY_NAME[body["@class"]]
    ours = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in body.items():
        name = snake(key)
        if key in ("@class", "typeCode") or name not in ours:
            continue
        if key in ("msgs", "resultMessages"):
            value = tuple(message_from_java(v) for v in value)
        elif key == "msgIds":
            value = tuple(value)
        elif isinstance(value, str) and (enum := _enum_type(cls, name)) is not None:
            value = enum[value]
        kwargs[name] = value
    return cls(**kwargs)


def message_to_java(msg: m.Message) -> dict[str, Any]:
    out: dict[str, Any] = {"@class": type(msg).__name__, "typeCode": int(msg.TYPE_CODE)}
    for f in fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, Enum):
            value = value.name
        elif isinstance(value, tuple):
            value = [message_to_java(v) if isinstance(v, m.Message) else v for v in value]
        out[camel(f.name)] = value
    return out


@dataclass(frozen=True)
class GoldenRow:
    name: str
    wire: bytes
    spec: dict[str, Any]

    @property
    def not_on_wire(self) -> set[str]:
        return {entry.split(" ")[0] for entry in self.spec["notOnWire"]}

    def frame(self) -> Frame:
        return Frame(
            MessageType(self.spec["messageType"]),
            self.spec["requestId"],
            message_from_java(self.spec["body"]),
            self.spec["codec"],
            CompressorType(self.spec["compressor"]),
            self.spec["headMap"],
        )


def load_golden(path: Path) -> list[GoldenRow]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            name, hex_frame, spec = line.split("\t")
            rows.append(GoldenRow(name, bytes.fromhex(hex_frame), json.loads(spec)))
    return rows


def load_capture(path: Path) -> list[tuple[str, int, bytes]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            direction, conn, hex_frame = line.split("\t")
            out.append((direction, int(conn), bytes.fromhex(hex_frame)))
    return out
