"""Shared helpers for the benchmarks: argument parsing, timing loops, machine description."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any


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
