"""The ``pyseata`` command line."""

from __future__ import annotations

import sys

import click

from pyseata.errors import ProtocolError


@click.group()
@click.version_option(package_name="pyseata")
def main() -> None:
    """pyseata: distributed transactions for Python services."""


def _register_commands() -> None:
    from pyseata.cli.demo import demo
    from pyseata.cli.server import server

    main.add_command(server)
    main.add_command(demo)


@main.group()
def frame() -> None:
    """Look inside Seata protocol v1 frames."""


@frame.command("explain")
@click.argument("hex_text", metavar="HEX", required=False)
def frame_explain(hex_text: str | None) -> None:
    """Print the header and fields of the frame(s) in HEX (or stdin when HEX is '-' or absent)."""
    from pyseata.protocol.explain import explain_bytes, parse_hex

    if hex_text in (None, "-"):
        try:
            hex_text = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise click.UsageError(f"stdin is not text, so not hex: {exc}") from None
    try:
        data = parse_hex(hex_text or "")
    except ValueError as exc:
        raise click.UsageError(f"HEX is not hexadecimal: {exc}") from None
    if not data:
        raise click.UsageError("no bytes given: pass the frame as hex, e.g. dada0100000010001003010000000007")
    try:
        click.echo(explain_bytes(data))
    except ProtocolError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.option("--conformance", type=click.Path(file_okay=False), default=None,
              help="Folder of Seata's golden frames (default: ../shared/conformance).")
@click.option("--transactions", type=int, default=500, show_default=True,
              help="Global transactions to run through a TC on a fresh SQLite store.")
def selfcheck(conformance: str | None, transactions: int) -> None:
    """Check the codec against Seata's own frames, then run global transactions through a TC."""
    import json

    from pyseata.protocol.selfcheck import run_selfcheck
    from pyseata.tcround import run_tc_round

    protocol_ok = run_selfcheck(conformance, echo=click.echo, emit_json=False)
    result = run_tc_round(transactions, echo=click.echo) if transactions > 0 else {"checks": {}}
    ok = protocol_ok and all(result["checks"].values())
    click.echo(json.dumps({"protocol_ok": protocol_ok, **result, "ok": ok}))
    sys.exit(0 if ok else 1)


_register_commands()

if __name__ == "__main__":
    main()
