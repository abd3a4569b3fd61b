"""Body compressors: Java's bytes, round trips, and hostile input (PROTOCOL.md section 1.5)."""

from __future__ import annotations

import bz2
import io
import os
import random
import struct
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyseata.errors import CompressorUnavailableError, LocalProtocolError, RemoteProtocolError
from pyseata.protocol import compress as compress_module
from pyseata.protocol.compress import compress, decompress, is_available
from pyseata.protocol.enums import CompressorType

K = CompressorType
SUPPORTED = [K.NONE, K.GZIP, K.ZIP, K.BZIP2, K.LZ4, K.DEFLATER, K.ZSTD]
COMPRESSING = [k for k in SUPPORTED if k != K.NONE]
MiB = 1 << 20
CONFORMANCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


def needs(kind: CompressorType) -> None:
    if not is_available(kind):
        pytest.skip(f"{kind.name} needs its optional library (pip install 'pyseata[all]')")


def _rnd(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


SAMPLES = {
    "empty": b"",
    "small": b"GlobalBeginRequest timeout=60000 name=test",
    "random_1mib": _rnd(1, MiB),
    "repetitive_1mib": (b"xid=127.0.0.1:8091:2000042 branch=AT lock=order:1,2,3;" * 20000)[:MiB],
}


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("kind", SUPPORTED, ids=lambda k: k.name)
def test_round_trip(kind: CompressorType, name: str) -> None:
    needs(kind)
    data = SAMPLES[name]
    packed = compress(kind, data)
    assert decompress(kind, packed, max_size=len(data)) == data
    if data:
        with pytest.raises(RemoteProtocolError, match=f"exceeds {len(data) - 1} bytes"):
            decompress(kind, packed, max_size=len(data) - 1)


@pytest.mark.parametrize("kind", COMPRESSING, ids=lambda k: k.name)
def test_repetitive_data_shrinks(kind: CompressorType) -> None:
    needs(kind)
    # LZ4Block pays a 21-byte header on every 1 KiB block, so it shrinks the least.
    assert len(compress(kind, SAMPLES["repetitive_1mib"])) < MiB // 8


def test_availability_of_builtin_kinds() -> None:
    for kind in (K.NONE, K.GZIP, K.ZIP, K.BZIP2, K.DEFLATER):
        assert is_available(kind)
    assert not is_available(K.SEVENZ)


# --- Java golden frames (GZIP) ------------------------------------------------------------------


def _conformance_dir() -> Path:
    if not CONFORMANCE_DIR.is_dir():
        reason = f"conformance data not found at {CONFORMANCE_DIR} (../shared/conformance)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip")
        pytest.skip(reason)
    return CONFORMANCE_DIR


def _bodies(path: Path) -> dict[str, bytes]:
    """Frame name -> body bytes after the 16-byte header and the head map."""
    bodies = {}
    for line in path.read_text().splitlines():
        name, frame_hex, _ = line.split("\t")
        frame = bytes.fromhex(frame_hex)
        (head_length,) = struct.unpack_from(">H", frame, 7)
        bodies[name] = frame[head_length:]
    return bodies


@pytest.mark.parametrize("file", ["golden-frames-2.3.0.tsv", "golden-frames-2.2.0.tsv"])
def test_gzip_matches_java_golden_frames(file: str) -> None:
    bodies = _bodies(_conformance_dir() / file)
    checked = 0
    for name, gz_body in bodies.items():
        if not name.endswith("/gzip"):
            continue
        plain = bodies[name.removesuffix("/gzip") + "/none"]
        if not plain:  # heartbeats carry no body, compressed or not
            assert gz_body == b"", name
            continue
        assert compress(K.GZIP, plain) == gz_body, name
        assert decompress(K.GZIP, gz_body, max_size=len(plain)) == plain, name
        checked += 1
    assert checked >= 30


# --- known vectors --------------------------------------------------------------------------------

HELLO_DEFLATE = bytes.fromhex("cb48cdc9c90700")  # raw deflate of b"hello" at level 6
HELLO_CRC_LE = bytes.fromhex("86a61036")  # CRC-32 of b"hello", little-endian


def test_gzip_vector() -> None:
    # GZIPOutputStream: fixed header (mtime 0, XFL 0, OS 255), raw deflate, CRC-32 and size LE.
    expected = bytes.fromhex("1f8b08000000000000ff") + HELLO_DEFLATE + HELLO_CRC_LE + b"\x05\0\0\0"
    assert compress(K.GZIP, b"hello") == expected


def test_deflater_vector() -> None:
    # Deflater(): zlib header 78 9c (level 6), deflate, Adler-32 big-endian.
    assert compress(K.DEFLATER, b"hello") == bytes.fromhex("789c") + HELLO_DEFLATE + bytes.fromhex("062c0215")


def test_zip_vector() -> None:
    # Seata's ZipUtil returns before ZipOutputStream.close(): local header, data, data descriptor,
    # and no central directory. Only the DOS time (bytes 10..13) differs from Java's.
    expected = (
        bytes.fromhex("504b0304 1400 0808 0800 00002100 00000000 00000000 00000000 0300 0000")
        + b"zip"
        + HELLO_DEFLATE
        + bytes.fromhex("504b0708")
        + HELLO_CRC_LE
        + bytes.fromhex("07000000 05000000")
    )
    assert compress(K.ZIP, b"hello") == expected


# Produced by JDK 17 running ZipUtil's exact calls on b"hello" (the wall clock is in bytes 10..13).
JAVA_ZIP_HELLO = bytes.fromhex(
    "504b03041400080808004531755d000000000000000000000000030000007a6970cb48cdc9c90700"
    "504b070886a610360700000005000000"
)


def test_zip_reads_java_output() -> None:
    assert decompress(K.ZIP, JAVA_ZIP_HELLO, max_size=5) == b"hello"
    assert compress(K.ZIP, b"hello")[14:] == JAVA_ZIP_HELLO[14:]


def test_zip_joins_every_entry_and_accepts_a_central_directory() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(zipfile.ZipInfo("a"), b"first,", compress_type=zipfile.ZIP_STORED)
        archive.writestr(zipfile.ZipInfo("b"), b"second" * 100, compress_type=zipfile.ZIP_DEFLATED)
    assert decompress(K.ZIP, buf.getvalue(), max_size=MiB) == b"first," + b"second" * 100


def test_bzip2_vectors() -> None:
    # Ant's CBZip2OutputStream starts at "h9" (no "BZ"); an empty stream is just the end-of-stream
    # magic 0x177245385090 and a zero combined CRC.
    assert compress(K.BZIP2, b"") == bytes.fromhex("6839 177245385090 00000000")
    assert compress(K.BZIP2, b"hello")[:4] == b"h91A"
    # Ant 1.10 compressed b"hello" with different Huffman bits than libbzip2; we read it all the same.
    ant_hello = bytes.fromhex(
        "68393141592653591931653d00000081000244a00030cd3419a68399c5dc914e1424064c594f40"
    )
    assert decompress(K.BZIP2, ant_hello, max_size=5) == b"hello"
    with pytest.raises(RemoteProtocolError):  # a standard .bz2 stream is not what Java sends
        decompress(K.BZIP2, bz2.compress(b"hello"), max_size=5)


def _lz4_header(token: int, packed: int, size: int, check: int) -> bytes:
    return b"LZ4Block" + struct.pack("<BIII", token, packed, size, check)


LZ4_END = _lz4_header(0x10, 0, 0, 0)


def test_lz4_vector_raw_block() -> None:
    # LZ4 would not shrink 5 bytes, so lz4-java stores them: token 0x10 (RAW | level 0 for 1 KiB
    # blocks), lengths 5 and 5, XXH32(seed 0x9747b28c) & 0x0FFFFFFF, the bytes, then the end mark.
    needs(K.LZ4)
    expected = _lz4_header(0x10, 5, 5, 0x0A41BFE3) + b"hello" + LZ4_END
    assert compress(K.LZ4, b"hello") == expected  # identical to lz4-java 1.8's output


def test_lz4_vector_compressed_block() -> None:
    # 100 x "a": one literal, a match at offset 1 of 4 + 15 + 75 bytes, then 5 closing literals.
    needs(K.LZ4)
    payload = bytes.fromhex("1f 61 0100 4b 50 6161616161")
    expected = _lz4_header(0x20, len(payload), 100, 0x063ACA8B) + payload + LZ4_END
    assert compress(K.LZ4, b"a" * 100) == expected  # identical to lz4-java 1.8's output


def test_lz4_blocks_are_1024_bytes() -> None:
    needs(K.LZ4)
    packed = compress(K.LZ4, _rnd(2, 2500))
    sizes = []
    pos = 0
    while pos < len(packed):
        _, _, length, size, _ = struct.unpack_from("<8sBIII", packed, pos)
        sizes.append(size)
        pos += 21 + length
    assert sizes == [1024, 1024, 452, 0]


def test_lz4_reads_java_output() -> None:
    # lz4-java 1.8 (JNI, liblz4 1.9.4) chose other matches than python-lz4 for this body.
    needs(K.LZ4)
    body = b"GlobalBeginRequest timeout=60000 name=test xid=127.0.0.1:8091:123456 "
    body += b"GlobalBeginRequest timeout=6000"
    java = bytes.fromhex(
        "4c5a34426c6f636b20500000006400000072adec0cf018476c6f62616c426567696e52657175657374"
        "2074696d656f75743d3630303030206e616d653d741800ff0b7869643d3132372e302e302e313a3830"
        "39313a31323334353620450007503d363030304c5a34426c6f636b10000000000000000000000000"
    )
    assert decompress(K.LZ4, java, max_size=len(body)) == body


def test_lz4_reads_the_frame_format_of_newer_seata() -> None:
    needs(K.LZ4)
    import lz4.frame

    # lz4-java LZ4FrameOutputStream (Seata's Lz4Util after PR #7829) on b"hello".
    java = bytes.fromhex("04224d186070730500008068656c6c6f00000000")
    assert decompress(K.LZ4, java, max_size=5) == b"hello"
    data = SAMPLES["repetitive_1mib"]
    assert decompress(K.LZ4, lz4.frame.compress(data), max_size=MiB) == data


def test_lz4_checksum_is_checked() -> None:
    needs(K.LZ4)
    packed = bytearray(compress(K.LZ4, b"hello"))
    packed[21] ^= 1  # first payload byte
    with pytest.raises(RemoteProtocolError, match="checksum"):
        decompress(K.LZ4, bytes(packed), max_size=5)


def test_xxh32_reference_values() -> None:
    xxh32 = compress_module._xxh32_pure
    assert xxh32(b"", 0) == 0x02CC5D05
    assert xxh32(b"", 0x9747B28C) == 0x8D3B42D8
    assert xxh32(b"abc", 0x9747B28C) == 0x4D4CB222
    assert xxh32(bytes(range(256)) * 4, 0x9747B28C) == 0x3433DFE5
    try:
        import xxhash  # type: ignore[import-not-found]
    except ImportError:
        return
    for n in (0, 1, 3, 4, 15, 16, 17, 31, 32, 33, 1000, 1024):
        data = _rnd(n, n)
        assert xxh32(data, 0x9747B28C) == xxhash.xxh32_intdigest(data, 0x9747B28C)


def test_zstd_vector() -> None:
    # zstd-jni Zstd.compress: one frame, content size 5 in the header, one raw block, no checksum
    # (byte for byte what zstd-jni 1.5.2 writes).
    needs(K.ZSTD)
    assert compress(K.ZSTD, b"hello") == bytes.fromhex("28b52ffd2005290000") + b"hello"


def test_zstd_frame_without_content_size() -> None:
    needs(K.ZSTD)
    import zstandard

    data = SAMPLES["repetitive_1mib"]
    stream = zstandard.ZstdCompressor().compressobj()
    frame = stream.compress(data) + stream.flush()
    assert zstandard.frame_content_size(frame) == -1
    assert decompress(K.ZSTD, frame, max_size=MiB) == data
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decompress(K.ZSTD, frame, max_size=MiB - 1)


def test_gzip_reads_concatenated_members() -> None:
    assert decompress(K.GZIP, compress(K.GZIP, b"ab") + compress(K.GZIP, b"cd"), max_size=4) == b"abcd"
    with pytest.raises(RemoteProtocolError, match="exceeds 3"):
        decompress(K.GZIP, compress(K.GZIP, b"ab") + compress(K.GZIP, b"cd"), max_size=3)


def test_none_is_identity_with_a_limit() -> None:
    assert compress(K.NONE, b"abc") == b"abc"
    assert decompress(K.NONE, b"abc", max_size=3) == b"abc"
    with pytest.raises(RemoteProtocolError, match="exceeds 2 bytes"):
        decompress(K.NONE, b"abc", max_size=2)


def test_sevenz_is_refused_with_the_reason() -> None:
    with pytest.raises(LocalProtocolError, match=r"removed it in 1\.8"):
        compress(K.SEVENZ, b"x")
    with pytest.raises(RemoteProtocolError, match=r"removed it in 1\.8"):
        decompress(K.SEVENZ, b"x", max_size=10)


def test_unknown_kind_and_bad_limit() -> None:
    with pytest.raises(LocalProtocolError, match="unknown compressor"):
        compress(99, b"x")  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError, match="unknown compressor"):
        decompress(99, b"x", max_size=10)  # type: ignore[arg-type]
    assert not is_available(99)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_size"):
        decompress(K.GZIP, b"", max_size=-1)


# --- bombs ----------------------------------------------------------------------------------------

BOMB = 100 * MiB
ZEROS = bytes(MiB)


@pytest.fixture(scope="module")
def bombs() -> dict[str, tuple[CompressorType, bytes]]:
    """Bodies that expand to 100 MiB, built a MiB at a time to keep the test's own memory small."""
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = b"".join(raw.compress(ZEROS) for _ in range(100)) + raw.flush()
    crc, adler = 0, 1
    for _ in range(100):
        crc = zlib.crc32(ZEROS, crc)
        adler = zlib.adler32(ZEROS, adler)
    gzip = bytes.fromhex("1f8b08000000000000ff") + deflated + struct.pack("<II", crc, BOMB & 0xFFFFFFFF)
    zip_ = (
        struct.pack("<IHHHIIIIHH", 0x04034B50, 20, 0x0808, 8, 0, 0, 0, 0, 3, 0)
        + b"zip"
        + deflated
        + struct.pack("<IIII", 0x08074B50, crc, len(deflated), BOMB)
    )
    bzip = bz2.BZ2Compressor(9)
    bzipped = b"".join(bzip.compress(ZEROS) for _ in range(100)) + bzip.flush()
    result = {
        "gzip": (K.GZIP, gzip),
        "deflater": (K.DEFLATER, b"\x78\x9c" + deflated + struct.pack(">I", adler)),
        "zip": (K.ZIP, zip_),
        "bzip2": (K.BZIP2, bzipped[2:]),
    }
    if is_available(K.ZSTD):
        import zstandard

        for name, size in (("zstd_streamed", -1), ("zstd_sized", BOMB)):  # without/with content size
            stream = zstandard.ZstdCompressor().compressobj(size=size)
            result[name] = (K.ZSTD, b"".join(stream.compress(ZEROS) for _ in range(100)) + stream.flush())
    if is_available(K.LZ4):
        import lz4.frame

        one_block = compress(K.LZ4, bytes(1024))[: -len(LZ4_END)]
        result["lz4_blocks"] = (K.LZ4, one_block * (BOMB // 1024) + LZ4_END)
        # One block declaring 32 MiB (token level 15): refused before anything is allocated.
        result["lz4_big_block"] = (K.LZ4, _lz4_header(0x2F, 20, 32 * MiB, 0) + bytes(20) + LZ4_END)
        frames = lz4.frame.LZ4FrameCompressor()
        result["lz4_frame"] = (
            K.LZ4,
            frames.begin() + b"".join(frames.compress(ZEROS) for _ in range(100)) + frames.flush(),
        )
    return result


BOMB_NAMES = [
    "gzip",
    "deflater",
    "zip",
    "bzip2",
    "zstd_streamed",
    "zstd_sized",
    "lz4_blocks",
    "lz4_big_block",
    "lz4_frame",
]


@pytest.mark.parametrize("name", BOMB_NAMES)
def test_bomb_is_stopped_at_max_size(name: str, bombs: dict[str, tuple[CompressorType, bytes]]) -> None:
    if name not in bombs:
        pytest.skip(f"{name} needs its optional library")
    kind, body = bombs[name]
    assert len(body) < 4 * MiB
    started = time.monotonic()
    with pytest.raises(RemoteProtocolError, match=f"exceeds {MiB} bytes"):
        decompress(kind, body, max_size=MiB)
    assert time.monotonic() - started < 3


# --- truncated, trailing and random input ---------------------------------------------------------

TEXT = b"BranchRegisterRequest xid=127.0.0.1:8091:2000042 lockKey=stock:1,2,3 " * 6


@pytest.mark.parametrize("kind", COMPRESSING, ids=lambda k: k.name)
def test_every_truncation_is_rejected(kind: CompressorType) -> None:
    needs(kind)
    packed = compress(kind, TEXT)
    for end in range(len(packed)):
        with pytest.raises(RemoteProtocolError):
            decompress(kind, packed[:end], max_size=MiB)


@pytest.mark.parametrize("kind", COMPRESSING, ids=lambda k: k.name)
def test_trailing_garbage_is_rejected(kind: CompressorType) -> None:
    needs(kind)
    with pytest.raises(RemoteProtocolError):
        decompress(kind, compress(kind, TEXT) + b"\x01", max_size=MiB)


def _decodes_or_rejects(kind: CompressorType, data: bytes, max_size: int) -> None:
    try:
        out = decompress(kind, data, max_size=max_size)
    except RemoteProtocolError as exc:
        assert kind.name in str(exc)
    else:
        assert len(out) <= max_size


FUZZ = settings(max_examples=150, deadline=None)


@pytest.mark.parametrize("kind", SUPPORTED, ids=lambda k: k.name)
@FUZZ
@given(data=st.binary(max_size=600), max_size=st.integers(0, 4096))
def test_random_bytes_only_raise_remote_protocol_error(
    kind: CompressorType, data: bytes, max_size: int
) -> None:
    needs(kind)
    _decodes_or_rejects(kind, data, max_size)


# Each edit flips (x), inserts (i) or deletes (d) one byte at a position taken modulo the length.
EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("xid")), max_size=4)


@pytest.mark.parametrize("kind", COMPRESSING, ids=lambda k: k.name)
@FUZZ
@given(edits=EDITS)
def test_damaged_bodies_only_raise_remote_protocol_error(
    kind: CompressorType, edits: list[tuple[int, int, str]]
) -> None:
    needs(kind)
    body = bytearray(compress(kind, TEXT))
    for where, value, op in edits:
        pos = where % (len(body) + 1)
        if op == "x" and pos < len(body):
            body[pos] ^= value or 1
        elif op == "i":
            body.insert(pos, value)
        elif op == "d" and pos < len(body):
            del body[pos]
    _decodes_or_rejects(kind, bytes(body), len(TEXT) + 64)


# --- optional libraries missing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "modules", "extra"),
    [(K.LZ4, ["lz4", "lz4.block", "lz4.frame"], "lz4"), (K.ZSTD, ["zstandard"], "zstd")],
    ids=["lz4", "zstd"],
)
def test_missing_library_names_the_pip_command(
    kind: CompressorType, modules: list[str], extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes "import module" fail
    hint = f"pip install 'pyseata[{extra}]'"
    assert not is_available(kind)
    with pytest.raises(CompressorUnavailableError, match=r"pip install 'pyseata\[" + extra + r"\]'") as info:
        compress(kind, b"x")
    assert hint in str(info.value)
    with pytest.raises(CompressorUnavailableError, match="pyseata"):
        decompress(kind, b"x", max_size=10)
