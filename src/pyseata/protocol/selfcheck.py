"""``pyseata selfcheck``: the codec against Seata's golden frames, in a few seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from pyseata.errors import ProtocolError
from pyseata.protocol.frame import FrameDecoder, encode_frame

__all__ = ["run_selfcheck"]


def _default_dir() -> Path:
    for base in (Path.cwd(), *Path.cwd().parents):
        candidate = base / "shared" / "conformance"
        if candidate.is_dir():
            return candidate
        candidate = base.parent / "shared" / "conformance"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "conformance"


def run_selfcheck(folder: str | None, echo: Callable[[str], None] = print, *, emit_json: bool = True) -> bool:
    root = Path(folder) if folder else _default_dir()
    files = sorted(root.glob("golden-frames-*.tsv")) + sorted(root.glob("capture-*.tsv"))
    if not files:
        echo(f"no conformance files in {root}; pass --conformance DIR")
        return False
    started = time.perf_counter()
    checked = failed = 0
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            cols = line.split("\t")
            wire = bytes.fromhex(cols[1] if path.name.startswith("golden") else cols[2])
            checked += 1
            try:
                (frame,) = FrameDecoder().feed(wire)
                if encode_frame(frame) != wire:
                    raise ProtocolError("re-encoding gives different bytes")
            except (ProtocolError, ValueError) as exc:
                failed += 1
                echo(f"FAIL {path.name}:{n} {cols[0]}: {exc}")
    elapsed = time.perf_counter() - started
    echo(f"protocol self-check: {checked - failed}/{checked} Java frames decode and re-encode byte for byte "
         f"({len(files)} files, {elapsed * 1000:.0f} ms)")
    if emit_json:
        echo(json.dumps({"frames": checked, "failed": failed, "files": len(files)}))
    return failed == 0
