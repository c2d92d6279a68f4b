"""`vsc audit`: a card's audit log (token/audit.py), listed and verified. Needs the device key, not the PIN."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from vsc_provider.cli_support import friendly

_CARD_HELP = "card serial, slot number or label"


def _read(card_ref: str) -> tuple[Any, Any, list[Any], Any]:
    from vsc_provider import api

    engine = api.engine()
    card = api.find_card(card_ref)
    engine.audit.flush()  # this process's own entries first
    chain, head = engine.audit.chain(card.slot_id)
    return engine, card, chain, head


def _when(micros: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(micros // 1_000_000)) + f".{micros % 1_000_000:06d}Z"


@click.group()
def audit() -> None:
    """The card's audit log: every key use, login, PIN change, block and unblock (no data, no PINs)."""


@audit.command("list")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@friendly
def audit_list(card_ref: str, as_json: bool) -> None:
    """Every entry of the card's log, oldest first."""
    from vsc_provider.token import audit as token_audit

    engine, card, chain, head = _read(card_ref)
    if as_json:
        entries = [{**e._asdict(), "prev": e.prev.hex(), "hash": e.hash.hex()} for e in chain]
        signed = None
        if head is not None:
            public = token_audit.public_key_hex(engine.device_key, card.serial, head)
            signed = {"seq": head.seq, "hash": head.hash.hex(), "signature": head.signature.hex(), "public_key": public}
        click.echo(json.dumps({"card": card.serial, "entries": entries, "signed_head": signed}, indent=2))
        return
    for e in chain:
        key = f"{e.key_id}{' ' + repr(e.key_label) if e.key_label else ''}" if e.key_id or e.key_label else "-"
        click.echo(f"{e.seq:6d} {_when(e.time)} {e.kind:16s} {key} {e.mechanism or '-'} {e.origin} {e.result}")
    if not chain:
        click.echo("no entries")


@audit.command("verify")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@friendly
def audit_verify(card_ref: str) -> None:
    """Check the chain and its signed head; names the first bad entry (exit status 1) when it was changed,
    removed or reordered."""
    from vsc_provider.token import audit as token_audit

    engine, card, chain, head = _read(card_ref)
    try:
        count = token_audit.verify(engine.device_key, card.serial, chain, head)
    except token_audit.AuditBroken as exc:
        raise click.ClickException(str(exc)) from None
    if not count:
        click.echo(f"audit log of {card.label} ({card.serial}): no entries yet")
        return
    click.echo(f"audit log of {card.label} ({card.serial}): {count} entries, chain and signed head verified")
