"""Body compressors of Seata protocol v1 (PROTOCOL.md section 1.5), byte-compatible with Java.

Frame byte 11 names the compressor applied to the serialized body. :func:`compress` writes the
format Seata's Java ``*Util.compress`` writes: the same bytes for GZIP, DEFLATER and ZSTD, and
for ZIP all but the timestamp; BZIP2 and LZ4 streams that Java reads, whose compressed bits may
differ (as Java's own differ between its LZ4 implementations). :func:`decompress` reads what Java
writes and is built for untrusted input: its output never exceeds ``max_size`` and a bad body
raises :class:`~pyseata.errors.RemoteProtocolError` and nothing else.

LZ4 needs ``pip install 'pyseata[lz4]'`` and ZSTD ``pip install 'pyseata[zstd]'``; both
libraries are imported on first use. The optional ``xxhash`` package only speeds up LZ4.
"""

from __future__ import annotations

import bz2
import importlib
import struct
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from pyseata.errors import CompressorUnavailableError, LocalProtocolError, RemoteProtocolError
from pyseata.protocol.enums import CompressorType

__all__ = ["compress", "decompress", "is_available"]


# --- errors -------------------------------------------------------------------------------------


def _malformed(name: str, what: object, offset: int | None = None) -> RemoteProtocolError:
    return RemoteProtocolError(f"{name} body is malformed: {what}", offset=offset)


def _truncated(name: str, offset: int | None = None) -> RemoteProtocolError:
    return RemoteProtocolError(f"{name} body is truncated", offset=offset)


def _too_big(name: str, max_size: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"{name}: decompressed body exceeds {max_size} bytes")


def _trailing(name: str, count: int, offset: int | None = None) -> RemoteProtocolError:
    return RemoteProtocolError(f"{name} body has {count} bytes after the end of its data", offset=offset)


def _require(module: str, extra: str, name: str) -> Any:
    """Import an optional compression library, or say which pip command installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.partition(".")[0]
        raise CompressorUnavailableError(
            f"the {name} compressor needs the optional package {package!r}; "
            f"install it with: pip install 'pyseata[{extra}]'"
        ) from exc


# --- shared helpers -----------------------------------------------------------------------------


class _StreamDecompressor(Protocol):
    """What bz2.BZ2Decompressor and lz4.frame.LZ4FrameDecompressor have in common."""

    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


def _drain(name: str, dec: _StreamDecompressor, data: bytes, max_size: int) -> bytes:
    """Run a max_length-aware decompressor over one whole stream, never past max_size + 1 bytes."""
    parts: list[bytes] = []
    total = 0
    pending = data
    while True:
        out = dec.decompress(pending, max_size + 1 - total)  # always >= 1: 0 would mean "no limit"
        pending = b""
        total += len(out)
        if total > max_size:
            raise _too_big(name, max_size)
        parts.append(out)
        if dec.eof:
            break
        if dec.needs_input:
            raise _truncated(name)
    if dec.unused_data:
        raise _trailing(name, len(dec.unused_data))
    return b"".join(parts)


def _inflate(name: str, wbits: int, data: memoryview, budget: int, max_size: int) -> tuple[bytes, int]:
    """Inflate the deflate/zlib/gzip stream at the start of ``data``; return (output, bytes used).

    ``budget`` is what is left of ``max_size`` after earlier members or entries.
    """
    dec = zlib.decompressobj(wbits)
    parts: list[bytes] = []
    total = 0
    fed = 0
    piece = 512
    while not dec.eof:
        if fed >= len(data):
            raise _truncated(name)
        # Pieces of growing size: unused_data copies what follows the stream, and feeding it all at
        # once would make a body of many tiny members or entries cost quadratic time.
        chunk = data[fed : fed + piece]
        fed += len(chunk)
        piece *= 2
        # zlib stops short of a piece's end only when max_length is reached, which raises below.
        out = dec.decompress(chunk, budget + 1 - total)
        total += len(out)
        if total > budget:
            raise _too_big(name, max_size)
        parts.append(out)
    return b"".join(parts), fed - len(dec.unused_data)


def _deflate_raw(data: bytes) -> bytes:
    # Java's Deflater(DEFAULT_COMPRESSION, nowrap=true): zlib level 6, memLevel 8, default strategy.
    enc = zlib.compressobj(6, zlib.DEFLATED, -15)
    return enc.compress(data) + enc.flush()


# --- NONE ---------------------------------------------------------------------------------------


def _none_compress(data: bytes) -> bytes:
    return bytes(data)


def _none_decompress(data: bytes, max_size: int) -> bytes:
    if len(data) > max_size:
        raise _too_big("NONE", max_size)
    return bytes(data)


# --- GZIP: java.util.zip.GZIPOutputStream -------------------------------------------------------

# Java's fixed header: no flags, mtime 0, XFL 0, OS 255. Python's gzip module writes other XFL/OS
# bytes depending on version and level, so the member is built by hand.
_GZIP_HEADER = bytes.fromhex("1f8b08000000000000ff")
_GZIP_TRAILER = struct.Struct("<II")


def _gzip_compress(data: bytes) -> bytes:
    trailer = _GZIP_TRAILER.pack(zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return _GZIP_HEADER + _deflate_raw(data) + trailer


def _gzip_decompress(data: bytes, max_size: int) -> bytes:
    # GZIPInputStream reads concatenated members, so we do too; anything else after one is an error.
    view = memoryview(data)
    parts: list[bytes] = []
    total = 0
    pos = 0
    while True:
        out, used = _inflate("GZIP", 31, view[pos:], max_size - total, max_size)
        parts.append(out)
        total += len(out)
        pos += used
        if pos == len(data):
            return b"".join(parts)


# --- ZIP: java.util.zip.ZipOutputStream, one entry "zip" ----------------------------------------

_ZIP_LOC = struct.Struct("<IHHHIIIIHH")  # local file header: signature .. extra length (30 bytes)
_ZIP_LOC_SIG = 0x04034B50
_ZIP_EXT_SIG = 0x08074B50
_ZIP_EXT = struct.Struct("<III")  # data descriptor after its optional signature: crc, csize, size
_ZIP_FLAGS = 0x0808  # bit 3: sizes in a data descriptor; bit 11: UTF-8 name (both set by Java)
# Java stamps the wall clock (DOS format) here; no reader uses it, and a fixed 1980-01-01 00:00
# keeps our output reproducible.
_ZIP_DOS_TIME = 0x00210000
# Seata's ZipUtil returns the buffer before closing the stream, so Java's bytes end with the data
# descriptor: no central directory. Java's ZipInputStream reads local headers only and accepts it.
_ZIP_DIRECTORY_SIGS = (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06")


def _zip_compress(data: bytes) -> bytes:
    deflated = _deflate_raw(data)
    name = b"zip"
    header = _ZIP_LOC.pack(_ZIP_LOC_SIG, 20, _ZIP_FLAGS, 8, _ZIP_DOS_TIME, 0, 0, 0, len(name), 0)
    descriptor = struct.pack("<I", _ZIP_EXT_SIG) + _ZIP_EXT.pack(zlib.crc32(data), len(deflated), len(data))
    return header + name + deflated + descriptor


def _zip_decompress(data: bytes, max_size: int) -> bytes:
    """Join the data of every entry, reading local headers in order as ZipInputStream does."""
    parts: list[bytes] = []
    total = 0
    pos = 0
    while data[pos : pos + 4] == b"PK\x03\x04":
        entry = pos
        if len(data) - pos < _ZIP_LOC.size:
            raise _truncated("ZIP", entry)
        _, _, flag, method, _, crc, csize, size, name_len, extra_len = _ZIP_LOC.unpack_from(data, pos)
        pos += _ZIP_LOC.size + name_len + extra_len
        if pos > len(data):
            raise _truncated("ZIP", entry)
        if flag & 1:
            raise _malformed("ZIP", "encrypted entries are not supported", entry)
        if method == 8:
            out, used = _inflate("ZIP", -15, memoryview(data)[pos:], max_size - total, max_size)
            pos += used
            if flag & 8:
                if data[pos : pos + 4] == b"PK\x07\x08":  # the descriptor signature is optional
                    pos += 4
                if len(data) - pos < _ZIP_EXT.size:
                    raise _truncated("ZIP", pos)
                crc, csize, size = _ZIP_EXT.unpack_from(data, pos)
                pos += _ZIP_EXT.size
            if csize != used or size != len(out):
                raise _malformed("ZIP", "entry sizes do not match its data", entry)
        elif method == 0:
            if flag & 8 or csize != size:
                raise _malformed("ZIP", "stored entry without exact sizes", entry)
            if size > max_size - total:
                raise _too_big("ZIP", max_size)
            if len(data) - pos < size:
                raise _truncated("ZIP", pos)
            out = data[pos : pos + size]
            pos += size
        else:
            raise _malformed("ZIP", f"unsupported compression method {method}", entry)
        if zlib.crc32(out) != crc:
            raise _malformed("ZIP", "entry CRC-32 mismatch", entry)
        parts.append(out)
        total += len(out)
    if not parts:
        raise _malformed("ZIP", "no local file header", pos)
    if pos < len(data) and data[pos : pos + 4] not in _ZIP_DIRECTORY_SIGS:
        raise _trailing("ZIP", len(data) - pos, pos)
    return b"".join(parts)


# --- BZIP2: Ant CBZip2OutputStream ---------------------------------------------------------------

# Ant leaves the "BZ" magic to the caller and Seata never writes it: the body starts at "h9".


def _bzip2_compress(data: bytes) -> bytes:
    return bz2.compress(data, 9)[2:]


def _bzip2_decompress(data: bytes, max_size: int) -> bytes:
    return _drain("BZIP2", bz2.BZ2Decompressor(), b"BZ" + data, max_size)


# --- DEFLATER: java.util.zip.Deflater() -----------------------------------------------------------


def _deflater_compress(data: bytes) -> bytes:
    return zlib.compress(data, 6)  # Deflater() = level 6 with the zlib header


def _deflater_decompress(data: bytes, max_size: int) -> bytes:
    out, used = _inflate("DEFLATER", 15, memoryview(data), max_size, max_size)
    if used < len(data):
        raise _trailing("DEFLATER", len(data) - used, used)
    return out


# --- LZ4: lz4-java LZ4BlockOutputStream(out, 1024, fastCompressor) ------------------------------

# Each block: magic, token (method | level), LE int32 compressed length, LE int32 original length,
# LE int32 checksum, then the payload; an empty RAW block ends the stream.
_LZ4_HEADER = struct.Struct("<8sBIII")
_LZ4_MAGIC = b"LZ4Block"
_LZ4_RAW = 0x10
_LZ4_COMPRESSED = 0x20
_LZ4_BLOCK_SIZE = 1024  # Seata's Lz4Util
_LZ4_LEVEL = 0  # lz4-java: ceil(log2(block size)) - 10, floored at 0
_LZ4_SEED = 0x9747B28C
_LZ4_CHECK_MASK = 0x0FFFFFFF  # StreamingXXHash32.asChecksum() keeps 28 bits
# Seata after PR #7829 (Dec 2025) writes the standard LZ4 frame format instead; accept it on input.
_LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"

_P1, _P2, _P3, _P4, _P5 = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1
_M32 = 0xFFFFFFFF


def _xxh32_pure(data: bytes, seed: int) -> int:
    """XXH32, for when the ``xxhash`` package is absent (about 0.1 s per MiB)."""
    n = len(data)
    if n >= 16:
        v1 = (seed + _P1 + _P2) & _M32
        v2 = (seed + _P2) & _M32
        v3 = seed & _M32
        v4 = (seed - _P1) & _M32
        stripes = n // 16
        words = struct.unpack_from(f"<{stripes * 4}I", data)
        for i in range(0, stripes * 4, 4):
            v1 = (v1 + words[i] * _P2) & _M32
            v1 = (((v1 << 13) | (v1 >> 19)) * _P1) & _M32
            v2 = (v2 + words[i + 1] * _P2) & _M32
            v2 = (((v2 << 13) | (v2 >> 19)) * _P1) & _M32
            v3 = (v3 + words[i + 2] * _P2) & _M32
            v3 = (((v3 << 13) | (v3 >> 19)) * _P1) & _M32
            v4 = (v4 + words[i + 3] * _P2) & _M32
            v4 = (((v4 << 13) | (v4 >> 19)) * _P1) & _M32
        h = ((v1 << 1) | (v1 >> 31)) + ((v2 << 7) | (v2 >> 25))
        h += ((v3 << 12) | (v3 >> 20)) + ((v4 << 18) | (v4 >> 14))
        pos = stripes * 16
    else:
        h = seed + _P5
        pos = 0
    h = (h + n) & _M32
    while pos + 4 <= n:
        h = (h + int.from_bytes(data[pos : pos + 4], "little") * _P3) & _M32
        h = (((h << 17) | (h >> 15)) * _P4) & _M32
        pos += 4
    while pos < n:
        h = (h + data[pos] * _P5) & _M32
        h = (((h << 11) | (h >> 21)) * _P1) & _M32
        pos += 1
    h = ((h ^ (h >> 15)) * _P2) & _M32
    h = ((h ^ (h >> 13)) * _P3) & _M32
    return h ^ (h >> 16)


def _load_xxh32() -> Callable[[bytes, int], int]:
    try:
        fast: Callable[[bytes, int], int] = importlib.import_module("xxhash").xxh32_intdigest
    except ImportError:
        return _xxh32_pure
    return fast


_xxh32 = _load_xxh32()


def _lz4_check(block: bytes) -> int:
    return _xxh32(block, _LZ4_SEED) & _LZ4_CHECK_MASK


def _lz4_compress(data: bytes) -> bytes:
    lz4_block = _require("lz4.block", "lz4", "LZ4")
    parts: list[bytes] = []
    for start in range(0, len(data), _LZ4_BLOCK_SIZE):
        block = bytes(data[start : start + _LZ4_BLOCK_SIZE])
        packed: bytes = lz4_block.compress(block, mode="default", store_size=False)
        if len(packed) >= len(block):  # lz4-java stores the block as is when LZ4 does not shrink it
            method, packed = _LZ4_RAW, block
        else:
            method = _LZ4_COMPRESSED
        check = _lz4_check(block)
        parts.append(_LZ4_HEADER.pack(_LZ4_MAGIC, method | _LZ4_LEVEL, len(packed), len(block), check))
        parts.append(packed)
    parts.append(_LZ4_HEADER.pack(_LZ4_MAGIC, _LZ4_RAW | _LZ4_LEVEL, 0, 0, 0))
    return b"".join(parts)


def _lz4_decompress(data: bytes, max_size: int) -> bytes:
    lz4_block = _require("lz4.block", "lz4", "LZ4")
    if data[:4] == _LZ4_FRAME_MAGIC:
        lz4_frame = _require("lz4.frame", "lz4", "LZ4")
        try:
            return _drain("LZ4", lz4_frame.LZ4FrameDecompressor(), data, max_size)
        except RuntimeError as exc:  # python-lz4 reports bad frames as RuntimeError
            raise _malformed("LZ4", exc) from exc
    parts: list[bytes] = []
    total = 0
    pos = 0
    while True:
        header = pos
        if len(data) - pos < _LZ4_HEADER.size:
            raise _truncated("LZ4", header)
        magic, token, packed_len, size, check = _LZ4_HEADER.unpack_from(data, pos)
        pos += _LZ4_HEADER.size
        method = token & 0xF0
        # The same header checks as LZ4BlockInputStream.refill (unsigned reads make Java's "< 0" tests
        # fall into the upper bounds).
        if (
            magic != _LZ4_MAGIC
            or method not in (_LZ4_RAW, _LZ4_COMPRESSED)
            or size > 1 << (10 + (token & 0x0F))
            or (size == 0) != (packed_len == 0)
            or (method == _LZ4_RAW and size != packed_len)
        ):
            raise _malformed("LZ4", "bad block header", header)
        if size == 0:
            if check != 0:
                raise _malformed("LZ4", "bad end mark", header)
            break
        if size > max_size - total:  # before allocating anything for this block
            raise _too_big("LZ4", max_size)
        if len(data) - pos < packed_len:
            raise _truncated("LZ4", header)
        payload = data[pos : pos + packed_len]
        pos += packed_len
        if method == _LZ4_RAW:
            block = payload
        else:
            try:
                block = lz4_block.decompress(payload, uncompressed_size=size)
            except lz4_block.LZ4BlockError as exc:
                raise _malformed("LZ4", exc, header) from exc
            if len(block) != size:  # python-lz4 treats the size as a capacity, Java as exact
                raise _malformed("LZ4", "block shorter than its header says", header)
        if _lz4_check(block) != check:
            raise _malformed("LZ4", "block checksum mismatch", header)
        parts.append(block)
        total += size
    if pos < len(data):
        raise _trailing("LZ4", len(data) - pos, pos)
    return b"".join(parts)


# --- ZSTD: zstd-jni Zstd.compress -----------------------------------------------------------------

_ZSTD_LEVEL = 3  # zstd-jni's Zstd.compress(byte[]) level
_ZSTD_BLOCK_MAX = 128 * 1024  # most output one zstd block can produce
_ZSTD_SLACK = 256 * 1024


def _zstd_compress(data: bytes) -> bytes:
    zstd = _require("zstandard", "zstd", "ZSTD")
    # One frame with the content size and no checksum, as zstd-jni writes it. Seata's ZstdUtil
    # (up to at least 2.3) sizes its output from that content size, so it must be present.
    enc = zstd.ZstdCompressor(level=_ZSTD_LEVEL, write_content_size=True, write_checksum=False)
    out: bytes = enc.compress(data)
    return out


def _zstd_decompress(data: bytes, max_size: int) -> bytes:
    zstd = _require("zstandard", "zstd", "ZSTD")
    try:
        declared: int = zstd.frame_content_size(data)  # -1 when the header does not say
        if declared > max_size:
            raise _too_big("ZSTD", max_size)
        # Frames of unknown size may ask for a window up to 128 MiB; a window beyond the largest
        # output we accept is never needed, so refuse it.
        window_log = min(27, max(23, max_size.bit_length()))
        dctx = zstd.ZstdDecompressor(max_window_size=1 << window_log)
        if declared > 0:
            # One-shot decoding writes into a buffer of exactly the declared size (<= max_size).
            out: bytes = dctx.decompress(data, allow_extra_data=False)
            return out
        return _zstd_stream(dctx.decompressobj(), data, max_size)
    except zstd.ZstdError as exc:
        raise _malformed("ZSTD", exc) from exc


def _zstd_stream(dobj: Any, data: bytes, max_size: int) -> bytes:
    """Decode a frame of unknown (or zero) declared size, feeding input in bounded steps.

    zstandard's decompressobj has no output limit, but a zstd block needs at least 4 input bytes
    and yields at most 128 KiB, so each step's input is sized to stay within the budget plus slack.
    """
    parts: list[bytes] = []
    total = 0
    pos = 0
    while not dobj.eof:
        if pos >= len(data):
            raise _truncated("ZSTD")
        step = 4 * max(1, (max_size - total + _ZSTD_SLACK) // _ZSTD_BLOCK_MAX)
        out: bytes = dobj.decompress(data[pos : pos + step])
        pos += step
        total += len(out)
        if total > max_size:
            raise _too_big("ZSTD", max_size)
        parts.append(out)
    extra = len(dobj.unused_data) + max(0, len(data) - pos)
    if extra:
        raise _trailing("ZSTD", extra)
    return b"".join(parts)


# --- SEVENZ and the table -------------------------------------------------------------------------

_UNSUPPORTED = {
    CompressorType.SEVENZ: (
        "the SEVENZ (7z) compressor is not supported: Seata removed it in 1.8.0; "
        "use another compressor such as GZIP or ZSTD"
    ),
}


class _Codec(NamedTuple):
    name: str
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes, int], bytes]
    module: str | None  # optional library it needs, checked by is_available


_CODECS: dict[int, _Codec] = {
    CompressorType.NONE: _Codec("NONE", _none_compress, _none_decompress, None),
    CompressorType.GZIP: _Codec("GZIP", _gzip_compress, _gzip_decompress, None),
    CompressorType.ZIP: _Codec("ZIP", _zip_compress, _zip_decompress, None),
    CompressorType.BZIP2: _Codec("BZIP2", _bzip2_compress, _bzip2_decompress, None),
    CompressorType.LZ4: _Codec("LZ4", _lz4_compress, _lz4_decompress, "lz4.block"),
    CompressorType.DEFLATER: _Codec("DEFLATER", _deflater_compress, _deflater_decompress, None),
    CompressorType.ZSTD: _Codec("ZSTD", _zstd_compress, _zstd_decompress, "zstandard"),
}

# What the standard library and our own parsing raise on bad input; the optional libraries'
# errors are translated where they are called.
_DECODE_ERRORS = (
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    struct.error,
    IndexError,
    OverflowError,
    MemoryError,
)


# --- API ------------------------------------------------------------------------------------------


def compress(kind: CompressorType, data: bytes) -> bytes:
    """Compress a serialized body into the format Seata's Java compressor ``kind`` writes.

    Raises :class:`LocalProtocolError` for SEVENZ or an unknown kind, and
    :class:`CompressorUnavailableError` when LZ4/ZSTD's optional library is missing.
    """
    codec = _CODECS.get(kind)
    if codec is None:
        raise LocalProtocolError(_UNSUPPORTED.get(kind, f"unknown compressor {kind!r}"))
    return codec.compress(data)


def decompress(kind: CompressorType, data: bytes, *, max_size: int) -> bytes:
    """Decompress a body from a peer, producing at most ``max_size`` bytes.

    Raises :class:`RemoteProtocolError` for any malformed body, SEVENZ, an unknown kind, or output
    above ``max_size``; :class:`CompressorUnavailableError` when LZ4/ZSTD's library is missing.
    """
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    codec = _CODECS.get(kind)
    if codec is None:
        raise RemoteProtocolError(_UNSUPPORTED.get(kind, f"unknown compressor {kind!r}"))
    try:
        return codec.decompress(data, max_size)
    except _DECODE_ERRORS as exc:
        raise _malformed(codec.name, exc) from exc


def is_available(kind: CompressorType) -> bool:
    """Whether :func:`compress` and :func:`decompress` can handle ``kind`` in this environment."""
    codec = _CODECS.get(kind)
    if codec is None:
        return False
    if codec.module is None:
        return True
    try:
        importlib.import_module(codec.module)
    except ImportError:
        return False
    return True
