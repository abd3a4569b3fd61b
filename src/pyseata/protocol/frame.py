"""Protocol v1 frames (PROTOCOL.md section 1), sans-IO.

:func:`encode_frame` turns a :class:`Frame` into bytes. :class:`FrameDecoder` is fed bytes in any
chunking and returns whole frames; it checks the announced length against a maximum *before*
buffering the body, so a peer cannot make us allocate what it claims.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from pyseata.errors import FrameTooLargeError, LocalProtocolError, ProtocolError, RemoteProtocolError
from pyseata.protocol.codec import _FAST_DECODERS, _FAST_ENCODERS, DEFAULT_CODES, FAST_ERRORS, decode_body, encode_body
from pyseata.protocol.compress import compress, decompress
from pyseata.protocol.enums import CompressorType, ExceptionCodeTable, MessageType, SerializerType
from pyseata.protocol.messages import HeartbeatMessage, Message

__all__ = [
    "HEADER",
    "HEAD_LENGTH",
    "MAGIC",
    "MAX_FRAME_LENGTH",
    "VERSION",
    "Frame",
    "FrameDecoder",
    "decode_head_map",
    "encode_frame",
    "encode_head_map",
    "encode_message",
    "encode_plain",
]

MAGIC: Final = b"\xda\xda"
VERSION: Final = 1
HEAD_LENGTH: Final = 16
MAX_FRAME_LENGTH: Final = 8 * 1024 * 1024  # Seata's ProtocolConstants.MAX_FRAME_LENGTH

# magic(2) version(1) fullLength(4) headLength(2) type(1) codec(1) compressor(1) requestId(4)
HEADER: Final = struct.Struct(">2sBiHBBBi")
# The same header with the magic as an integer: no bytes object per frame on the hot paths.
_HEADER_INT = struct.Struct(">HBiHBBBi")
_MAGIC_INT = 0xDADA
_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")

_EMPTY_MAP: Mapping[str | None, str | None] = MappingProxyType({})
_HEARTBEATS = {
    MessageType.HEARTBEAT_REQUEST: HeartbeatMessage(ping=True),
    MessageType.HEARTBEAT_RESPONSE: HeartbeatMessage(ping=False),
}
_MESSAGE_TYPES = {int(t): t for t in MessageType}
_COMPRESSORS = {int(c): c for c in CompressorType}
_PREFIX = MAGIC + bytes([VERSION])
_SEATA = SerializerType.SEATA
_NO_COMPRESSION = CompressorType.NONE
_RESPONSE = MessageType.RESPONSE


@dataclass(frozen=True, slots=True)
class Frame:
    """One protocol v1 frame: Seata's ``RpcMessage``.

    ``head_map`` keeps ``None`` and ``""`` apart, as the wire does. For heartbeat frames ``body``
    is a :class:`HeartbeatMessage` derived from ``message_type``; nothing is on the wire.
    """

    message_type: MessageType
    request_id: int
    body: Message
    codec: int = SerializerType.SEATA
    compressor: CompressorType = CompressorType.NONE
    head_map: Mapping[str | None, str | None] = field(default_factory=lambda: _EMPTY_MAP)

    @classmethod
    def ping(cls, request_id: int) -> Frame:
        return cls(MessageType.HEARTBEAT_REQUEST, request_id, _HEARTBEATS[MessageType.HEARTBEAT_REQUEST])

    @classmethod
    def pong(cls, request_id: int, codec: int = SerializerType.SEATA) -> Frame:
        pong = _HEARTBEATS[MessageType.HEARTBEAT_RESPONSE]
        return cls(MessageType.HEARTBEAT_RESPONSE, request_id, pong, codec)

    @property
    def is_heartbeat(self) -> bool:
        return self.message_type in _HEARTBEATS

    def __repr__(self) -> str:
        extra = ""
        if self.compressor != CompressorType.NONE:
            extra += f", compressor={self.compressor.name}"
        if self.head_map:
            extra += f", head_map={dict(self.head_map)!r}"
        return f"Frame({self.message_type.name}, id={self.request_id}, {self.body!r}{extra})"


class _FrameBuilder:
    """Frame's slots, without the frozen dataclass's ``__setattr__``: filled by plain attribute
    stores, then turned into a :class:`Frame` by a ``__class__`` assignment (the two layouts are
    the same). Decoding makes one frame per request, and this costs 40 % less than going through
    the slot descriptors as Frame's own ``__init__`` does."""

    __slots__ = Frame.__slots__

    def __init__(  # noqa: PLR0917 - positional like Frame(...), on the hot path
        self, message_type: MessageType, request_id: int, body: Message, codec: int, compressor: CompressorType,
        head_map: Mapping[str | None, str | None],
    ) -> None:
        self.message_type = message_type
        self.request_id = request_id
        self.body = body
        self.codec = codec
        self.compressor = compressor
        self.head_map = head_map


def _make_frame(  # noqa: PLR0917 - positional like Frame(...), on the hot path
    message_type: MessageType, request_id: int, body: Message, codec: int, compressor: CompressorType,
    head_map: Mapping[str | None, str | None],
) -> Frame:
    """``Frame(...)`` for the decoder, without the frozen dataclass's ``__init__``."""
    frame: Any = _FrameBuilder(message_type, request_id, body, codec, compressor, head_map)
    frame.__class__ = Frame
    return cast(Frame, frame)


# --- head map (PROTOCOL.md 1.6) ---------------------------------------------------------------


def _head_str(value: str | None) -> bytes:
    if value is None:
        return b"\xff\xff"
    data = value.encode("utf-8")
    if len(data) > 0x7FFF:
        raise LocalProtocolError(f"head map string of {len(data)} bytes exceeds 32767")
    return _I16.pack(len(data)) + data


def encode_head_map(head_map: Mapping[str | None, str | None]) -> bytes:
    """Entries with a ``None`` key are skipped, as Java does."""
    return b"".join(_head_str(k) + _head_str(v) for k, v in head_map.items() if k is not None)


def decode_head_map(data: bytes, base: int = 0) -> dict[str | None, str | None]:
    """Reads (key, value) string pairs until ``data`` is used up. ``base`` offsets error positions."""
    result: dict[str | None, str | None] = {}
    pos, end = 0, len(data)
    while pos < end:
        pair: list[str | None] = []
        for _ in range(2):
            if pos + 2 > end:
                raise RemoteProtocolError("head map ends inside a string length", offset=base + pos)
            (n,) = _I16.unpack_from(data, pos)
            pos += 2
            if n < 0:
                pair.append(None)
                continue
            if pos + n > end:
                raise RemoteProtocolError(
                    f"head map string of {n} bytes overruns the head", offset=base + pos
                )
            try:
                pair.append(data[pos : pos + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise RemoteProtocolError("head map string is not UTF-8", offset=base + pos) from None
            pos += n
        result[pair[0]] = pair[1]
    return result


# --- encoding ---------------------------------------------------------------------------------


def encode_frame(frame: Frame, codes: ExceptionCodeTable = DEFAULT_CODES) -> bytes:
    """Encodes a whole frame, compressing the body with the frame's compressor."""
    return encode_message(
        frame.message_type, frame.request_id, frame.body, frame.codec, frame.compressor, frame.head_map, codes
    )


def encode_message(  # noqa: PLR0917 - positional like Frame(...), on the hot path
    message_type: int,
    request_id: int,
    body: Message | None,
    codec: int = SerializerType.SEATA,
    compressor: int = CompressorType.NONE,
    head_map: Mapping[str | None, str | None] | None = None,
    codes: ExceptionCodeTable = DEFAULT_CODES,
) -> bytes:
    """:func:`encode_frame` from the frame's fields, without building a :class:`Frame` (the RPC
    layer's send path). ``body`` is ignored for heartbeats."""
    head = encode_head_map(head_map) if head_map else b""
    if message_type in _HEARTBEATS:
        payload = b""
    else:
        if codec != SerializerType.SEATA:
            raise LocalProtocolError(f"codec {codec} is not supported; pyseata speaks the seata codec (1)")
        if body is None:
            raise LocalProtocolError(f"a {MessageType(message_type).name} frame needs a body")
        payload = encode_body(body, codes)
        if compressor != CompressorType.NONE:
            payload = compress(CompressorType(compressor), payload)
    head_length = HEAD_LENGTH + len(head)
    if head_length > 0xFFFF:
        raise LocalProtocolError(f"head map of {len(head)} bytes does not fit the 16-bit head length")
    try:
        header = HEADER.pack(
            MAGIC, VERSION, head_length + len(payload), head_length,
            message_type, codec, compressor, request_id,
        )
    except struct.error:
        raise LocalProtocolError(
            f"frame fields out of range (request id {request_id}, codec {codec})"
        ) from None
    return header + head + payload if head else header + payload


def encode_plain(message_type: int, request_id: int, body: Message, codes: ExceptionCodeTable = DEFAULT_CODES) -> bytes:
    """:func:`encode_message` of the frames that make up nearly all traffic: a request, oneway or
    response with the seata codec, no compression and no head map. Anything the compiled body
    encoders leave to the generic path goes through :func:`encode_message`, errors included."""
    encode = _FAST_ENCODERS.get(body.__class__)
    if encode is not None:
        try:
            payload = encode(body, codes)
            header = _HEADER_INT.pack(_MAGIC_INT, VERSION, 16 + len(payload), 16, message_type, 1, 0, request_id)
        except Exception:  # the generic path below decides, and reports errors exactly
            pass
        else:
            return header + payload
    return encode_message(message_type, request_id, body, _SEATA, _NO_COMPRESSION, None, codes)


# --- decoding ---------------------------------------------------------------------------------


class FrameDecoder:
    """Incremental frame decoder: ``feed(bytes) -> list[Frame]``.

    Any malformed input raises :class:`RemoteProtocolError` (or its subclass
    :class:`FrameTooLargeError`); after that the decoder is unusable, because the byte stream can no
    longer be trusted to be in sync, and the connection should be closed.
    """

    __slots__ = ("_broken", "_buf", "_consumed", "codes", "max_frame_length")

    def __init__(
        self, max_frame_length: int = MAX_FRAME_LENGTH, codes: ExceptionCodeTable = DEFAULT_CODES
    ) -> None:
        if max_frame_length < HEAD_LENGTH:
            raise ValueError(f"max_frame_length must be at least {HEAD_LENGTH}")
        self.max_frame_length = max_frame_length
        self.codes = codes
        self._buf = bytearray()
        self._consumed = 0  # total bytes taken off the stream, for error offsets
        self._broken: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        return self._feed(data, False)  # type: ignore[return-value]

    def feed_lean(self, data: bytes | bytearray | memoryview) -> list[Frame | tuple[int, Message]]:
        """Like :meth:`feed`, but an ordinary response (no head map, no compression) comes as a
        ``(request_id, body)`` pair rather than a :class:`Frame`: all that a connection needs
        of it, and building the frame cost a tenth of a round trip."""
        return self._feed(data, True)

    def _feed(self, data: bytes | bytearray | memoryview, lean: bool) -> list[Frame | tuple[int, Message]]:
        if self._broken is not None:
            raise RemoteProtocolError(f"decoder already failed: {self._broken}")
        if data.__class__ is memoryview:
            data = bytes(data)  # the fast path below slices and decodes strings in place
        buf: bytes | bytearray | memoryview = self._buf
        if self._buf:
            self._buf += data
        else:
            buf = data  # the common case: whole frames in one read; no copy into the buffer
        frames: list[Frame | tuple[int, Message]] = []
        pos = 0
        size = len(buf)
        codes = self.codes
        max_length = self.max_frame_length
        try:
            while True:
                available = size - pos
                if available < HEAD_LENGTH:
                    if available:
                        self._check_start(buf, pos, available)
                    break
                magic, version, full_length, head_length, type_byte, codec, compressor, request_id = (
                    _HEADER_INT.unpack_from(buf, pos)
                )
                if magic != _MAGIC_INT or version != VERSION:
                    self._check_prefix(buf, pos, 3)
                if not HEAD_LENGTH <= full_length <= max_length:
                    self._check_length(full_length, pos)
                if available < full_length:
                    break
                end = pos + full_length
                # The ordinary frame (no head map, seata codec, no compression, not a heartbeat,
                # a body the compiled decoders know) is decoded here; everything else, errors
                # included, by _decode_frame.
                decode = (
                    _FAST_DECODERS.get(buf[pos + 16] << 8 | buf[pos + 17])
                    if head_length == HEAD_LENGTH and codec == 1 and compressor == 0 and type_byte <= 2
                    and full_length > 17
                    else None
                )  # fmt: skip
                if decode is None:
                    frames.append(self._decode_frame(buf, pos, full_length))
                else:
                    try:
                        body = decode(buf, pos + 18, codes, end)[0]
                    except FAST_ERRORS:
                        frames.append(self._decode_frame(buf, pos, full_length))
                    else:
                        if lean and type_byte == 1:
                            frames.append((request_id, body))
                        else:
                            frames.append(
                                _make_frame(
                                    _MESSAGE_TYPES[type_byte], request_id, body, _SEATA, _NO_COMPRESSION, _EMPTY_MAP
                                )
                            )
                pos = end
        except ProtocolError as exc:
            self._broken = exc
            raise
        finally:
            if buf is self._buf:
                if pos:
                    del self._buf[:pos]
            elif pos < size:
                self._buf += memoryview(buf)[pos:]
            self._consumed += pos
        return frames

    def _check_start(self, buf: bytes | bytearray | memoryview, pos: int, available: int) -> None:
        """Checks the start of a frame not yet whole: its prefix, and its length once that is in."""
        if buf[pos : pos + 3] != _PREFIX[:available]:
            self._check_prefix(buf, pos, available)
        if available >= 7:
            (full_length,) = _I32.unpack_from(buf, pos + 3)
            if not HEAD_LENGTH <= full_length <= self.max_frame_length:
                self._check_length(full_length, pos)

    def _check_prefix(self, buf: bytes | bytearray | memoryview, pos: int, available: int) -> None:
        # Reject garbage as soon as its first bytes arrive, not after waiting for a length.
        for i in range(min(available, 3)):
            expected = VERSION if i == 2 else 0xDA
            if buf[pos + i] != expected:
                what = "protocol version" if i == 2 else "magic"
                raise RemoteProtocolError(
                    f"bad {what} byte 0x{buf[pos + i]:02x} (expected 0x{expected:02x}); "
                    "the peer does not speak Seata protocol v1",
                    offset=self._consumed + pos + i,
                )

    def _check_length(self, full_length: int, pos: int) -> None:
        if full_length > self.max_frame_length:
            raise FrameTooLargeError(
                f"frame announces {full_length} bytes; the maximum is {self.max_frame_length}",
                offset=self._consumed + pos + 3,
            )
        if full_length < HEAD_LENGTH:
            raise RemoteProtocolError(
                f"frame length {full_length} is shorter than the 16-byte header",
                offset=self._consumed + pos + 3,
            )

    def _decode_frame(self, buf: bytes | bytearray | memoryview, pos: int, full_length: int) -> Frame:
        offset = self._consumed + pos  # position of the frame in the stream, for errors
        _, _, _, head_length, type_byte, codec, compressor_byte, request_id = HEADER.unpack_from(buf, pos)
        if not HEAD_LENGTH <= head_length <= full_length:
            raise RemoteProtocolError(
                f"head length {head_length} is outside 16..{full_length}", offset=offset + 7
            )
        message_type = _MESSAGE_TYPES.get(type_byte)
        if message_type is None:
            raise RemoteProtocolError(f"unknown message type {type_byte}", offset=offset + 9)
        compressor = _COMPRESSORS.get(compressor_byte)
        if compressor is None:
            raise RemoteProtocolError(f"unknown compressor {compressor_byte}", offset=offset + 11)
        head_map = (
            decode_head_map(bytes(buf[pos + HEAD_LENGTH : pos + head_length]), offset + HEAD_LENGTH)
            if head_length > HEAD_LENGTH
            else _EMPTY_MAP
        )
        heartbeat = _HEARTBEATS.get(message_type)
        if heartbeat is not None:  # Java never reads a heartbeat body
            return _make_frame(message_type, request_id, heartbeat, codec, compressor, head_map)
        if codec != SerializerType.SEATA:
            name = SerializerType(codec).name if codec in SerializerType._value2member_map_ else "unknown"
            raise RemoteProtocolError(
                f"codec {codec} ({name}) is not supported; configure the client with "
                "transport.serialization=seata",
                offset=offset + 10,
            )
        body_bytes = bytes(buf[pos + head_length : pos + full_length])
        if not body_bytes:
            raise RemoteProtocolError(f"{message_type.name} frame has no body", offset=offset + head_length)
        if compressor != CompressorType.NONE:
            body_bytes = decompress(compressor, body_bytes, max_size=self.max_frame_length)
        try:
            body = decode_body(body_bytes, self.codes)
        except RemoteProtocolError as exc:
            if exc.offset is None or compressor != CompressorType.NONE:
                raise
            # Report the position in the stream, not in the body.
            raise RemoteProtocolError(exc.reason, offset=offset + head_length + exc.offset) from None
        return _make_frame(message_type, request_id, body, codec, compressor, head_map)
