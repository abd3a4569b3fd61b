"""atheris target for long fuzzing runs of the AT-mode SQL recogniser.

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_sql.py -max_total_time=600 [corpus_dir]

The input's first byte picks the dialect and the paramstyle, the rest is the statement (UTF-8,
invalid bytes replaced). The only invariant: recognize() returns a Statement whose fragments are
the statement's own text, or raises SQLNotSupportedError quoting the statement. Anything else
(AttributeError, IndexError, decimal errors, a sqlglot exception, a hang) is a bug. The hypothesis
tests in tests/at/test_recognizer_fuzz.py check the same invariant in every `make test`.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from pyseata.at.errors import SQLNotSupportedError
    from pyseata.at.recognizer import recognize

DIALECTS = ("mysql", "postgres", "sqlite")
STYLES = (None, "format", "pyformat", "qmark", "named", "dollar", "numeric")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    dialect = DIALECTS[data[0] % len(DIALECTS)]
    style = STYLES[(data[0] // len(DIALECTS)) % len(STYLES)]
    sql = data[1:].decode("utf-8", "replace")
    try:
        stmt = recognize(sql, dialect, style)
    except SQLNotSupportedError as exc:
        if exc.sql != sql or not str(exc).startswith("AT mode cannot run this statement safely: "):
            raise AssertionError(f"an unclear refusal: {exc}") from exc
        return
    for fragment in (stmt.where, stmt.order_by, stmt.limit, stmt.returning, stmt.select_from):
        if fragment is not None and sql[fragment.start : fragment.start + len(fragment.sql)] != fragment.sql:
            raise AssertionError(f"fragment {fragment!r} is not the statement's own text")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
