"""`vsc pcsc serve`: a card as a PIV card in a PC/SC virtual reader (vsmartcard's vpcd inside pcscd)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from vsc_provider.cli_support import ask, friendly

if TYPE_CHECKING:
    from vsc_provider.token.engine import Card, Engine

_CARD_HELP = "card serial or label"


_stopping = threading.Event()


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGINT: stop serving (the serving loop looks at the flag at least twice a second)."""
    _stopping.set()


@click.group()
def pcsc() -> None:
    """The card as a PIV smart card on a PC/SC virtual reader (vpcd, in pcscd)."""


@pcsc.command("serve")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="where vpcd listens")
@click.option("--port", default=35963, show_default=True, type=click.IntRange(1, 65535), help="vpcd's port")
@click.option("--slot", "slots", multiple=True, help="a key slot's CKA_ID, as 9A=01 (defaults 9A=01 9C=02 9D=03 9E=04)")
@click.option(
    "--management-key",
    "mgmt_key",
    default=None,
    help="set this management key (hex) instead of keeping the card's (the SO PIN is asked for)",
)
@click.option(
    "--management-key-algorithm",
    "mgmt_alg",
    type=click.Choice(["aes128", "aes192", "aes256", "3des"]),
    default="aes192",
    show_default=True,
    help="the algorithm of a new management key",
)
@click.option("--so-pin", default=None, help="SO PIN, to set the management key the first time (asked for)")
@friendly
def serve(
    card_ref: str, host: str, port: int, slots: tuple[str, ...], mgmt_key: str | None, mgmt_alg: str, so_pin: str | None
) -> None:
    """Serve the card as a PIV card (SP 800-73-4) to vpcd at HOST:PORT until stopped (SIGTERM, Ctrl-C),
    connecting again when pcscd restarts. The first time, a random management key is set (with the SO PIN)
    and printed once: keep it to generate keys and write certificates through PIV."""
    from vsc_provider.piv import objects as O
    from vsc_provider.piv import serving

    try:
        slot_ids = O.parse_slot_map(list(slots))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    engine, card = serving.open_card(card_ref)
    signal.signal(signal.SIGTERM, _stop)  # before the key is printed: whoever reads it may stop us at once
    signal.signal(signal.SIGINT, _stop)
    _serve(engine, card, host, port, slot_ids, mgmt_key, mgmt_alg, so_pin)


def _serve(
    engine: Engine,
    card: Card,
    host: str,
    port: int,
    slot_ids: dict[int, bytes],
    mgmt_key: str | None,
    mgmt_alg: str,
    so_pin: str | None,
) -> None:
    from vsc_provider.piv import management_key as M
    from vsc_provider.piv import vpcd
    from vsc_provider.piv.processor import PivCard

    if mgmt_key is not None or not M.is_set(engine, card):
        try:
            key = bytes.fromhex(mgmt_key) if mgmt_key is not None else None
        except ValueError:
            raise click.UsageError("--management-key is hex") from None
        so = ask(so_pin, "SO PIN (to set the PIV management key)")
        try:
            made = M.set_key(engine, card, so.encode(), M.ALG_NAMES[mgmt_alg], key)
        except M.ManagementKeyError as exc:
            raise click.ClickException(str(exc)) from None
        if key is None:
            click.echo(f"PIV management key ({mgmt_alg}), shown only now: {made.key.hex()}")
    piv = PivCard(engine, card.slot_id, slot_ids)

    def connected() -> None:
        print(f"card {card.serial} is in the virtual reader at {host}:{port}", file=sys.stderr, flush=True)

    if not _stopping.is_set():
        vpcd.serve(piv, host, port, _stopping, on_connect=connected)
