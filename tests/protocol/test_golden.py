"""Every frame Seata's own Java code produced: decode to its fields, encode to its bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pyseata.protocol.frame import FrameDecoder, encode_frame
from pyseata.protocol.messages import MESSAGE_CLASSES

from .java import GoldenRow, load_capture, load_golden, message_to_java

FILES = ["golden-frames-2.3.0.tsv", "golden-frames-2.2.0.tsv"]


@pytest.fixture(params=FILES, scope="module")
def rows(request: pytest.FixtureRequest, conformance_dir: Path) -> list[GoldenRow]:
    loaded = load_golden(conformance_dir / request.param)
    assert len(loaded) == 74, "37 samples x {none, gzip}"
    return loaded


def _assert_matches(row: GoldenRow, frame: object) -> None:
    from pyseata.protocol.frame import Frame

    assert isinstance(frame, Frame)
    spec = row.spec
    assert frame.request_id == spec["requestId"]
    assert frame.message_type == spec["messageType"]
    assert frame.codec == spec["codec"]
    assert frame.compressor == spec["compressor"]
    assert dict(frame.head_map) == spec["headMap"]
    assert len(row.wire) == spec["fullLength"]
    ours = message_to_java(frame.body)
    expected = {k: v for k, v in spec["body"].items() if k not in row.not_on_wire}
    for key, value in expected.items():
        if key in ours:
            assert ours[key] == value, f"{row.name}: field {key}"
        else:
            assert value is None, f"{row.name}: Java field {key}={value!r} has no place in {type(frame.body).__name__}"
    assert MESSAGE_CLASSES[frame.body.TYPE_CODE] is type(frame.body)


def test_decode_each_frame_whole(rows: list[GoldenRow]) -> None:
    for row in rows:
        frames = FrameDecoder().feed(row.wire)
        assert len(frames) == 1, row.name
        _assert_matches(row, frames[0])


def test_decode_each_frame_byte_by_byte(rows: list[GoldenRow]) -> None:
    for row in rows:
        decoder = FrameDecoder()
        frames = []
        for i in range(len(row.wire)):
            frames += decoder.feed(row.wire[i : i + 1])
            if i < len(row.wire) - 1:
                assert not frames, f"{row.name}: frame yielded before its last byte"
        assert len(frames) == 1
        _assert_matches(row, frames[0])
        assert decoder.buffered == 0


def test_decode_all_frames_concatenated(rows: list[GoldenRow]) -> None:
    stream = b"".join(row.wire for row in rows)
    frames = FrameDecoder().feed(stream)
    assert len(frames) == len(rows)
    for row, frame in zip(rows, frames, strict=True):
        _assert_matches(row, frame)


def test_decode_concatenated_in_random_chunks(rows: list[GoldenRow]) -> None:
    stream = b"".join(row.wire for row in rows)
    rng = random.Random(1234)
    for _ in range(20):
        decoder, frames, pos = FrameDecoder(), [], 0
        while pos < len(stream):
            step = rng.randint(1, 300)
            frames += decoder.feed(stream[pos : pos + step])
            pos += step
        assert [f.request_id for f in frames] == [r.spec["requestId"] for r in rows]


def test_encode_gives_java_bytes(rows: list[GoldenRow]) -> None:
    for row in rows:
        assert encode_frame(row.frame()).hex() == row.wire.hex(), row.name


def test_encode_then_decode_is_identity(rows: list[GoldenRow]) -> None:
    for row in rows:
        frame = row.frame()
        (back,) = FrameDecoder().feed(encode_frame(frame))
        assert back == frame, row.name


@pytest.mark.parametrize("name", ["capture-tm-rm-rollback.tsv", "capture-tm-commit-heartbeat.tsv"])
def test_captures_decode_and_reencode(conformance_dir: Path, name: str) -> None:
    captured = load_capture(conformance_dir / name)
    assert captured
    for direction, conn, wire in captured:
        (frame,) = FrameDecoder().feed(wire)
        assert encode_frame(frame) == wire, f"{direction} conn {conn}: {frame!r}"
