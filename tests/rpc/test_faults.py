"""The network and the peer failing: a TC process killed with SIGKILL, and a proxy that delays,
black-holes or cuts traffic (tests/rpc/faultproxy.py).

What must hold: pending requests never hang; they fail with one specific error
(:class:`ConnectionClosedError`) as soon as the connection is known to be gone, and a
connection that stopped carrying traffic is found out by the heartbeat and idle logic.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from asyncsupport import eventually, within
from pyseata.errors import ConnectionClosedError
from pyseata.protocol import messages as m
from pyseata.protocol.enums import GlobalStatus

from .conftest import XID, ScriptedTC, connect, quick, registered_tm, running_server, tc_process
from .faultproxy import FaultProxy


async def test_killed_tc_fails_every_pending_request_at_once(loop_kind: str) -> None:
    with tc_process() as (process, port):
        channel = await registered_tm(port, config=quick(request_timeout=120))
        assert await channel.request(m.GlobalBeginRequest()) == m.GlobalBeginResponse(xid="127.0.0.1:8091:1")
        pending = [channel.request_nowait(m.GlobalCommitRequest(xid=XID)) for _ in range(10)]
        await asyncio.sleep(0.2)  # let them reach the TC, where they hang
        assert not any(f.done() for f in pending)
        process.send_signal(signal.SIGKILL)
        # Long before their 120 s deadline: the kernel closes the dead process's socket.
        done, _ = await asyncio.wait(pending, timeout=30)
        assert len(done) == len(pending), "requests still pending after the TC died"
        errors = [f.exception() for f in pending]
        assert all(isinstance(e, ConnectionClosedError) for e in errors), errors
        assert len({id(e) for e in errors}) == 1, "one error object for every pending request"
        assert channel.is_closed
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL


async def test_delayed_traffic_still_gets_through_only_later(loop_kind: str) -> None:
    async with running_server() as (server, _), FaultProxy(server.address[1]) as proxy:
        channel = await registered_tm(proxy.port)
        proxy.delay(0.2)  # each way
        started = time.monotonic()
        answers = await asyncio.gather(*(channel.request(m.GlobalBeginRequest()) for _ in range(20)))
        elapsed = time.monotonic() - started
        assert answers == [m.GlobalBeginResponse(xid=XID)] * 20
        assert elapsed >= 0.4  # a lower bound only: the delays guarantee it, load cannot break it
        proxy.heal()
        assert await channel.request(m.GlobalStatusRequest(xid=XID)) == m.GlobalStatusResponse(
            global_status=GlobalStatus.Begin
        )
        channel.close()


@pytest.mark.parametrize("direction", ["c2s", "s2c", "both"])
async def test_black_holed_link_is_found_out_by_heartbeats_and_idle_timeouts(direction: str, loop_kind: str) -> None:
    # The TC drops connections silent for 1 s; the client pings every 0.05 s and gives up on a
    # TC it has not heard from for 0.5 s.
    async with (
        running_server(channel=quick(idle_timeout=1.0)) as (server, tc),
        FaultProxy(server.address[1]) as proxy,
    ):
        channel = await registered_tm(proxy.port, config=quick(heartbeat_interval=0.05, idle_timeout=0.5))
        proxy.drop(direction)
        with pytest.raises(ConnectionClosedError, match="silent"):
            await channel.request(m.GlobalCommitRequest(xid=XID))  # never answered
        # The TC side lets go of the client too: by its own idle timeout when the pings stop
        # arriving, or when the client's close reaches it.
        await within(
            eventually(lambda: len(server.registry) == 0, timeout=30),
            40, "the TC kept the black-holed client registered",
        )  # fmt: skip
        assert [c.application_id for c in tc.gone] == ["order-svc"]


async def test_cut_connection_fails_pending_requests_promptly(loop_kind: str) -> None:
    tc = ScriptedTC()
    tc.gate = asyncio.Event()  # requests hang in the TC
    async with running_server(tc) as (server, _), FaultProxy(server.address[1]) as proxy:
        tc.gate.set()
        channel = await registered_tm(proxy.port, config=quick(request_timeout=120))
        tc.gate.clear()
        pending = [channel.request_nowait(m.GlobalBeginRequest()) for _ in range(5)]
        await eventually(lambda: len(tc.seen) == 5, what="the requests reached the TC")
        proxy.cut()
        done, _ = await asyncio.wait(pending, timeout=30)
        assert len(done) == 5, "requests still pending after the cut"
        assert all(isinstance(f.exception(), ConnectionClosedError) for f in pending)
        await eventually(lambda: len(server.registry) == 0, what="the TC noticed the cut")
        tc.gate.set()
        # New connections through the proxy work again; refused ones fail at once.
        again = await registered_tm(proxy.port)
        assert await again.request(m.GlobalBeginRequest()) == m.GlobalBeginResponse(xid=XID)
        again.close()
        proxy.refuse_new = True
        refused = await connect(proxy.port)
        with pytest.raises(ConnectionClosedError):
            await refused.request(m.RegisterTMRequest("2.2.0", "x", "g"))
