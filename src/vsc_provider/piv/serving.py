"""The engine and card `vsc pcsc serve` answers for: the store at VSC_HOME, server-checked PINs reaching their
server as they do from PKCS#11 and the `vsc` command."""

from __future__ import annotations

import click

from vsc_provider.token.engine import Card, Engine


def open_card(card_ref: str) -> tuple[Engine, Card]:
    engine = Engine()
    from vsc_provider.provisioning.online import ServerPinCheck

    engine.online = ServerPinCheck()
    engine.audit.front_end = "piv"
    engine.refresh()
    matches = [c for c in engine.cards.values() if card_ref.lower() in (c.serial.lower(), c.label.lower())]
    if len(matches) != 1:
        reason = "no card" if not matches else "several cards"
        raise click.ClickException(f"{reason} named {card_ref!r}")
    return engine, matches[0]
