"""Transaction and branch ids: Seata's IdWorker layout, unique and increasing."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from pyseata.coordinator import ids as ids_module
from pyseata.coordinator.ids import EPOCH_MS, IdGenerator, default_worker_id
from pyseata.errors import ConfigError

SEQUENCE_BITS = 12
TIMESTAMP_BITS = 41


def parts(value: int) -> tuple[int, int, int]:
    """(worker id, ms since Seata's epoch, sequence) of an id."""
    return (value >> (TIMESTAMP_BITS + SEQUENCE_BITS), (value >> SEQUENCE_BITS) & ((1 << TIMESTAMP_BITS) - 1),
            value & ((1 << SEQUENCE_BITS) - 1))


def test_ids_are_unique_and_increasing() -> None:
    gen = IdGenerator(5)
    values = [gen.next_id() for _ in range(100_000)]
    assert all(a < b for a, b in itertools.pairwise(values))


def test_layout_bit_63_clear_worker_bits_and_a_current_timestamp() -> None:
    for worker in (0, 1, 513, 1023):
        gen = IdGenerator(worker)
        value = gen.next_id()
        assert 0 < value < 2**63  # bit 63 is 0: a positive Java long
        got_worker, ms, _ = parts(value)
        assert got_worker == worker
        # the timestamp part is this machine's clock (within a generous margin)
        assert abs(ms - (time.time() * 1000 - EPOCH_MS)) < 600_000


def test_ids_from_many_threads_are_unique_and_each_threads_are_increasing() -> None:
    gen = IdGenerator(7)
    per_thread: list[list[int]] = [[] for _ in range(8)]

    def work(out: list[int]) -> None:
        for _ in range(20_000):
            out.append(gen.next_id())

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [v for out in per_thread for v in out]
    assert len(set(every)) == len(every) == 160_000
    for out in per_thread:
        assert all(a < b for a, b in itertools.pairwise(out))


def test_two_generators_with_different_worker_ids_never_collide() -> None:
    a, b = IdGenerator(1), IdGenerator(2)
    from_a: list[int] = []
    from_b: list[int] = []
    threads = [threading.Thread(target=lambda: from_a.extend(a.next_id() for _ in range(50_000))),
               threading.Thread(target=lambda: from_b.extend(b.next_id() for _ in range(50_000)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(from_a) & set(from_b)
    assert {parts(v)[0] for v in from_a} == {1}
    assert {parts(v)[0] for v in from_b} == {2}


class _Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.ms += max(1, round(seconds * 1000))


class _FakeClockGenerator(IdGenerator):
    def __init__(self, clock: _Clock, worker_id: int) -> None:
        self.clock = clock
        super().__init__(worker_id)

    def _now_ms(self) -> int:  # type: ignore[override]
        return self.clock.ms


def test_ids_keep_growing_when_the_clock_stands_still_or_steps_back(caplog: pytest.LogCaptureFixture) -> None:
    """A clock stepped back must not stall the TC's event loop until it catches up (the first
    version slept for the whole step, on the loop)."""
    clock = _Clock(1_000_000)
    gen = _FakeClockGenerator(clock, 3)
    first = [gen.next_id() for _ in range(1000)]
    clock.ms -= 5_000  # the wall clock steps back 5 s
    later = [gen.next_id() for _ in range(1000)]
    values = first + later
    assert all(a < b for a, b in itertools.pairwise(values))
    assert clock.slept == []  # 2000 ids fit in the sequence of one millisecond, and no waiting
    assert any("stepped back" in r.getMessage() for r in caplog.records)


def test_the_generator_waits_for_the_clock_instead_of_running_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock(2_000_000)
    monkeypatch.setattr(ids_module.time, "sleep", clock.sleep)
    gen = _FakeClockGenerator(clock, 3)
    values = [gen.next_id() for _ in range(3 * 4096)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert clock.slept, "12288 ids in a frozen millisecond must wait for the clock"
    for value in values:
        assert parts(value)[1] <= clock.ms  # never stamped ahead of the clock it waited for


def test_worker_id_range() -> None:
    for bad in (-1, 1024, 5000):
        with pytest.raises(ConfigError, match="worker_id"):
            IdGenerator(bad)
    assert 0 <= default_worker_id() <= 1023
    assert IdGenerator().worker_id == default_worker_id()


def test_a_restarted_generator_starts_above_the_previous_ones() -> None:
    before = IdGenerator(9)
    last = [before.next_id() for _ in range(10_000)][-1]
    time.sleep(0.002)  # a restart takes longer than this; the new counter starts at the clock
    after = IdGenerator(9)
    assert after.next_id() > last
