"""atheris target for long fuzzing runs of the frame decoder.

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_decoder.py -max_total_time=600 [corpus_dir]

The only invariant: any input either decodes or raises RemoteProtocolError. Anything else
(IndexError, struct.error, MemoryError, a hang) is a bug. The hypothesis tests in
tests/protocol/test_fuzz.py check the same invariant in every `make test`.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from pyseata.errors import RemoteProtocolError
    from pyseata.protocol.codec import decode_body
    from pyseata.protocol.frame import FrameDecoder


def test_one_input(data: bytes) -> None:
    decoder = FrameDecoder(max_frame_length=1 << 20)
    with contextlib.suppress(RemoteProtocolError):
        decoder.feed(data)
    with contextlib.suppress(RemoteProtocolError):
        decode_body(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
