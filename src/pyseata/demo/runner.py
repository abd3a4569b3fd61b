"""``pyseata demo``, step by step: databases, TC, services, buyers, chaos, recovery, checks, summary.

The run's folder (a fresh temporary one unless ``--workdir``) holds the TC's SQLite store, the
SQLite databases of the services (unless PostgreSQL or MariaDB was given) and one log per process;
it is deleted at the end when every check passed (or the run was interrupted), and kept (and named)
otherwise or with ``--keep``.

Output: human lines on stdout (the progress bar on stderr), and as the LAST line one JSON object
with the counts and each check's result. Exit status: 0 when every check passed, 1 when one failed,
2 when the shop could not be set up (a port in use, a database unreachable), 130 when interrupted.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from pyseata.demo import checks as checks_module
from pyseata.demo.chaos import ChaosMonkey
from pyseata.demo.checks import ShopDatabases
from pyseata.demo.db import Database, DatabaseUnreachableError, redact, service_url
from pyseata.demo.driver import Driver, Outcome, ShopSeed, percentiles, plan_purchases, seed_shop
from pyseata.demo.host import READY, load_service
from pyseata.demo.procs import Child, StartError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SETUP", "DemoOptions", "at_available", "run_demo"]

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130
SERVICES = ("order", "stock", "account")
TC_READY = "pyseata TC ready on "

# The TC's recovery settings for the demo: retries every 0.2 s (backing off to 1 s), and sessions a
# killed TC left mid-phase-two re-driven after 1 s, so that recovery after chaos takes seconds.
TC_ENV = {
    "PYSEATA_SERVER_RETRY_PERIOD": "0.2",
    "PYSEATA_SERVER_RETRY_BACKOFF_MAX": "1.0",
    "PYSEATA_SERVER_DEAD_SESSION_MS": "1000",
    "PYSEATA_SERVER_DRAIN_TIMEOUT": "1",
    "PYSEATA_SERVER_BRANCH_REQUEST_TIMEOUT": "5",
}


class SetupError(Exception):
    """The shop could not be set up; the message says what to do."""


@dataclass
class DemoOptions:
    purchases: int = 200
    buyers: int = 8
    fail_rate: float = 0.1  # share of purchases failing on purpose after every service wrote
    mode: str = "auto"  # tcc, at, or auto (every mode available)
    db: str = "sqlite"
    db_prefix: str = "pyseata_shop_"
    chaos: bool = False
    chaos_kills: int = 4
    seed: int | None = None
    tx_timeout: float = 10.0
    recovery_timeout: float = 60.0
    tc_port: int = 0
    ports: dict[str, int] = field(default_factory=dict)  # service -> port (0: any)
    workdir: Path | None = None
    keep: bool = False
    shop_dir: Path | None = None
    progress: bool = True


def at_available() -> str | None:
    """None when pyseata's AT mode has its DB-API proxy (``pyseata.at.connect``); else why not."""
    try:
        if importlib.util.find_spec("pyseata.at.dbapi") is None:
            return "pyseata.at has no DB-API proxy yet"
        import pyseata.at
    except Exception as exc:  # AT mode is being written: a half-finished module must not stop the TCC demo
        return f"pyseata.at does not import ({type(exc).__name__}: {exc})"
    if not callable(getattr(pyseata.at, "connect", None)):
        return "pyseata.at has no connect() yet"
    return None


def default_shop_dir() -> Path:
    """``examples/shop`` of the source tree this pyseata runs from."""
    return Path(__file__).resolve().parents[3] / "examples" / "shop"


class Demo:
    def __init__(self, options: DemoOptions, out: Callable[[str], None], err: TextIO) -> None:
        self.o = options
        self.out = out
        self.err = err
        self.rng = random.Random(options.seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.folder = Path()
        self.own_folder = False
        self.children: dict[str, Child] = {}
        self.dbs: ShopDatabases | None = None
        self.driver: Driver | None = None
        self.chaos: ChaosMonkey | None = None
        self.modes: list[str] = []
        self.at = False  # this pyseata has AT mode: the databases get undo_log tables

    # --- the whole run ---------------------------------------------------------------------------------

    def run(self) -> int:
        result: dict[str, Any] = {"ok": False}
        code = EXIT_FAILED
        try:
            code, result = self._run()
        except SetupError as exc:
            self.out(f"error: {exc}")
            code, result = EXIT_SETUP, {"ok": False, "error": str(exc)}
        except KeyboardInterrupt:
            self.out("interrupted: stopping the buyers, the services and the TC")
            code, result = EXIT_INTERRUPTED, {"ok": False, "interrupted": True}
        finally:
            self._stop_children()
            if code == EXIT_INTERRUPTED:
                self.out("stopped; no process of the demo is left running")
            self._tidy(code)
        self.out(json.dumps(result))
        return code

    def _run(self) -> tuple[int, dict[str, Any]]:
        o = self.o
        self.modes = self._modes()
        shop = self._shop_dir()
        self._make_folder()
        seed = seed_shop(self.rng, o.purchases)
        self.dbs = self._databases(shop, seed)
        purchases = plan_purchases(self.rng, seed, o.purchases, self.modes, o.fail_rate, run_id=self.run_id)
        self._start_shop(shop)
        driver = self.driver = Driver(self.children["order"].address, purchases, o.buyers,
                                      patience=max(30.0, o.tx_timeout * 3))  # fmt: skip
        if o.chaos:
            self.chaos = ChaosMonkey(self.rng, self.children, o.purchases, o.chaos_kills, report=self.out)
        started = time.monotonic()
        driver.start()
        self._drive(driver)
        elapsed = time.monotonic() - started
        if self.chaos is not None:
            self.chaos.finish()
        finished, waited, left = checks_module.wait_for_recovery(self.dbs, self.folder / "tc.db",
                                                                 o.recovery_timeout, self.out)  # fmt: skip
        if finished:
            checks_module.wait_for_undo_deletion(self.dbs, grace=5.0)
        if not finished:
            self.out(f"recovery did NOT finish within {o.recovery_timeout:g} s; still in flight: "
                     f"{checks_module.describe(left)}. The checks below run on what is there; see the logs in "
                     f"{self.folder}.")  # fmt: skip
        checks, resolution = checks_module.run_checks(
            self.dbs, seed, driver.outcomes, left, self.folder / "tc.db", recovered=finished, waited=waited
        )
        ok = all(c.ok for c in checks)
        latencies = [x.latency for x in driver.outcomes if x.outcome in ("committed", "rolled_back")]
        self._summary(driver.outcomes, elapsed, latencies, checks=checks, resolution=resolution, waited=waited)
        result: dict[str, Any] = {
            "purchases": o.purchases, "modes": self.modes, "buyers": o.buyers,
            "committed": resolution.committed, "rolled_back": sum(resolution.rolled_back.values()),
            "rolled_back_by_reason": dict(sorted(resolution.rolled_back.items())),
            "unanswered_resolved": dict(resolution.resolved), "not_sent": resolution.not_sent,
            "seconds": round(elapsed, 2), "latency_ms": percentiles(latencies),
            "recovery_s": round(waited, 2),
            "chaos": None if self.chaos is None else {"kills": [s.to_json() for s in self.chaos.struck],
                                                      "missed": [s.to_json() for s in self.chaos.missed]},
            "checks": {c.name: c.ok for c in checks}, "ok": ok,
        }  # fmt: skip
        return (EXIT_OK if ok else EXIT_FAILED), result

    # --- set-up --------------------------------------------------------------------------------------

    def _modes(self) -> list[str]:
        mode, missing = self.o.mode, at_available()
        self.at = missing is None
        if mode == "at" and missing:
            raise SetupError(f"AT mode is not available: {missing}; run with --mode tcc")
        if mode == "auto" and missing:
            self.out(f"AT flow: pending ({missing}): every purchase uses TCC")
        if mode == "auto":
            return ["at", "tcc"] if self.at else ["tcc"]
        return [mode]

    def _shop_dir(self) -> Path:
        shop = self.o.shop_dir or default_shop_dir()
        missing = [name for name in (*SERVICES, "schema") if not (shop / f"{name}.py").is_file()]
        if missing:
            raise SetupError(f"the sample shop is not in {shop} (missing {', '.join(missing)}.py): run the demo from "
                             "a pyseata source checkout, or pass --shop-dir examples/shop")  # fmt: skip
        return shop

    def _make_folder(self) -> None:
        if self.o.workdir is not None:
            self.folder = self.o.workdir.resolve()
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in ("tc.db", "tc.db-wal", "tc.db-shm"):  # a fresh TC store: the checks count its rows
                (self.folder / stale).unlink(missing_ok=True)
        else:
            self.folder = Path(tempfile.mkdtemp(prefix="pyseata-demo-"))
            self.own_folder = True

    def _databases(self, shop: Path, seed: ShopSeed) -> ShopDatabases:
        schema = load_service(shop / "schema.py")
        try:
            urls = {s: service_url(self.o.db, s, folder=self.folder, prefix=self.o.db_prefix) for s in SERVICES}
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        dbs = ShopDatabases(*(Database.from_url(urls[s]) for s in SERVICES))
        for service, db in dbs.items():
            try:
                db.reset()
                schema.create_tables(service, db, undo_log=self.at)
            except DatabaseUnreachableError as exc:
                raise SetupError(f"{exc}. Is the server running, and is --db right ({redact(self.o.db)})?") from None
            _seed(schema, service, db, seed)
        kind = dbs.order.kind
        where = self.folder if kind == "sqlite" else redact(self.o.db)
        names = ", ".join(Path(db.path).name if kind == "sqlite" else db.namespace for _, db in dbs.items())
        label = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL"}[kind]
        self.out(f"databases: {label}, one per service ({names}) in {where}")
        return dbs

    def _start_shop(self, shop: Path) -> None:
        o, folder = self.o, self.folder
        store = folder / "tc.db"

        def tc_argv(port: int) -> list[str]:
            return [sys.executable, "-m", "pyseata.demo.tc", "--host", "127.0.0.1", "--port", str(port),
                    "--store", f"sqlite:///{store}", "--log-level", "INFO"]  # fmt: skip

        tc = Child("tc", tc_argv, TC_READY, folder, env=TC_ENV, port=o.tc_port)
        self.children["tc"] = tc
        self._start(tc, f"store {store}")
        assert self.dbs is not None
        urls = {name: db.url for name, db in self.dbs.items()}
        for name in ("stock", "account", "order"):  # the order service needs the others' addresses
            extra: list[str] = []
            if name == "order":
                extra = ["--stock-url", self.children["stock"].address, "--account-url",
                         self.children["account"].address, "--tx-timeout", str(o.tx_timeout)]  # fmt: skip
            child = Child(name, _service_argv(shop / f"{name}.py", tc.address, urls[name], extra),
                          READY.format(name=name), folder, port=o.ports.get(name, 0))  # fmt: skip
            self.children[name] = child
            self._start(child, dict(self.dbs.items())[name].describe())

    def _start(self, child: Child, what: str) -> None:
        try:
            address = child.start()
        except StartError as exc:
            raise SetupError(str(exc)) from None
        self.out(f"  {child.name:<8} pid {child.pid:<7} {address:<26} {what}")

    # --- the run -------------------------------------------------------------------------------------

    def _drive(self, driver: Driver) -> None:
        total = len(driver.purchases)
        import click

        show = self.o.progress
        with click.progressbar(length=total, label=f"{total} purchases by {self.o.buyers} buyers", file=self.err,
                               show_pos=True, show_eta=False) if show else _NoBar() as bar:  # fmt: skip
            shown = 0
            while True:
                done = driver.done
                if done > shown:
                    bar.update(done - shown)
                    shown = done
                if driver.finished:
                    break
                if self.chaos is not None:
                    self.chaos.tick(done)
                time.sleep(0.05)

    # --- the end -------------------------------------------------------------------------------------

    def _summary(self, outcomes: list[Outcome], elapsed: float, latencies: list[float], *,
                 checks: list[checks_module.Check], resolution: checks_module.Resolution,
                 waited: float) -> None:  # fmt: skip
        n = len(outcomes)
        pct = percentiles(latencies)
        rate = n / elapsed if elapsed > 0 else 0.0
        modes = " and ".join(m.upper() for m in self.modes)
        self.out(f"{n} purchases ({modes}) in {elapsed:.1f} s ({rate:.1f}/s); latency " +
                 "  ".join(f"{k} {v:g} ms" for k, v in pct.items()))  # fmt: skip
        self.out(f"  committed    {resolution.committed}")
        self.out(f"  rolled back  {sum(resolution.rolled_back.values())}")
        for reason, count in sorted(resolution.rolled_back.items(), key=lambda kv: -kv[1]):
            self.out(f"    {reason:<20} {count}")
        if resolution.resolved:
            self.out(f"  unanswered, resolved from the databases after recovery: "
                     f"{', '.join(f'{v} {k}' for k, v in resolution.resolved.items())}")  # fmt: skip
        if resolution.not_sent:
            self.out(f"  never sent (the order service stayed unreachable): {resolution.not_sent}")
        if self.chaos is not None:
            kills = ", ".join(f"{s.victim} after {s.after}" for s in self.chaos.struck)
            self.out(f"chaos: {len(self.chaos.struck)} SIGKILLs ({kills}); recovery finished {waited:.1f} s after "
                     "the last purchase")  # fmt: skip
            if self.chaos.missed:
                self.out(f"chaos: {len(self.chaos.missed)} planned kill(s) not reached before the run ended")
        self.out("checks:")
        for check in checks:
            detail = f" ({check.detail})" if check.detail else ""
            self.out(f"  {'ok  ' if check.ok else 'FAIL'}  {check.title}{detail}")

    def _stop_children(self) -> None:
        if self.driver is not None:
            self.driver.stop()
        # The TM first (no new transactions), then the participants, the TC last: phase two in
        # flight can still land. Each one is SIGKILLed if it does not stop in time.
        try:
            for name in ("order", "stock", "account", "tc"):
                child = self.children.get(name)
                if child is not None:
                    child.stop(timeout=8.0)
        except KeyboardInterrupt:  # impatient: a second Ctrl-C kills what is left, at once
            self.out("interrupted again: killing the remaining processes")
            for child in self.children.values():
                child.kill()
        if self.driver is not None:
            self.driver.join(5.0)

    def _tidy(self, code: int) -> None:
        if not self.folder.parts:
            return
        # Kept when something went wrong (the logs explain it) or when asked to; an interrupted run
        # or a set-up that started nothing leaves nothing worth reading in a temporary folder.
        nothing_ran = code == EXIT_SETUP and not self.children
        if (code in (EXIT_OK, EXIT_INTERRUPTED) or nothing_ran) and self.own_folder and not self.o.keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            self.out(f"logs{', store and databases' if self.dbs and self.dbs.order.kind == 'sqlite' else ' and store'}"
                     f" kept in {self.folder}")  # fmt: skip


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _service_argv(file: Path, tc: str, url: str, extra: list[str]) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "pyseata.demo.host", str(file), "--tc", tc, "--db", url, "--port", str(port),
                *extra]  # fmt: skip

    return argv


def _seed(schema: ModuleType, service: str, db: Database, seed: ShopSeed) -> None:
    schema.seed(service, db, prices=seed.prices, stock=seed.stock, balances=seed.balances)


def run_demo(options: DemoOptions, out: Callable[[str], None] | None = None, err: TextIO | None = None) -> int:
    """Runs the demo; returns the exit status (see the module doc)."""
    return Demo(options, out or print, err or sys.stderr).run()
