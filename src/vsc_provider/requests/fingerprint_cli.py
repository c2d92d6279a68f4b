"""`vsc requests fingerprint enable|disable|status`: approving a card's requests with a fingerprint that fprintd
verifies, the card's PIN sealed under its device-key layer until then (requests/fingerprint.py)."""

from __future__ import annotations

import json

import click

from vsc_provider.cli_support import ask, friendly


@click.group("fingerprint")
def fingerprint() -> None:
    """Approve requests with a fingerprint (fprintd) instead of typing the PIN."""


@fingerprint.command("enable")
@click.option("--card", "card_ref", required=True, help="the card's label, serial or slot number")
@click.option("--pin", default=None, help="the card's user PIN (asked for when omitted)")
@friendly
def enable(card_ref: str, pin: str | None) -> None:
    """Seal the card's PIN under its device key, released after fprintd reports a match."""
    from vsc_provider import api
    from vsc_provider.requests import fingerprint as fp
    from vsc_provider.requests.model import RequestError

    card = api.find_card(card_ref)
    try:
        fp.enable(api.engine(), card, ask(pin, f"PIN of card {card.label!r}"))
    except RequestError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"fingerprint approval enabled for card {card.label!r} ({card.serial})")


@fingerprint.command("disable")
@click.option("--card", "card_ref", required=True, help="the card's label, serial or slot number")
@friendly
def disable(card_ref: str) -> None:
    """Forget the sealed PIN: approvals ask for the PIN again."""
    from vsc_provider import api
    from vsc_provider.requests import fingerprint as fp

    card = api.find_card(card_ref)
    if fp.disable(api.engine(), card):
        click.echo(f"fingerprint approval disabled for card {card.label!r} ({card.serial})")
    else:
        click.echo(f"fingerprint approval was not enabled for card {card.label!r} ({card.serial})")


@fingerprint.command("status")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@friendly
def status(as_json: bool) -> None:
    """Which cards approve with a fingerprint, and whether fprintd has a finger enrolled for this user."""
    from vsc_provider import api
    from vsc_provider.requests import fprint
    from vsc_provider.token import fingerprint_pin

    eng = api.engine()
    eng.refresh()
    try:
        fingers: list[str] | None = fprint.enrolled_fingers()
        reason = ""
    except fprint.Unavailable as exc:
        fingers, reason = None, str(exc)
    cards = []
    for card in sorted(eng.cards.values(), key=lambda c: c.slot_id):
        entry = fingerprint_pin.entry(eng, card)
        cards.append(
            {
                "card": card.serial,
                "label": card.label,
                "enabled": entry is not None,
                "no_matches": int(entry.get("failures", 0)) if entry else 0,
                "usable": fingerprint_pin.usable(entry) and bool(fingers),
            }
        )
    if as_json:
        click.echo(json.dumps({"fprintd": fingers is not None, "fingers": fingers or [], "cards": cards}, indent=2))
        return
    if fingers is None:
        click.echo(f"fprintd: not available ({reason})")
    else:
        click.echo(f"fprintd: {len(fingers)} finger(s) enrolled for this user")
    for row in cards:
        state = "usable" if row["usable"] else ("enabled" if row["enabled"] else "off")
        click.echo(f"card {row['label']!r} ({row['card']}): {state}, {row['no_matches']} no-match(es)")
