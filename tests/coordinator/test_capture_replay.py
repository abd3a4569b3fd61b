"""Replays real conversations of Seata's Java TM and RM clients (../shared/conformance) against a
real pyseata TC, over raw sockets, and checks every answer is what a Java client expects.

The capture files hold ``direction<TAB>connection<TAB>frame hex`` lines. One socket per
connection number; client frames (c2s) are sent in order, server frames (s2c) are read from that
socket and compared with the recording. The TC chooses its own XID and branch id: once they are
known (from the begin and branch register answers), the recorded values in later client frames
are replaced by them and the frames re-encoded, as a Java client would have sent them to this TC.
The TC's BranchRollbackRequest arrives on the RM connection and is answered with the recorded RM
answer, XID and branch id substituted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest

from asyncsupport import eventually
from conftest import load_capture
from pyseata.protocol import messages as m
from pyseata.protocol.enums import MessageType, ResultCode
from pyseata.protocol.frame import Frame, FrameDecoder, encode_frame
from pyseata.protocol.xid import parse_xid

from .conftest import running_tc, store_empty

RECORDED_XID = "127.0.0.1:8093:123456789"
RECORDED_BRANCH_ID = 123456790


class Raw:
    """A plain socket to the TC: send bytes, read whole frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []

    @classmethod
    async def open(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 30.0) -> Frame:
        async with asyncio.timeout(timeout):
            while not self.frames:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("the TC closed the connection")
                self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class Substitution:
    """The recorded XID and branch id, and what this TC chose instead."""

    def __init__(self) -> None:
        self.xid: str | None = None
        self.branch_id: int | None = None

    def apply(self, body: m.Message) -> m.Message:
        changes: dict[str, object] = {}
        values = {f.name: getattr(body, f.name) for f in dataclasses.fields(body)}
        if self.xid is not None and values.get("xid") == RECORDED_XID:
            changes["xid"] = self.xid
        if self.branch_id is not None and values.get("branch_id") == RECORDED_BRANCH_ID:
            changes["branch_id"] = self.branch_id
        return dataclasses.replace(body, **changes) if changes else body  # type: ignore[type-var]


def decode_one(wire: bytes) -> Frame:
    (frame,) = FrameDecoder().feed(wire)
    return frame


def check_answer(got: Frame, recorded: Frame, sub: Substitution, port: int, where: str) -> None:
    """``got`` is what a Java client would accept where the Java TC sent ``recorded``."""
    assert got.message_type == recorded.message_type, where
    assert got.request_id == recorded.request_id, where
    assert type(got.body) is type(recorded.body), where
    assert (got.codec, got.compressor) == (recorded.codec, recorded.compressor), where
    body = got.body
    if isinstance(body, m.AbstractIdentifyResponse):
        assert isinstance(recorded.body, m.AbstractIdentifyResponse)
        assert body.identified == recorded.body.identified, where
        return  # the version is our own
    if isinstance(body, m.GlobalBeginResponse):
        assert body.result_code == ResultCode.Success and body.xid, where
        parsed = parse_xid(body.xid)  # Seata's format, with this TC's address
        assert (parsed.host, parsed.port) == ("127.0.0.1", port), where
        assert parsed.transaction_id > 0, where
        sub.xid = body.xid
    if isinstance(body, m.BranchRegisterResponse):
        assert body.result_code == ResultCode.Success and body.branch_id > 0, where
        sub.branch_id = body.branch_id
    assert body == sub.apply(recorded.body), where


@pytest.mark.parametrize("capture", ["capture-tm-rm-rollback.tsv", "capture-tm-commit-heartbeat.tsv"])
async def test_a_java_client_conversation_gets_the_answers_it_expects(capture: str, conformance_dir: Path) -> None:
    rows = load_capture(conformance_dir / capture)
    assert rows, f"{capture} is empty"
    sub = Substitution()
    async with running_tc() as tc:
        port = tc.address[1]
        conns: dict[int, Raw] = {}
        tc_requests: list[Frame] = []
        seen: list[str] = []
        try:
            for step, (direction, conn, wire) in enumerate(rows, start=1):
                if conn not in conns:
                    conns[conn] = await Raw.open(port)
                recorded = decode_one(wire)
                where = f"{capture} line {step} ({direction}, connection {conn}, recorded {recorded!r})"
                if direction == "c2s":
                    frame = dataclasses.replace(recorded, body=sub.apply(recorded.body))
                    if recorded.message_type == MessageType.RESPONSE:
                        # the RM's answer to the TC's request: same request id as that request
                        assert tc_requests, f"{where}: no TC request to answer"
                        frame = dataclasses.replace(frame, request_id=tc_requests.pop(0).request_id)
                    # untouched frames go out byte for byte, as the Java client sent them
                    await conns[conn].send(wire if frame == recorded else encode_frame(frame))
                    continue
                got = await conns[conn].read_frame()
                if recorded.message_type in (MessageType.REQUEST_SYNC, MessageType.REQUEST_ONEWAY):
                    tc_requests.append(got)
                check_answer(got, recorded, sub, port, where)
                seen.append(type(got.body).__name__)
            for conn, raw in conns.items():
                assert raw.frames == [], f"connection {conn} got more than the recording: {raw.frames}"
            assert sub.xid is not None
            if capture == "capture-tm-rm-rollback.tsv":
                assert "BranchRollbackRequest" in seen and seen[-1] == "GlobalRollbackResponse"
                assert sub.branch_id is not None
            else:
                assert seen[-2:] == ["GlobalCommitResponse", "HeartbeatMessage"]
            # The conversation left nothing behind in the TC (rolled back, or committed).
            await eventually(lambda: store_empty(tc.store), what="the TC store ends empty")
        finally:
            for raw in conns.values():
                await raw.close()
