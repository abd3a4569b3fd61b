"""Seata SDK version strings, compared the way ``org.apache.seata.core.protocol.Version`` does."""

from __future__ import annotations

import re

__all__ = ["is_at_least", "version_to_int"]

_LEADING_DIGITS = re.compile(r"\d+")


def version_to_int(version: str) -> int:
    """Seata's ``convertVersion``: "1.5.0" -> 1050000, "2.3.0-SNAPSHOT" -> 2030000.

    At most four dot-separated parts; part ``i`` (1-based) contributes ``n * 100 ** (4 - i)``.
    A part that is not a number contributes the number it starts with after splitting on "-"
    (0 when there is none). Raises ``ValueError`` for a blank version or more than four parts.
    """
    text = version.strip()
    if not text:
        raise ValueError("blank version string")
    parts = text.split(".")
    if len(parts) > 4:
        raise ValueError(f"incompatible version {version!r}: more than four parts")
    total = 0
    for i, part in enumerate(parts, start=1):
        if part.isdigit():
            number = int(part)
        else:
            match = _LEADING_DIGITS.match(part.split("-", 1)[0])
            number = int(match.group()) if match else 0
        total += number * 100 ** (4 - i)
    return total


def is_at_least(version: str | None, minimum: str) -> bool:
    """True when ``version`` parses and is >= ``minimum``; any error gives False, as in Seata."""
    try:
        return version_to_int(version or "") >= version_to_int(minimum)
    except ValueError:
        return False
