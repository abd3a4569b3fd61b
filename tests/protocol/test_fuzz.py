"""Hostile input: anything either decodes or raises RemoteProtocolError, never anything else."""

from __future__ import annotations

import contextlib
import gzip
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyseata.errors import FrameTooLargeError, RemoteProtocolError
from pyseata.protocol import messages as m
from pyseata.protocol.codec import decode_body, encode_body
from pyseata.protocol.enums import CompressorType, MessageType
from pyseata.protocol.frame import HEADER, Frame, FrameDecoder, encode_frame

from .java import load_golden

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_all(data: bytes, chunk: int = 0) -> None:
    decoder = FrameDecoder(max_frame_length=1 << 20)
    try:
        if chunk:
            for i in range(0, len(data), chunk):
                decoder.feed(data[i : i + chunk])
        else:
            decoder.feed(data)
    except RemoteProtocolError:
        pass


@pytest.fixture(scope="module")
def seeds(conformance_dir: Path) -> list[bytes]:
    return [row.wire for row in load_golden(conformance_dir / "golden-frames-2.3.0.tsv")]


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _decode_all(data)


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_behind_a_valid_header(payload: bytes) -> None:
    """Random bodies in a well-formed frame exercise every body decoder."""
    for compressor in (CompressorType.NONE, CompressorType.GZIP):
        head = HEADER.pack(b"\xda\xda", 1, 16 + len(payload), 16, 0, 1, compressor, 1)
        _decode_all(head + payload)


@FUZZ
@given(st.data())
def test_mutated_java_frames(seeds: list[bytes], data: st.DataObject) -> None:
    wire = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = data.draw(st.integers(0, max(len(wire) - 1, 0)))
        if action == "flip" and wire:
            wire[pos] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del wire[pos : pos + data.draw(st.integers(1, 8))]
        elif action == "insert":
            wire[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif wire:
            wire[pos] = data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
    _decode_all(bytes(wire), chunk=data.draw(st.sampled_from([0, 1, 7])))


@FUZZ
@given(st.binary(min_size=2, max_size=200))
def test_random_bodies(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_body(data)


def test_huge_announced_length_is_refused_from_the_header() -> None:
    """A frame claiming 2 GiB is refused after 7 bytes: nothing is buffered for it."""
    decoder = FrameDecoder()
    header = b"\xda\xda\x01" + struct.pack(">i", 0x7FFFFFFF)
    with pytest.raises(FrameTooLargeError, match="2147483647 bytes; the maximum is 8388608"):
        decoder.feed(header)


def test_negative_length_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="shorter than the 16-byte header"):
        FrameDecoder().feed(b"\xda\xda\x01" + struct.pack(">i", -5) + b"\x00" * 9)


def test_garbage_is_refused_at_the_first_byte() -> None:
    with pytest.raises(RemoteProtocolError, match=r"bad magic byte 0x47 .*at byte 0"):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(RemoteProtocolError, match="bad protocol version byte 0x00"):
        FrameDecoder().feed(b"\xda\xda\x00")


def test_decoder_stays_failed() -> None:
    decoder = FrameDecoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"\x00")
    with pytest.raises(RemoteProtocolError, match="already failed"):
        decoder.feed(encode_frame(Frame.ping(1)))


def test_decompression_bomb_is_bounded() -> None:
    """A 1 KiB gzip body that inflates to 64 MiB must not be inflated past the frame limit."""
    bomb = gzip.compress(b"\x00" * (64 << 20))
    head = HEADER.pack(b"\xda\xda", 1, 16 + len(bomb), 16, 0, 1, CompressorType.GZIP, 1)
    tracemalloc.start()
    try:
        with pytest.raises(RemoteProtocolError, match="exceeds"):
            FrameDecoder(max_frame_length=1 << 20).feed(head + bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak} bytes while refusing a bomb"


def test_errors_name_what_and_where() -> None:
    body = encode_body(m.BranchRegisterRequest(xid="1.2.3.4:8091:1", resource_id="r", lock_key="t:1"))
    frame = encode_frame(Frame(MessageType.REQUEST_SYNC, 1, m.GlobalBeginRequest()))
    truncated = frame[:7] + struct.pack(">i", 0)[0:0] + frame[7:]
    assert truncated == frame
    head = HEADER.pack(b"\xda\xda", 1, 16 + len(body) - 3, 16, 0, 1, 0, 1)
    match = r"BranchRegisterRequest body ends before field application_data \(at byte"
    with pytest.raises(RemoteProtocolError, match=match):
        FrameDecoder().feed(head + body[:-3])
    with pytest.raises(RemoteProtocolError, match=r"unknown BranchType\[9\] in field branch_type"):
        decode_body(b"\x00\x0b\x00\x01x\x09")
    with pytest.raises(RemoteProtocolError, match=r"type code 999 \(unknown\) has no seata codec"):
        decode_body(b"\x03\xe7")
    with pytest.raises(RemoteProtocolError, match=r"codec 22 \(HESSIAN\) is not supported"):
        FrameDecoder().feed(HEADER.pack(b"\xda\xda", 1, 18, 16, 0, 0x16, 0, 1) + b"\x00\x01")


def test_java_decoder_quirks() -> None:
    """PROTOCOL.md 7.3, observed by running Java's decoder."""
    # RegisterRMRequest with an empty version: Java stops, the other fields stay null.
    rm = decode_body(encode_body(m.RegisterRMRequest(version="", application_id="app", resource_ids="r1")))
    assert rm == m.RegisterRMRequest()
    # RegisterTMRequest with an empty version: version "", the rest decoded.
    tm = decode_body(encode_body(m.RegisterTMRequest(version="", application_id="app")))
    assert tm == m.RegisterTMRequest(version="", application_id="app", transaction_service_group="", extra_data="")
    # A status byte of 0x7f is refused.
    with pytest.raises(RemoteProtocolError, match=r"unknown GlobalStatus\[127\]"):
        decode_body(bytes.fromhex("000801007f"))
    # BranchCommitRequest: an empty resource id ends decoding before application data.
    msg = m.BranchCommitRequest(xid="x:1:2", branch_id=5, resource_id=None, application_data="{}")
    assert decode_body(encode_body(msg)) == m.BranchCommitRequest(xid="x:1:2", branch_id=5)
    # GlobalReportRequest: a null status is 0xFF.
    assert encode_body(m.GlobalReportRequest(xid="x:1:2"))[-1] == 0xFF
