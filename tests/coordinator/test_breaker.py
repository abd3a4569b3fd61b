"""A hung RM must not hold up phase two: after one of its requests times out it gets no more until
a cool-down ends, then a single probe; the other RMs' branches go on meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from asyncsupport import eventually
from pyseata.coordinator.breaker import RmBreaker
from pyseata.coordinator.settings import ServerSettings
from pyseata.errors import ConfigError
from pyseata.protocol.enums import BranchStatus, GlobalStatus

from .conftest import RM, TM, Call, has_status, running_tc

B = BranchStatus
G = GlobalStatus
SLOW = "jdbc:mysql://127.0.0.1:3306/slow"
FAST = "jdbc:mysql://127.0.0.1:3306/fast"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the breaker on its own ------------------------------------------------------------------------


def test_a_timeout_holds_requests_back_until_the_cooldown_then_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = RmBreaker(5.0, clock)
    rm, other = ("res", "app:1.2.3.4:5"), ("res", "app:1.2.3.4:6")
    assert breaker.allow(rm)
    assert breaker.timed_out(rm) is True  # opened: worth a log line
    assert breaker.timed_out(rm) is False  # an in-flight request timing out too only extends it
    assert not breaker.allow(rm)
    assert breaker.allow(other), "another RM process of the same resource is not affected"
    clock.now += 4.9
    assert not breaker.allow(rm)
    clock.now += 0.2
    assert breaker.allow(rm), "the cool-down is over: one probe"
    assert not breaker.allow(rm), "only one probe at a time"
    breaker.timed_out(rm)  # the probe timed out too: another cool-down
    clock.now += 4.0
    assert not breaker.allow(rm)
    clock.now += 1.1
    assert breaker.allow(rm)
    breaker.answered(rm)  # the probe was answered: responsive again
    assert breaker.allow(rm) and breaker.allow(rm)
    assert breaker.unresponsive() == []


def test_a_zero_cooldown_turns_it_off() -> None:
    breaker = RmBreaker(0.0)
    assert breaker.timed_out(("res", None)) is False
    assert breaker.allow(("res", None))
    assert "cooldown=0.0s" in repr(breaker)


def test_the_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="unresponsive_rm_cooldown"):
        ServerSettings(unresponsive_rm_cooldown=-1).validate()


# --- in a real TC ------------------------------------------------------------------------------------


async def test_a_hung_rm_gets_no_more_requests_while_other_rms_commit_then_one_probe_finishes_it() -> None:
    hung = asyncio.Event()
    answering = [False]

    async def hang_until_told(call: Call) -> BranchStatus:
        if not answering[0]:
            await hung.wait()  # set only at the end: these requests time out at the TC
        return B.PhaseTwo_Committed

    clock = Clock()
    async with running_tc(branch_request_timeout=0.3, retry_period=0.02, retry_backoff_max=0.05) as tc:
        tc.coordinator.breaker = RmBreaker(60.0, clock)
        port = tc.address[1]
        async with (TM(port) as tm, RM(port, [SLOW], app="slow-app", script=hang_until_told) as slow,
                    RM(port, [FAST], app="fast-app") as fast):
            stuck = []
            for n in range(6):
                xid = await tm.begin()
                await slow.register(xid, lock_key=f"t:{n}")
                assert await tm.commit(xid) == G.Committed  # AT only: phase two runs afterwards
                stuck.append(xid)
            await eventually(lambda: tc.coordinator.breaker.unresponsive() != [], what="the first timeout")
            await eventually(lambda: all(tc.recovery is not None and (tc.recovery.backoff_of(x) or (0,))[0] >= 3
                                         for x in stuck), what="recovery tried each stuck commit 3 times")
            assert len(slow.calls) == len(stuck), "held back: no request reached the hung RM again"

            xid = await tm.begin()
            branch = await fast.register(xid, lock_key="t:fast")
            assert await tm.commit(xid) == G.Committed
            await eventually(lambda: has_status(tc.store, xid, None), what="the other RM's commit")
            assert fast.done_for(xid) == [("commit", branch)]

            answering[0] = True
            clock.now += 61  # the cool-down ends: one probe, then the rest
            for x in stuck:
                await eventually(lambda x=x: has_status(tc.store, x, None), what=f"{x} committed")
            assert sorted(c.xid for c in slow.done) == sorted(stuck), "each stuck branch committed once"
            assert len(slow.calls) == 2 * len(stuck)
            hung.set()
