"""``pyseata server`` as an operator runs it: a real process, its ready line, SIGTERM, clear
errors for a busy port and bad settings, and a restart on the same SQLite file that carries on."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest

from asyncsupport import eventually, within
from pyseata.coordinator.settings import ServerSettings, load_settings
from pyseata.coordinator.store.sqlite import SqliteStore
from pyseata.errors import ConfigError
from pyseata.protocol.enums import BranchStatus, BranchType, GlobalStatus

from .conftest import RM, SERVER_COMMAND, TM, TcProcess

B = BranchStatus
G = GlobalStatus
RES = "jdbc:mysql://127.0.0.1:3306/order"


def run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``pyseata server`` expecting it to refuse to start."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([*SERVER_COMMAND, *args], check=False, capture_output=True, text=True, timeout=60,
                          env=full_env)


# --- start and stop -------------------------------------------------------------------------------------


async def test_ready_line_then_sigterm_exits_cleanly(tmp_path: Path) -> None:
    async with TcProcess(tmp_path, "--port", "0", "--store", "memory://", "--log-level", "INFO") as tc:
        port = await tc.start()
        assert port > 0
        async with TM(port) as tm:
            xid = await tm.begin()
            assert xid.startswith(f"127.0.0.1:{port}:")
        assert await tc.terminate() == 0
        log = tc.log_path.read_text()
        assert "TC stopped" in log and "Traceback" not in log


async def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    """Graceful: a TCC commit waiting for its RM when SIGTERM arrives is still answered."""
    async with TcProcess(tmp_path, "--port", "0", "--store", "memory://", "--log-level", "WARNING") as tc:
        port = await tc.start()
        async with TM(port) as tm, RM(port, [RES]) as rm:
            rm.gate = asyncio.Event()
            xid = await tm.begin()
            branch = await rm.register(xid, branch_type=BranchType.TCC)
            commit = asyncio.create_task(tm.commit(xid))
            await within(rm.arrived.wait(), 30, "the branch commit reaches the RM")
            assert tc.process is not None
            tc.process.terminate()  # SIGTERM while the commit waits for the RM
            await asyncio.sleep(0.2)  # let the TC start draining (not needed for correctness)
            rm.gate.set()
            assert await within(commit, 30, "the commit is answered") == G.Committed
            assert rm.done_for(xid) == [("commit", branch)]
        assert await tc.wait() == 0


async def test_a_port_in_use_is_a_clear_error_and_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await asyncio.to_thread(run_server, "--port", str(port), "--store", "memory://")
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


# --- bad settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[server]\nport = 'abc'\n", "port='abc' is not a valid int"),
        ("[server]\nport = 70000\n", "port must be between 0 and 65535"),
        ("[server]\nretry_period = 0\n", "retry_period must be more than zero"),
        ("[server]\nno_such_thing = 1\n", "unknown setting 'no_such_thing'"),
        ("[server]\nport = 2.5\n", "port=2.5 is not a valid int"),
        ("[server\nport = 1\n", "is not valid TOML"),
        ("[server]\nstore = 'mysql://nowhere'\n", "unsupported session store URL"),
    ],
)
def test_a_bad_setting_in_the_config_file_is_named(tmp_path: Path, toml: str, expected: str) -> None:
    config = tmp_path / "tc.toml"
    config.write_text(toml)
    result = run_server("--config", str(config))
    assert result.returncode == 2, result
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    result = run_server("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml does not exist" in result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PYSEATA_SERVER_PORT": "eighty"}, "environment: port='eighty' is not a valid int"),
        ({"PYSEATA_SERVER_RETRY_PERIOD": "-1"}, "retry_period must be more than zero"),
        ({"PYSEATA_SERVER_BATCH_RESPONSE": "perhaps"}, "batch_response='perhaps' is not a valid bool"),
        ({"PYSEATA_SERVER_COLOUR": "blue"}, "unknown setting 'COLOUR'"),
    ],
)
def test_a_bad_setting_in_the_environment_is_named(env: dict[str, str], expected: str) -> None:
    result = run_server("--store", "memory://", "--port", "0", env=env)
    assert result.returncode == 2, result
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--log-level", "LOUD"], "log_level must be one of DEBUG, INFO, WARNING, ERROR"),
        (["--worker-id", "5000"], "worker_id must be between 0 and 1023"),
        (["--port", "-1"], "port must be between 0 and 65535"),
        (["--store", "sqlite://relative-without-third-slash.db"], "sqlite:///relative/path.db"),
    ],
)
def test_a_bad_flag_is_named(flags: list[str], expected: str) -> None:
    result = run_server(*flags)
    assert result.returncode == 2, result
    assert expected in result.stderr, result.stderr


def test_settings_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "tc.toml"
    config.write_text("[server]\nport = 1111\nretry_period = 2.0\nstore = 'memory://'\nmax_commit_retry_ms = 5000\n")
    settings = load_settings(str(config), {"port": 3333, "host": None},
                             environ={"PYSEATA_SERVER_PORT": "2222", "PYSEATA_SERVER_RETRY_PERIOD": "3",
                                      "PYSEATA_SERVER_MAX_COMMIT_RETRY_MS": "none", "OTHER": "x"})
    assert settings.port == 3333  # flag beats environment beats file
    assert settings.retry_period == 3.0  # environment beats file
    assert settings.max_commit_retry_ms is None  # "none" unsets an optional setting
    assert settings.store == "memory://"
    assert settings.host == ServerSettings().host  # a flag left out changes nothing
    with pytest.raises(ConfigError, match="true"):
        load_settings(None, environ={"PYSEATA_SERVER_PORT": "true"})


# --- restart ---------------------------------------------------------------------------------------------------


async def test_a_restart_on_the_same_sqlite_file_carries_on(tmp_path: Path) -> None:
    db = tmp_path / "tc.db"
    args = ("--store", f"sqlite:///{db}", "--log-level", "INFO")
    env = {"PYSEATA_SERVER_RETRY_PERIOD": "0.05", "PYSEATA_SERVER_RETRY_BACKOFF_MAX": "0.2"}
    async with TcProcess(tmp_path, *args, env=env) as tc:
        port = await tc.start("--port", "0")
        async with TM(port) as tm, RM(port, [RES]) as rm:
            rm.script = lambda call: B.PhaseTwo_RollbackFailed_Retryable
            open_tx = await tm.begin()
            open_branch = await rm.register(open_tx, lock_key="t:1")
            stuck = await tm.begin()
            stuck_branch = await rm.register(stuck, lock_key="t:2")
            assert await tm.rollback(stuck) == G.RollbackRetrying

            assert await tc.terminate() == 0
            await tc.start("--port", str(port))
            assert "2 unfinished transaction(s)" in tc.log_path.read_text()

            rm.script = None  # the RM is fine again: the restarted TC finishes the rollback
            await eventually(lambda: rm.done_for(stuck) == [("rollback", stuck_branch)])
            assert await tm.status(open_tx) == G.Begin
            assert await tm.commit(open_tx) == G.Committed  # the open one goes on as if nothing happened
            await eventually(lambda: rm.done_for(open_tx) == [("commit", open_branch)])
            assert await tm.status(stuck) == G.Finished
        assert await tc.terminate() == 0
    async with SqliteStore(db) as store:
        assert await store.count_globals() == 0
        assert await store.count_locks() == 0
