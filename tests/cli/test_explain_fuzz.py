"""`pyseata frame explain` with hostile input: an explanation (exit 0) or one clear error line
(exit 2), never a traceback, whatever comes as HEX or on stdin."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyseata.cli.main import main

FUZZ = settings(max_examples=200, deadline=None)
PING = "dada0100000010001003010000000007"


def _check(result: Result) -> None:
    """Exit 0 with an explanation, or exit 2 with exactly one error line; nothing else."""
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    if result.exit_code == 0:
        assert lines, "an explanation was expected"
        assert lines[0].startswith("frame 1 of ") or lines[0].endswith("trailing bytes do not make a whole frame")
        return
    errors = [line for line in lines if line.startswith(("Error: ", "error: "))]
    assert len(errors) == 1, result.output
    assert lines[-1] == errors[0]  # the error is the last thing said, on one line
    assert len(errors[0]) > len("error: ") + 10  # and it says something


def _explain(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["frame", "explain", *args], input=stdin)


@pytest.fixture(scope="module")
def golden(conformance_dir: Path) -> list[bytes]:
    rows = (conformance_dir / "golden-frames-2.3.0.tsv").read_text().splitlines()
    return [bytes.fromhex(row.split("\t")[1]) for row in rows if row.count("\t") >= 1 and not row.startswith("#")]


@FUZZ
@given(st.text(max_size=80))
@example("zz")
@example("0x")
@example("dada")
@example("\u0663\u0663")  # Arabic-Indic digits: not hex
@example("\udcff")  # a byte of argv that was not UTF-8
def test_random_text_as_hex(text: str) -> None:
    _check(_explain("--", text))


@FUZZ
@given(st.binary(max_size=120), st.sampled_from(["{}", "0x{}", "{} ", "{}\n"]))
@example(bytes.fromhex("dada01ffffffff001003010000000007"), "{}")  # a negative frame length
@example(bytes.fromhex("dada010000001000100f010000000007"), "{}")  # unknown message type
@example(bytes.fromhex(PING) + b"\xda", "{}")  # a frame and a stray byte
def test_random_bytes_as_hex(data: bytes, shape: str) -> None:
    _check(_explain(shape.format(data.hex())))


@FUZZ
@given(st.binary(max_size=120))
@example(b"\xff\xfe")  # not UTF-8: was a UnicodeDecodeError traceback
@example(b"dada\x00")
def test_random_bytes_on_stdin(data: bytes) -> None:
    _check(_explain("-", stdin=data))


@FUZZ
@given(st.data())
def test_mutated_real_frames(golden: list[bytes], data: st.DataObject) -> None:
    frame = bytearray(data.draw(st.sampled_from(golden)))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(frame)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip" and at < len(frame):
            frame[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del frame[at : at + data.draw(st.integers(1, 8))]
        elif action == "insert":
            frame[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del frame[at:]
    _check(_explain(frame.hex()))


def test_a_real_frame_passes_the_check_and_garbage_fails_it() -> None:
    """The property above can fail: a clean frame is explained, and the checks reject other shapes."""
    _check(_explain(PING))
    assert _explain(PING).exit_code == 0
    bad = _explain("-", stdin=b"\xff")
    assert bad.exit_code == 2 and "stdin is not text" in bad.output
