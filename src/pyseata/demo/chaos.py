"""The chaos monkey: SIGKILLs the TC or a service at random moments of the run, and restarts it.

Moments are points in the run's progress (after so many purchases answered), drawn at random
between 10 % and 85 %, so a fast machine and a slow one both see every kill in the middle of the
traffic. A kill is SIGKILL: nothing flushed, nothing in flight finished, no goodbye to the TC or to
the other services; whatever the victim was doing (a try, a commit, phase two, a recovery round)
is cut at that instruction. The victim stays down for a moment (buyers and services see refused
connections and time-outs), then comes back on the same port with the same database or store.

Every plan kills the TC at least once and at least one service (which, at random); further kills
pick any of the four.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pyseata.demo.procs import Child

__all__ = ["ChaosMonkey", "Strike"]


@dataclass(slots=True)
class Strike:
    after: int  # purchases answered before the kill
    victim: str
    down: float  # seconds between the kill and the restart
    done_at: float | None = None  # seconds into the run when it struck

    def to_json(self) -> dict[str, object]:
        return {"victim": self.victim, "after_purchases": self.after, "down_s": round(self.down, 2),
                "at_s": None if self.done_at is None else round(self.done_at, 2)}  # fmt: skip


class ChaosMonkey:
    def __init__(self, rng: random.Random, children: Mapping[str, Child], total: int, kills: int, *,
                 report: Callable[[str], None], services: tuple[str, ...] = ("order", "stock", "account"),
                 ) -> None:  # fmt: skip
        self.children = children
        self.report = report
        self.started = time.monotonic()
        # The TC and one service come first, early enough that even a run cut short by the outages
        # sees both; further kills anywhere in the middle of the run.
        first = ["tc", rng.choice(services)]
        rng.shuffle(first)
        victims = first + [rng.choice(("tc", *services)) for _ in range(max(0, kills - 2))]
        moments = sorted(rng.uniform(0.10, 0.45) for _ in first)
        moments += sorted(rng.uniform(max(moments), 0.85) for _ in victims[2:])
        self.plan = [Strike(max(1, int(m * total)), v, rng.uniform(0.3, 1.0))
                     for m, v in zip(moments, victims, strict=True)]  # fmt: skip

    @property
    def struck(self) -> list[Strike]:
        return [s for s in self.plan if s.done_at is not None]

    def tick(self, answered: int) -> None:
        """Strikes once if a strike is due (one per call, so the caller's loop stays responsive)."""
        due = next((s for s in self.plan if s.done_at is None and answered >= s.after), None)
        if due is not None:
            self.strike(due)

    def strike(self, strike: Strike) -> None:
        child = self.children[strike.victim]
        strike.done_at = time.monotonic() - self.started
        pid = child.pid
        child.kill()
        self.report(f"chaos: SIGKILL {child.name} (pid {pid}) after {strike.after} purchases; "
                    f"down for {strike.down:.1f} s")  # fmt: skip
        time.sleep(strike.down)
        address = child.restart()
        self.report(f"chaos: {child.name} restarted as pid {child.pid} on {address}")

    @property
    def missed(self) -> list[Strike]:
        """Strikes the run ended before (reported, not silently dropped)."""
        return [s for s in self.plan if s.done_at is None]

    def finish(self) -> None:
        """Anything down is brought back before recovery is awaited."""
        for child in self.children.values():
            if not child.alive:
                self.report(f"chaos: {child.name} is down at the end of the run: restarting it")
                child.restart()
