"""The buyers: the shop's starting data, the purchases to make, and the threads that make them.

Everything random comes from one seeded :class:`random.Random`, so a run can be repeated
(``--seed``). The catalogue, stock and balances are sized to the number of purchases so that most
purchases commit and some run out of stock or money on their own; a share of them
(``fail_rate``) asks the order service to fail after every service wrote.

Each purchase carries an order id chosen here. An answer that never came (the order service was
SIGKILLed mid-request, the commit went unanswered) is not a guess: after recovery the order's row
says what became of it (:mod:`pyseata.demo.checks`).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Driver", "Outcome", "Purchase", "ShopSeed", "percentiles", "plan_purchases", "seed_shop"]


@dataclass(frozen=True, slots=True)
class ShopSeed:
    """The starting data: prices and stock per SKU (cents, items), balances per buyer (cents)."""

    prices: dict[str, int]
    stock: dict[str, int]
    balances: dict[str, int]


@dataclass(frozen=True, slots=True)
class Purchase:
    order_id: str
    buyer: str
    sku: str
    qty: int
    mode: str
    fail_after_writes: bool

    def body(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "buyer": self.buyer, "sku": self.sku, "qty": self.qty,
                "mode": self.mode, "fail_after_writes": self.fail_after_writes}  # fmt: skip


@dataclass(slots=True)
class Outcome:
    """What the order service answered for one purchase (``unknown``: no final answer came)."""

    purchase: Purchase
    outcome: str  # committed | rolled_back | unknown | not_sent
    reason: str = ""  # rolled_back: out_of_stock, insufficient_funds, injected_failure, timeout, unavailable
    latency: float = 0.0  # seconds, of the attempt that got the answer
    xid: str | None = None
    detail: str = ""


MEAN_QTY = 2  # qty is 1..3


def seed_shop(rng: random.Random, purchases: int) -> ShopSeed:
    """A shop where roughly one purchase in ten runs out of stock or money by itself."""
    skus = [f"SKU-{n}" for n in range(1, 7)]
    prices = {sku: rng.randrange(300, 3000, 50) for sku in skus}
    # A little more than the purchases will ask for on average; the SKUs are not equally popular
    # (plan_purchases), so the popular ones sell out towards the end.
    per_sku = max(3, purchases * MEAN_QTY * 11 // (10 * len(skus)))
    stock = {sku: rng.randint(per_sku * 7 // 10, per_sku * 13 // 10) for sku in skus}
    buyers = [f"buyer-{n:02d}" for n in range(1, max(4, min(40, purchases // 8)) + 1)]
    mean_spend = sum(prices.values()) / len(prices) * MEAN_QTY * purchases / len(buyers)
    balances = {buyer: int(rng.uniform(0.8, 1.6) * mean_spend) // 100 * 100 for buyer in buyers}
    return ShopSeed(prices, stock, balances)


def plan_purchases(rng: random.Random, seed: ShopSeed, count: int, modes: Sequence[str], fail_rate: float, *,
                   run_id: str) -> list[Purchase]:  # fmt: skip
    skus, buyers = sorted(seed.prices), sorted(seed.balances)
    # Each mode gets SKUs and buyers of its own. An AT branch's rows must not be written by anything
    # outside AT (or global_lock) until its global transaction ends: a TCC try taking stock from a
    # row an AT purchase just changed would be a dirty write, and that AT rollback would stop for an
    # operator. Seata says the same; the demo keeps the two kinds of writers apart.
    parts = {mode: (skus[i :: len(modes)], buyers[i :: len(modes)]) for i, mode in enumerate(modes)}
    purchases = []
    for n in range(count):
        mode = modes[n % len(modes)]
        mode_skus, mode_buyers = parts[mode]
        # Popular and less popular SKUs: a few sell out, most do not.
        weights = [1.0 + i * 0.3 for i in range(len(mode_skus))]
        purchases.append(Purchase(
            order_id=f"{run_id}-{n:05d}", buyer=rng.choice(mode_buyers), sku=rng.choices(mode_skus, weights)[0],
            qty=rng.randint(1, 3), mode=mode, fail_after_writes=rng.random() < fail_rate,
        ))  # fmt: skip
    return purchases


@dataclass
class Driver:
    """``buyers`` threads posting ``purchases`` to the order service, each purchase once.

    A purchase whose connection is refused (the order service is down: the chaos monkey) was not
    sent, so it is tried again for up to ``patience`` seconds; any other failure is final and
    the outcome is ``unknown`` until the databases tell.
    """

    order_url: str
    purchases: Sequence[Purchase]
    buyers: int
    patience: float = 60.0
    timeout: float = 60.0
    # A buyer told "unavailable" (a service or the TC is down) waits before the next purchase, as
    # a person would: otherwise an outage of a second burns through dozens of purchases that fail
    # in a few milliseconds each, and the run is over before the shop is back.
    pause_after_unavailable: float = 0.5
    outcomes: list[Outcome] = field(default_factory=list)
    _queue: queue.SimpleQueue[Purchase] = field(default_factory=queue.SimpleQueue)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for purchase in self.purchases:
            self._queue.put(purchase)
        for n in range(self.buyers):
            thread = threading.Thread(target=self._buyer, name=f"demo-buyer-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.outcomes)

    @property
    def finished(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    def stop(self) -> None:
        """No new purchases; the ones in flight end as their HTTP call does."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _buyer(self) -> None:
        import httpx

        # No proxies from the environment: the shop is on 127.0.0.1.
        with httpx.Client(timeout=httpx.Timeout(self.timeout, connect=2.0), trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    purchase = self._queue.get_nowait()
                except queue.Empty:
                    return
                outcome = self._buy(client, purchase)
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.reason == "unavailable" or outcome.outcome == "unknown":
                    self._stop.wait(self.pause_after_unavailable)

    def _buy(self, client: Any, purchase: Purchase) -> Outcome:
        import httpx

        give_up = time.monotonic() + self.patience
        while True:
            started = time.perf_counter()
            try:
                answer = client.post(f"{self.order_url}/purchase", json=purchase.body())
            except httpx.ConnectError as exc:
                if self._stop.is_set() or time.monotonic() > give_up:
                    return Outcome(purchase, "not_sent", detail=f"the order service refused: {exc}")
                time.sleep(0.1)  # the order service is restarting: nothing was sent, so try again
                continue
            except httpx.HTTPError as exc:
                return Outcome(purchase, "unknown", detail=f"no answer: {type(exc).__name__}: {exc}")
            latency = time.perf_counter() - started
            return _outcome(purchase, answer, latency)


def _outcome(purchase: Purchase, answer: Any, latency: float) -> Outcome:
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    kind = body.get("outcome")
    if answer.status_code == 200 and kind in ("committed", "rolled_back"):
        return Outcome(purchase, str(kind), str(body.get("reason", "")), latency, body.get("xid"),
                       str(body.get("error", "")))  # fmt: skip
    detail = str(body.get("error") or answer.text[:300])
    return Outcome(purchase, "unknown", "", latency, body.get("xid"), f"HTTP {answer.status_code}: {detail}")


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles and the maximum, in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)
    result = {f"p{p}": round(ordered[max(0, -(-p * len(ordered) // 100) - 1)] * 1000, 1) for p in points}
    result["max"] = round(ordered[-1] * 1000, 1)
    return result
