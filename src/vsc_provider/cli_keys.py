"""`vsc key export-public`: a card's public key as PEM, DER or a JWK, for implementers (key_info.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vsc_provider import key_info
from vsc_provider.cli_support import friendly


@click.command("export-public")
@click.argument("card_ref")
@click.argument("selector")
@click.option(
    "--format", "fmt", type=click.Choice(key_info.FORMATS), default="pem", show_default=True, help="output format"
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="file (default: stdout)")
@friendly
def export_public(card_ref: str, selector: str, fmt: str, out: Path | None) -> None:
    """Print the public key labelled SELECTOR (or with that hex id) of card CARD_REF (serial, slot or label);
    a JWK's kid is the key's CKA_ID in hex."""
    data = key_info.export_public(card_ref, selector, fmt)
    if out is not None:
        out.write_bytes(data)
        click.echo(f"wrote {out}")
    elif fmt == "der":
        sys.stdout.buffer.write(data)
    else:
        click.echo(data.decode(), nl=False)
