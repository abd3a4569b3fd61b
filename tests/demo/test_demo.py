"""``pyseata demo`` as a user runs it: real processes (a TC, the three shop services), real HTTP,
SQLite databases. A short normal run and a short ``--chaos`` run must end with every consistency
check passing (read from the JSON last line); Ctrl-C must leave no child behind; a port in use
and an unreachable database must be one clear message and exit status 2; and the checks must
really catch a shop that does not add up.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyseata.demo.checks import ShopDatabases, leftovers, run_checks
from pyseata.demo.db import Database, service_url
from pyseata.demo.driver import seed_shop
from pyseata.demo.runner import at_available

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
CHECKS = (
    "stock_sold_equals_items_ordered", "money_charged_equals_committed_orders", "no_order_without_charge_and_stock",
    "stock_and_money_conserved", "no_undo_log_in_non_final_state", "no_fence_in_non_final_state",
    "no_global_lock_or_session_left", "no_business_row_half_done", "answers_match_databases", "recovery_finished",
)  # fmt: skip


MODES = ["at", "tcc"] if at_available() is None else ["tcc"]


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyseata.cli.main", "demo", "--no-progress", "--shop-dir", str(SHOP), *args]


def environment() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        assert lines, f"no output; stderr:\n{self.stderr}"
        parsed: dict[str, Any] = json.loads(lines[-1])
        return parsed

    def explain(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-3000:]}"


def run_demo(*args: str, timeout: float = 55.0) -> Run:
    done = subprocess.run(demo_command(*args), capture_output=True, text=True, timeout=timeout, env=environment(),
                          check=False)  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


def assert_all_checks_pass(run: Run) -> dict[str, Any]:
    result = run.result
    assert result["checks"] == dict.fromkeys(CHECKS, True), run.explain()
    assert result["ok"] is True and run.code == 0, run.explain()
    return result


# --- a normal run and a chaos run -----------------------------------------------------------------


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    workdir = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    run = run_demo("--purchases", "60", "--buyers", "6", "--seed", "7", "--fail-rate", "0.2", "--workdir",
                   str(workdir), "--keep")  # fmt: skip
    assert time.monotonic() - started < 45, run.explain()
    return run, workdir


def test_a_normal_run_adds_up(normal_run: tuple[Run, Path]) -> None:
    run, _ = normal_run
    result = assert_all_checks_pass(run)
    assert result["purchases"] == 60 and result["modes"] == MODES
    assert result["committed"] + result["rolled_back"] == 60, run.explain()
    assert result["committed"] > 0
    # Some purchases fail on purpose after every service wrote; nothing is left unanswered.
    assert result["rolled_back_by_reason"].get("injected_failure", 0) > 0, run.explain()
    assert result["unanswered_resolved"] == {} and result["not_sent"] == 0
    assert set(result["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert "stock sold equals the items of the committed orders" in run.stdout
    assert "not deleted" not in run.stdout  # no service was killed: every undo log of a commit went


def test_both_flows_commit_and_roll_back_in_a_normal_run(normal_run: tuple[Run, Path]) -> None:
    run, workdir = normal_run
    assert run.code == 0, run.explain()
    orders = Database.from_url(f"sqlite:///{workdir / 'order.db'}")
    by_mode = dict(orders.run("SELECT mode, COUNT(*) FROM orders WHERE status = 'confirmed' GROUP BY mode"))
    assert set(by_mode) == set(MODES), by_mode
    # AT rolls back by deleting the order it inserted; TCC keeps it, cancelled.
    cancelled = dict(orders.run("SELECT mode, COUNT(*) FROM orders WHERE status = 'cancelled' GROUP BY mode"))
    assert set(cancelled) == {"tcc"}, cancelled


def test_chaos_kills_the_tc_and_a_service_and_everything_still_adds_up(tmp_path: Path) -> None:
    started = time.monotonic()
    run = run_demo("--purchases", "80", "--buyers", "6", "--seed", "11", "--chaos", "--chaos-kills", "2",
                   "--tx-timeout", "3", "--recovery-timeout", "30", "--workdir", str(tmp_path))  # fmt: skip
    assert time.monotonic() - started < 55, run.explain()
    result = assert_all_checks_pass(run)
    victims = [kill["victim"] for kill in result["chaos"]["kills"]]
    assert "tc" in victims and set(victims) - {"tc"}, run.explain()
    assert result["chaos"]["missed"] == []
    assert result["committed"] + result["rolled_back"] + result["not_sent"] == 80, run.explain()
    assert "chaos: SIGKILL tc" in run.stdout


# --- the checks are not vacuous -------------------------------------------------------------------


def test_the_checks_catch_a_shop_that_does_not_add_up(normal_run: tuple[Run, Path]) -> None:
    run, workdir = normal_run
    assert run.code == 0, run.explain()
    dbs = ShopDatabases(*(Database.from_url(f"sqlite:///{workdir / f'{name}.db'}")
                          for name in ("order", "stock", "account")))  # fmt: skip
    seed = seed_shop(random.Random(7), 60)  # the runner's first draw from the same seed

    def failing() -> set[str]:
        left = leftovers(dbs, workdir / "tc.db")
        checks, _ = run_checks(dbs, seed, [], left, workdir / "tc.db", recovered=not any(left.values()), waited=0.0)
        return {c.name for c in checks if not c.ok}

    assert failing() == set()
    order_id, sku = dbs.order.run("SELECT id, sku FROM orders WHERE status = 'confirmed' LIMIT 1")[0]
    dbs.stock.run("UPDATE stock SET sold = sold + 1 WHERE sku = ?", (sku,))  # one item sold twice
    assert failing() == {"stock_sold_equals_items_ordered", "stock_and_money_conserved"}
    dbs.stock.run("UPDATE stock SET sold = sold - 1 WHERE sku = ?", (sku,))
    dbs.account.run("UPDATE charge SET state = 'frozen' WHERE order_id = ?", (order_id,))  # a charge left half done
    assert failing() == {"no_order_without_charge_and_stock", "no_business_row_half_done", "recovery_finished"}
    dbs.account.run("UPDATE charge SET state = 'done' WHERE order_id = ?", (order_id,))
    dbs.order.run(
        "INSERT INTO tcc_fence_log (xid, branch_id, action_name, status, gmt_create, gmt_modified) "
        "VALUES ('x:1:2', 3, 'shop-order-place', 1, '', '')"
    )  # a try never confirmed nor cancelled
    assert failing() == {"no_fence_in_non_final_state", "recovery_finished"}


# --- PostgreSQL and MariaDB ---------------------------------------------------------------------


PG_URL = os.environ.get("PYSEATA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("PYSEATA_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")


@pytest.mark.parametrize("url", [PG_URL, MYSQL_URL], ids=["postgresql", "mariadb"])
def test_a_run_on_a_database_server_adds_up(url: str, tmp_path: Path) -> None:
    from conftest import missing  # tests/conftest.py: skip here, fail in CI

    prefix = f"demo_{os.getpid()}_"
    probe = Database.from_url(url)
    try:
        probe.connect().close()
    except Exception as exc:
        missing(f"no database server at {url} for the demo ({exc})")
    try:
        run = run_demo("--purchases", "40", "--buyers", "4", "--seed", "5", "--db", url, "--db-prefix", prefix,
                       "--workdir", str(tmp_path))  # fmt: skip
        assert_all_checks_pass(run)
        assert f"{prefix}stock" in run.stdout
    finally:
        for name in ("order", "stock", "account"):
            db = Database.from_url(service_url(url, name, folder=tmp_path, prefix=prefix))
            db.drop()


# --- Ctrl-C, ports, databases ---------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead, only not yet reaped by its new parent
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    command = demo_command("--purchases", "20000", "--buyers", "4", "--workdir", str(tmp_path))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment())
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_ctrl_c_stops_every_child(demo_process: subprocess.Popen[str]) -> None:
    assert demo_process.stdout is not None
    pids: dict[str, int] = {}
    lines: list[str] = []
    deadline = time.monotonic() + 40
    while len(pids) < 4 and time.monotonic() < deadline:
        line = demo_process.stdout.readline()
        if not line:
            break
        lines.append(line)
        words = line.split()
        if len(words) >= 3 and words[0] in ("tc", "order", "stock", "account") and words[1] == "pid":
            pids[words[0]] = int(words[2])
    assert len(pids) == 4, "".join(lines)
    time.sleep(1.5)  # purchases in flight: transactions open in every process
    assert all(_alive(pid) for pid in pids.values())
    demo_process.send_signal(signal.SIGINT)
    out, _ = demo_process.communicate(timeout=40)
    assert demo_process.returncode == 130, out
    assert json.loads(out.strip().splitlines()[-1])["interrupted"] is True
    survivors = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert survivors == {}, out


def test_a_port_in_use_is_one_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_demo("--purchases", "5", "--tc-port", str(port), "--workdir", str(tmp_path), timeout=40)
    assert run.code == 2, run.explain()
    assert f"port {port} on 127.0.0.1 is already in use" in run.stdout, run.explain()
    assert run.result["ok"] is False


def test_an_unreachable_database_is_one_clear_message(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = run_demo("--purchases", "5", "--db", f"postgresql://postgres:secret@127.0.0.1:{port}/test", "--workdir",
                   str(tmp_path), timeout=40)  # fmt: skip
    assert run.code == 2, run.explain()
    assert f"cannot connect to the PostgreSQL server at 127.0.0.1:{port}" in run.stdout, run.explain()
    assert "secret" not in run.stdout + run.stderr
