"""The demo's children: started, SIGKILLed, restarted on their port, and always reaped.

Each child prints one ready line on stdout (``pyseata TC ready on HOST:PORT``, ``shop service
stock ready on http://HOST:PORT``); everything else it says goes to a log file in the run's folder,
one per child, appended across restarts, so a failure can be explained afterwards.

Children run in a session of their own: a Ctrl-C in the terminal reaches the demo only, which then
stops them in order (the order service first, the TC last) instead of all of them dying at once in
the middle of phase two. Should the demo itself be killed, each child notices it was orphaned and
stops by itself (``PYSEATA_DEMO_PARENT``, see :mod:`pyseata.demo.host`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pyseata.demo.host import PARENT_ENV

__all__ = ["Child", "StartError"]


class StartError(Exception):
    """A child did not print its ready line; the message ends with the tail of its log."""


class Child:
    """One supervised process. ``argv(port)`` gives its command line for a port (0 at first; the
    port it got afterwards, so that a restart comes back where the others expect it)."""

    def __init__(self, name: str, argv: Callable[[int], list[str]], ready: str, log_dir: Path, *,
                 env: dict[str, str] | None = None, port: int = 0) -> None:  # fmt: skip
        self.name = name
        self.argv = argv
        self.ready = ready
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid()), **(env or {})}
        self.port = port
        self.address = ""  # the rest of the ready line: host:port or a URL
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid} {self.address or 'not started'}>"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Starts it and waits for its ready line; returns the address it announced."""
        if self.alive:
            raise RuntimeError(f"{self.name} is running already")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts} at {time.strftime('%H:%M:%S')}: port {self.port}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.argv(self.port), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=log, env=self.env, start_new_session=True)  # fmt: skip
        line = self._ready_line(timeout)
        if not line.startswith(self.ready):
            code = self.process.poll()
            self.kill()
            status = f"exited with status {code}" if code is not None else f"printed no ready line in {timeout:g} s"
            raise StartError(f"{self.name} did not start: it {status}.{self._tail()}")
        self.address = line[len(self.ready) :].strip()
        self.port = int(self.address.rstrip("/").rsplit(":", 1)[1])
        return self.address

    def _ready_line(self, timeout: float) -> str:
        """The first line of stdout, or what came before the child exited or the time ran out."""
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select([fd], [], [], min(left, 0.2))
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:  # stdout closed: the child is gone
                    break
                data += chunk
        return data.split(b"\n", 1)[0].decode(errors="replace")

    def _tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace").rstrip().splitlines()
        except OSError:
            return ""
        shown = [line for line in text if not line.startswith("--- start")][-lines:]
        return ("\n  " + "\n  ".join(shown)) if shown else ""

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed, nothing in flight finished."""
        if self.alive:
            assert self.process is not None
            self.kills += 1
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
        self._reap(10.0)

    def terminate(self) -> None:
        """SIGTERM without waiting (so several children can stop at the same time)."""
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not ended after ``timeout``; always reaped."""
        self.terminate()
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        self._reap(10.0)

    def restart(self, timeout: float = 30.0) -> str:
        """Starts it again on the same port (after a kill)."""
        self._reap(10.0)
        return self.start(timeout)

    def _reap(self, timeout: float) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        if process.stdout is not None:
            process.stdout.close()


def stop_all(children: list[Child], timeout: float = 10.0) -> None:
    """Stops ``children`` in the order given: each gets SIGTERM after the ones before it ended."""
    for child in children:
        child.stop(timeout)
