"""Snowflake-style ids for transactions and branches, as Seata's IdWorker (BEHAVIOUR.md 1.1).

Bit 63 is 0; the next 10 bits are the worker id; then 41 bits of milliseconds since 2020-05-03;
then a 12-bit sequence. Timestamp and sequence advance together as one counter, so ids keep
growing when the clock stands still or steps back; when the counter would run ahead of the clock
by a whole millisecond's worth of sequence, the generator waits for the clock. The worker id makes
ids unique across TC nodes; starting from the current time makes them unique across restarts.

The wait is bounded: ids are made on the TC's event loop, and a wall clock stepped back by NTP
would otherwise stall every request for as long as the step. When the counter is further ahead
than a few milliseconds the clock moved, not the load: ids go on from the counter (still unique
and increasing in this process) and a warning says so once.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from pyseata.errors import ConfigError

__all__ = ["EPOCH_MS", "IdGenerator", "default_worker_id"]

EPOCH_MS = 1588435200000  # 2020-05-03, Seata's twepoch
_SEQUENCE_BITS = 12
_WORKER_BITS = 10
_TIMESTAMP_AND_SEQUENCE_BITS = 41 + _SEQUENCE_BITS
_MAX_WORKER = (1 << _WORKER_BITS) - 1
_MASK = (1 << _TIMESTAMP_AND_SEQUENCE_BITS) - 1
_MAX_WAIT_MS = 5  # Seata sleeps 5 ms; beyond that the clock stepped back and waiting is no use

log = logging.getLogger("pyseata.tc")


def default_worker_id() -> int:
    """A worker id from the process id when none is configured (configure it for several TCs)."""
    return os.getpid() & _MAX_WORKER


class IdGenerator:
    def __init__(self, worker_id: int | None = None) -> None:
        worker = default_worker_id() if worker_id is None else worker_id
        if not 0 <= worker <= _MAX_WORKER:
            raise ConfigError(f"worker_id must be between 0 and {_MAX_WORKER}, not {worker}")
        self.worker_id = worker
        self._worker_part = worker << _TIMESTAMP_AND_SEQUENCE_BITS
        self._lock = threading.Lock()
        self._counter = self._now_ms() << _SEQUENCE_BITS
        self._warned_clock = False

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000) - EPOCH_MS

    def next_id(self) -> int:
        with self._lock:
            self._counter = (self._counter + 1) & _MASK
            ahead = (self._counter >> _SEQUENCE_BITS) - self._now_ms()
            if 0 < ahead <= _MAX_WAIT_MS:  # more than 4096 ids in a millisecond: let the clock catch up
                time.sleep(ahead / 1000)
            elif ahead > _MAX_WAIT_MS and not self._warned_clock:
                self._warned_clock = True
                log.warning("the wall clock is %d ms behind the id counter (stepped back?); ids go on "
                            "from the counter, unique in this process", ahead)
            return self._worker_part | self._counter

    def __repr__(self) -> str:
        return f"<IdGenerator worker={self.worker_id}>"
