"""Shared helpers for the benchmarks: argument parsing, timing loops, machine description."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure (default 3)")
    return p


def rate(fn: Callable[[], object], seconds: float, batch: int = 200) -> float:
    """Calls per second of ``fn``, measured for about ``seconds`` after a short warm-up."""
    for _ in range(batch):
        fn()
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(batch):
            fn()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


def tc_command(store: str = "memory://") -> list[str]:
    """A ``pyseata server`` on a free port with ``store``; it prints ``... ready on host:port``."""
    return [sys.executable, "-c", "from pyseata.cli.main import main; main()", "server", "--port", "0",
            "--store", store, "--log-level", "WARNING"]


class Child:
    """A process that prints one line with ``ready`` (and its address last) once it serves;
    stopped with SIGTERM, SIGKILL after 20 s."""

    def __init__(self, command: Sequence[str], ready: str = "ready") -> None:
        self.process = subprocess.Popen(list(command), stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if ready not in line:
            self.stop()
            raise RuntimeError(f"{' '.join(command[2:5])} did not start: {line!r}")
        self.address = line.split()[-1]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class Threaded(Generic[T]):
    """What :func:`threaded` measured: per thread, each measured call's result and latency (s)."""

    def __init__(self, elapsed: float, calls: list[list[tuple[T, float]]]) -> None:
        self.elapsed = elapsed
        self.calls = calls

    def results(self) -> list[T]:
        return [result for per in self.calls for result, _ in per]

    def latencies(self) -> list[float]:
        return [latency for per in self.calls for _, latency in per]


def threaded(unit: Callable[[int], T], threads: int, seconds: float, warmup: float,
             join: float = 120.0) -> Threaded[T]:
    """``unit(n)`` in a loop on thread ``n`` of ``threads``; after ``warmup`` seconds, every call that
    ends in the next ``seconds`` is recorded. The first error of any thread stops all and is raised."""
    measuring, stop = threading.Event(), threading.Event()
    calls: list[list[tuple[T, float]]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            while not stop.is_set():
                started = time.perf_counter()
                result = unit(n)
                if measuring.is_set():
                    calls[n].append((result, time.perf_counter() - started))
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    time.sleep(warmup)
    measuring.set()
    began = time.perf_counter()
    time.sleep(seconds)
    measuring.clear()
    elapsed = time.perf_counter() - began
    stop.set()
    for w in workers:
        w.join(join)
    if errors:
        raise RuntimeError(f"a worker failed: {errors[0]!r}") from errors[0]
    return Threaded(elapsed, calls)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
    }


def finish(figures: dict[str, Any]) -> None:
    """The last line of every benchmark: one JSON object with every figure."""
    figures.setdefault("machine", machine())
    sys.stdout.flush()
    print(json.dumps(figures, sort_keys=True))
