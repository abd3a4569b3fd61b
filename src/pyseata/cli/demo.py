"""``pyseata demo``: the sample shop under load (and under chaos), then the consistency checks."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

__all__ = ["demo"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM ends the demo the way Ctrl-C does: children stopped, nothing left behind.
    raise KeyboardInterrupt


@click.command("demo")
@click.option("--purchases", "-n", type=click.IntRange(1), default=200, show_default=True, help="Purchases to make.")
@click.option("--buyers", "-c", type=click.IntRange(1, 256), default=8, show_default=True, help="Concurrent buyers.")
@click.option(
    "--fail-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.1,
    show_default=True,
    help="Share of purchases that fail on purpose after every service wrote.",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "tcc", "at"]),
    default="auto",
    show_default=True,
    help="Transaction mode of the purchases (auto: every mode this pyseata has).",
)
@click.option(
    "--db",
    default="sqlite",
    show_default=True,
    metavar="URL",
    help="sqlite (files in the run folder), postgresql://user@host:port/db (a schema per service) or "
    "mysql://user@host:port (a database per service; MariaDB too).",
)
@click.option(
    "--db-prefix",
    default="pyseata_shop_",
    show_default=True,
    help="Prefix of the schemas / databases the demo creates (and drops and recreates) per service.",
)
@click.option("--chaos", is_flag=True, help="SIGKILL and restart the TC and services at random moments.")
@click.option(
    "--chaos-kills",
    type=click.IntRange(2),
    default=4,
    show_default=True,
    help="How many SIGKILLs with --chaos (the TC at least once, a service at least once).",
)
@click.option("--seed", type=int, default=None, help="Random seed: the same seed plans the same purchases.")
@click.option(
    "--tx-timeout",
    type=click.FloatRange(min=1.0),
    default=10.0,
    show_default=True,
    help="Global transaction timeout (s): a purchase whose TM died is rolled back after it.",
)
@click.option(
    "--recovery-timeout",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="Longest wait (s) for phase two and recovery to finish before checking.",
)
@click.option(
    "--tc-port", type=click.IntRange(0, 65535), default=0, show_default=True, help="TC port (0: any free port)."
)
@click.option("--order-port", type=click.IntRange(0, 65535), default=0, show_default=True)
@click.option("--stock-port", type=click.IntRange(0, 65535), default=0, show_default=True)
@click.option("--account-port", type=click.IntRange(0, 65535), default=0, show_default=True)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the TC store, SQLite databases and logs (default: a temporary one).",
)
@click.option("--keep", is_flag=True, help="Keep the run folder even when every check passed.")
@click.option(
    "--shop-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="The sample shop's services (default: examples/shop of this source tree).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def demo(*, purchases: int, buyers: int, fail_rate: float, mode: str, db: str, db_prefix: str, chaos: bool,
         chaos_kills: int, seed: int | None, tx_timeout: float, recovery_timeout: float, tc_port: int,
         order_port: int, stock_port: int, account_port: int, workdir: Path | None, keep: bool,
         shop_dir: Path | None, no_progress: bool) -> None:  # fmt: skip
    """Run the sample shop: a TC and three services (order, stock, account), concurrent buyers,
    purchases that commit or roll back (some on purpose), then check that stock, orders and money
    add up. The last line printed is one JSON object; the exit status is 1 if a check failed."""
    from pyseata.demo.runner import DemoOptions, run_demo

    options = DemoOptions(
        purchases=purchases, buyers=buyers, fail_rate=fail_rate, mode=mode, db=db, db_prefix=db_prefix,
        chaos=chaos, chaos_kills=chaos_kills, seed=seed, tx_timeout=tx_timeout, recovery_timeout=recovery_timeout,
        tc_port=tc_port, ports={"order": order_port, "stock": stock_port, "account": account_port},
        workdir=workdir, keep=keep, shop_dir=shop_dir, progress=not no_progress,
    )  # fmt: skip
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = run_demo(options, out=click.echo, err=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)
