"""Property tests: every message and frame survives encode -> decode."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyseata.protocol import messages as m
from pyseata.protocol.codec import decode_body, encode_body
from pyseata.protocol.compress import is_available
from pyseata.protocol.enums import EXCEPTION_CODE_TABLES, GlobalStatus, MessageType, TransactionExceptionCode
from pyseata.protocol.frame import Frame, FrameDecoder, encode_frame, encode_message, encode_plain

from .strategies import BODY_TYPES, COMPRESSORS, HEAD_MAPS, I32, any_message, wire_normal

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(any_message())
def test_body_round_trip(msg: m.Message) -> None:
    assert decode_body(encode_body(msg)) == wire_normal(msg)


@SETTINGS
@given(
    body=any_message(),
    request_id=I32,
    message_type=st.sampled_from(BODY_TYPES),
    compressor=st.sampled_from([c for c in COMPRESSORS if is_available(c)]),
    head_map=HEAD_MAPS,
)
def test_frame_round_trip(body: m.Message, request_id: int, message_type: MessageType, compressor: int,
                          head_map: dict[str, str | None]) -> None:
    frame = Frame(message_type, request_id, body, compressor=compressor, head_map=head_map)  # type: ignore[arg-type]
    wire = encode_frame(frame)
    (back,) = FrameDecoder().feed(wire)
    assert back.request_id == request_id
    assert back.message_type == message_type
    assert back.compressor == compressor
    assert dict(back.head_map) == head_map
    assert back.body == wire_normal(body)
    assert encode_frame(back) == encode_frame(Frame(message_type, request_id, wire_normal(body),
                                                    compressor=compressor, head_map=head_map))  # type: ignore[arg-type]


@SETTINGS
@given(body=any_message(), request_id=I32, message_type=st.sampled_from(BODY_TYPES),
       table=st.sampled_from(sorted(EXCEPTION_CODE_TABLES)))
def test_the_fast_paths_match_the_generic_ones(body: m.Message, request_id: int, message_type: MessageType,
                                               table: str) -> None:
    """encode_plain is encode_message without head map and compression; feed_lean is feed, with
    ordinary responses as (request id, body) pairs."""
    codes = EXCEPTION_CODE_TABLES[table]
    wire = encode_message(message_type, request_id, body, codes=codes)
    assert encode_plain(message_type, request_id, body, codes) == wire
    (frame,) = FrameDecoder(codes=codes).feed(wire)
    (lean,) = FrameDecoder(codes=codes).feed_lean(wire)
    assert type(frame) is Frame  # built the fast way, still the frozen dataclass
    assert frame == Frame(message_type, request_id, frame.body)
    assert dataclasses.replace(frame, request_id=1).request_id == 1
    if isinstance(lean, tuple):  # a response the compiled decoders read (not a batch container...)
        assert message_type == MessageType.RESPONSE
        assert lean == (frame.request_id, frame.body)
    else:
        assert lean == frame


@given(request_id=I32, ping=st.booleans())
def test_heartbeat_round_trip(request_id: int, ping: bool) -> None:
    frame = Frame.ping(request_id) if ping else Frame.pong(request_id)
    wire = encode_frame(frame)
    assert len(wire) == 16
    assert FrameDecoder().feed(wire) == [frame]


@given(st.lists(any_message(), min_size=1, max_size=8), st.data())
def test_many_frames_any_chunking(bodies: list[m.Message], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(Frame(MessageType.REQUEST_SYNC, i, b)) for i, b in enumerate(bodies))
    decoder, frames, pos = FrameDecoder(), [], 0
    while pos < len(stream):
        step = data.draw(st.integers(1, 64))
        frames += decoder.feed(stream[pos : pos + step])
        pos += step
    assert [f.body for f in frames] == [wire_normal(b) for b in bodies]


def test_every_enum_value_round_trips() -> None:
    for status in GlobalStatus:
        msg = m.GlobalStatusResponse(global_status=status)
        assert decode_body(encode_body(msg)) == msg
    for code in TransactionExceptionCode:
        msg2 = m.GlobalBeginResponse(result_code=m.ResultCode.Failed, msg="x", transaction_exception_code=code)
        assert decode_body(encode_body(msg2)) == msg2


def test_exception_code_shift_between_versions() -> None:
    """Ordinal 19 is LockKeyConflictFailFast for 1.7/1.8 peers and NotRaftLeader for 2.x peers."""
    v17, v2 = EXCEPTION_CODE_TABLES["1.7"], EXCEPTION_CODE_TABLES["2.0"]
    msg = m.BranchRegisterResponse(
        result_code=m.ResultCode.Failed, msg="hot row",
        transaction_exception_code=TransactionExceptionCode.LockKeyConflictFailFast,
    )
    wire17, wire2 = encode_body(msg, v17), encode_body(msg, v2)
    assert wire17[-9] == 19 and wire2[-9] == 20
    assert decode_body(wire17, v17) == msg
    assert decode_body(wire2, v2) == msg
    assert decode_body(wire17, v2).transaction_exception_code == TransactionExceptionCode.NotRaftLeader
    # A code the peer's version does not know travels as Unknown rather than crash a Java peer.
    old = encode_body(replace_code(msg, TransactionExceptionCode.NotRaftLeader), v17)
    assert decode_body(old, v17).transaction_exception_code == TransactionExceptionCode.Unknown


def replace_code(msg: m.BranchRegisterResponse, code: TransactionExceptionCode) -> m.BranchRegisterResponse:
    from dataclasses import replace

    return replace(msg, transaction_exception_code=code)
