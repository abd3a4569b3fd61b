"""``python -m pyseata.demo.tc [pyseata server options]``: the demo's TC.

Exactly ``pyseata server``, plus one thing: with ``PYSEATA_DEMO_PARENT`` set it stops (SIGTERM to
itself: the server's orderly stop) when the demo that started it is gone, even if the demo was
SIGKILLed and never got to stop its children.
"""

from __future__ import annotations

import os
import sys

from pyseata.demo.host import PARENT_ENV, watch_parent


def main(argv: list[str] | None = None) -> None:
    parent = os.environ.get(PARENT_ENV)
    if parent:
        watch_parent(int(parent))
    from pyseata.cli.main import main as cli

    cli(["server", *(sys.argv[1:] if argv is None else argv)], prog_name="pyseata")


if __name__ == "__main__":
    main()
