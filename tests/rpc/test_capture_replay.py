"""Replays real conversations of Seata's Java TM and RM clients (../shared/conformance) against a
pyseata RpcServer, and checks that every answer is what the Java TC sent in that place.

The capture files hold ``direction<TAB>connection<TAB>frame hex`` lines. One socket is opened per
connection number; client frames (c2s) are sent in order; at each recorded server frame (s2c) the
next frame is read from that socket and compared with the recording: frame type, request id and
body type always, and the body itself wherever the scripted coordinator chose the same values
as the recorded TC (the XID, the branch id...). Registration answers carry our own version.

The TC-initiated BranchRollbackRequest (s2c on the RM connection) comes from the scripted
coordinator's rollback, through ``server.send_to_rm``; the RM's recorded answer (c2s) must
complete it, or the global rollback answer that follows never comes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_capture
from pyseata.protocol import messages as m
from pyseata.protocol.frame import FrameDecoder

from .conftest import RawConn, ScriptedTC, running_server

CAPTURES = ["capture-tm-rm-rollback.tsv", "capture-tm-commit-heartbeat.tsv"]
RECORDED_XID = "127.0.0.1:8093:123456789"


@pytest.mark.parametrize("capture", CAPTURES)
async def test_java_client_conversation_gets_the_recorded_answers(
    capture: str, conformance_dir: Path, loop_kind: str
) -> None:
    rows = load_capture(conformance_dir / capture)
    assert rows, f"{capture} is empty"
    tc = ScriptedTC(xid=RECORDED_XID)
    async with running_server(tc) as (server, _):
        conns: dict[int, RawConn] = {}
        try:
            for step, (direction, conn, wire) in enumerate(rows, start=1):
                if conn not in conns:
                    conns[conn] = await RawConn.open(server.address[1])
                if direction == "c2s":
                    await conns[conn].send(wire)
                    continue
                (recorded,) = FrameDecoder().feed(wire)
                where = f"{capture} line {step} (s2c, connection {conn}, recorded {recorded!r})"
                got = await conns[conn].read_frame()
                assert got.message_type == recorded.message_type, where
                assert got.request_id == recorded.request_id, where
                assert type(got.body) is type(recorded.body), where
                assert (got.codec, got.compressor) == (recorded.codec, recorded.compressor), where
                if isinstance(recorded.body, m.AbstractIdentifyResponse):
                    assert isinstance(got.body, m.AbstractIdentifyResponse)
                    assert got.body.identified == recorded.body.identified, where
                else:
                    assert got.body == recorded.body, where
            # Nothing unexpected is left over on any connection.
            for conn, raw in conns.items():
                assert raw.frames == [], f"connection {conn} got more than the recording: {raw.frames}"
        finally:
            for raw in conns.values():
                await raw.close()
    if capture == "capture-tm-rm-rollback.tsv":
        assert [type(a) for a in tc.rm_answers] == [m.BranchRollbackResponse]
