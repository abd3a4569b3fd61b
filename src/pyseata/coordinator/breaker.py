"""Keeps phase two away from an RM that stopped answering.

Seata sends every branch commit and rollback to its RM and waits up to the branch timeout (15 s)
for each, so one hung RM ties up the TC's phase-two threads and the commits of every other
application wait behind it. Here an RM connection that let a request time out is *unresponsive*
for a cool-down: further branch requests to it are not sent but answered as a retryable failure at
once (recovery retries them with its backoff), and when the cool-down ends a single probe request
goes through. An answer to the probe, or any failure that is not a timeout, ends the cool-down; a
probe that times out starts another one.

Keys are (resource id, client id): the branch's own RM process, as the TC addresses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RmBreaker"]

Key = tuple[str, str | None]


@dataclass(slots=True)
class _Open:
    until: float  # monotonic time the cool-down ends
    probing: bool = False  # the one request let through after the cool-down is in flight


class RmBreaker:
    """Which RMs get branch requests now. ``cooldown`` 0 turns it off (every request is sent)."""

    def __init__(self, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._open: dict[Key, _Open] = {}

    def __repr__(self) -> str:
        return f"<RmBreaker cooldown={self.cooldown}s unresponsive={sorted(map(str, self._open))}>"

    def allow(self, key: Key) -> bool:
        """Whether to send a request to ``key`` now. A True after a cool-down makes that request
        the probe: its caller must report its outcome with :meth:`answered` or :meth:`timed_out`."""
        state = self._open.get(key)
        if state is None:
            return True
        if state.probing or self._clock() < state.until:
            return False
        state.probing = True
        return True

    def answered(self, key: Key) -> None:
        """The RM answered (or failed without a timeout): it is responsive again."""
        if self._open:
            self._open.pop(key, None)

    def timed_out(self, key: Key) -> bool:
        """A request to ``key`` timed out: start a cool-down. Returns True when this opened it
        (rather than extending one already running), for a single log line per episode."""
        if self.cooldown <= 0:
            return False
        state = self._open.get(key)
        self._open[key] = _Open(self._clock() + self.cooldown)
        return state is None

    def unresponsive(self) -> list[Key]:
        """The RMs in a cool-down now (for operators and tests)."""
        return list(self._open)
