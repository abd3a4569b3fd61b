"""Human-readable rendering of frames, for people debugging a conversation."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum

from pyseata.protocol.enums import CompressorType, MessageType, SerializerType
from pyseata.protocol.frame import HEADER, Frame, FrameDecoder
from pyseata.protocol.messages import BatchResultMessage, MergedWarpMessage, MergeResultMessage, Message

__all__ = ["explain_bytes", "parse_hex"]


def parse_hex(text: str) -> bytes:
    """Accepts hex with spaces, newlines, colons or a ``0x`` prefix."""
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    return bytes.fromhex(cleaned)


def _value(value: object) -> str:
    if isinstance(value, Enum):
        return f"{value.name} ({int(value)})"  # type: ignore[call-overload]
    return repr(value)


def _body_lines(body: Message, indent: str) -> list[str]:
    lines = [f"{indent}{type(body).__name__} (type code {int(body.TYPE_CODE)})"]
    items: tuple[Message, ...] = ()
    ids: tuple[int, ...] | None = None
    if isinstance(body, MergedWarpMessage):
        items, ids = body.msgs, body.msg_ids
    elif isinstance(body, MergeResultMessage):
        items = body.msgs
    elif isinstance(body, BatchResultMessage):
        items, ids = body.result_messages, body.msg_ids
    else:
        width = max((len(f.name) for f in fields(body)), default=0)
        lines += [f"{indent}  {f.name:<{width}}  {_value(getattr(body, f.name))}" for f in fields(body)]
        return lines
    for i, item in enumerate(items):
        label = f"[{i}]" + (f" msgId={ids[i]}" if ids else "")
        lines.append(f"{indent}  {label}")
        lines += _body_lines(item, indent + "    ")
    return lines


def _header_lines(raw: bytes, frame: Frame) -> list[str]:
    _, version, full_length, head_length, _, codec, _, _ = HEADER.unpack_from(raw)
    codec_name = SerializerType(codec).name if codec in SerializerType._value2member_map_ else "?"
    return [
        f"  magic         {raw[:2].hex()}",
        f"  version       {version}",
        f"  full length   {full_length}",
        f"  head length   {head_length}",
        f"  message type  {MessageType(frame.message_type).name} ({int(frame.message_type)})",
        f"  codec         {codec_name} ({codec})",
        f"  compressor    {CompressorType(frame.compressor).name} ({int(frame.compressor)})",
        f"  request id    {frame.request_id}",
        f"  head map      {dict(frame.head_map)!r}",
    ]


def explain_bytes(data: bytes) -> str:
    """Explains every frame in ``data``. Raises RemoteProtocolError for bytes that do not decode,
    after explaining the frames before them."""
    decoder = FrameDecoder()
    out: list[str] = []
    pos = 0
    frames = decoder.feed(data)
    for n, frame in enumerate(frames, start=1):
        (length,) = HEADER.unpack_from(data, pos)[2:3]
        raw = data[pos : pos + length]
        out.append(f"frame {n} of {len(frames)} ({length} bytes)")
        out += _header_lines(raw, frame)
        if frame.is_heartbeat:
            out.append("  body          none (heartbeat " + ("PING)" if frame.body.ping else "PONG)"))  # type: ignore[attr-defined]
        else:
            out.append("  body")
            out += _body_lines(frame.body, "    ")
        pos += length
    if decoder.buffered:
        out.append(f"{decoder.buffered} trailing bytes do not make a whole frame")
    return "\n".join(out)
