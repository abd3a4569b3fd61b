"""`pyseata frame explain` and `pyseata selfcheck`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pyseata.cli.main import main

BEGIN = "dada010000002300100001000000000400010000ea60000b706c6163652d6f72646572"
PING = "dada0100000010001003010000000007"


def test_explains_a_frame() -> None:
    result = CliRunner().invoke(main, ["frame", "explain", BEGIN])
    assert result.exit_code == 0, result.output
    assert "message type  REQUEST_SYNC (0)" in result.output
    assert "request id    4" in result.output
    assert "GlobalBeginRequest (type code 1)" in result.output
    assert "transaction_name  'place-order'" in result.output


def test_explains_several_frames_from_stdin_with_spaces() -> None:
    spaced = " ".join(BEGIN[i : i + 2] for i in range(0, len(BEGIN), 2))
    result = CliRunner().invoke(main, ["frame", "explain", "-"], input=f"{spaced}\n{PING}\n")
    assert result.exit_code == 0, result.output
    assert "frame 1 of 2" in result.output and "frame 2 of 2" in result.output
    assert "heartbeat PING" in result.output


def test_merged_message_shows_each_item(conformance_dir: Path) -> None:
    line = next(row for row in (conformance_dir / "golden-frames-2.3.0.tsv").read_text().splitlines()
                if row.startswith("MergedWarpMessage/none"))
    result = CliRunner().invoke(main, ["frame", "explain", line.split("\t")[1]])
    assert result.exit_code == 0, result.output
    assert "[0] msgId=15" in result.output and "[1] msgId=16" in result.output
    assert "'pay-order'" in result.output


def test_bad_input_gives_a_clear_error() -> None:
    runner = CliRunner()
    not_hex = runner.invoke(main, ["frame", "explain", "zz"])
    assert not_hex.exit_code == 2 and "not hexadecimal" in not_hex.output
    garbage = runner.invoke(main, ["frame", "explain", "474554"])
    assert garbage.exit_code == 2
    assert "bad magic byte 0x47" in garbage.output
    partial = runner.invoke(main, ["frame", "explain", BEGIN[:-10]])
    assert partial.exit_code == 0
    assert "trailing bytes do not make a whole frame" in partial.output


def test_selfcheck_runs_transactions_through_a_tc(conformance_dir: Path) -> None:
    """What `make run` runs, in a subprocess, with fewer transactions."""
    proc = subprocess.run(
        [sys.executable, "-m", "pyseata.cli.main", "selfcheck", "--conformance", str(conformance_dir),
         "--transactions", "60"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["protocol_ok"] is True
    assert summary["committed"] == 48 and summary["rolled_back"] == 12
    assert all(summary["checks"].values()), summary
