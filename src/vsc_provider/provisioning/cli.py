"""`vsc activate LINK` and `vsc identity ...`: the user's side of the identity server."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vsc_provider.cli_support import ask, friendly, new_pin
from vsc_provider.provisioning import activation, client
from vsc_provider.provisioning.http import ServerError

F = TypeVar("F", bound=Callable[..., Any])


def _server_errors(fn: F) -> F:
    """Server refusals as one-line messages; PKCS#11 errors as the rest of the CLI words them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return friendly(fn)(*args, **kwargs)
        except (ServerError, client.CardWiped) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.command("activate")
@click.argument("link")
@click.option("--pin", default=None, help="the new card's user PIN (asked twice when omitted)")
@click.option("--label", default=None, help="card label (default: the user name from the server)")
@click.option(
    "--device-key",
    type=click.Choice(["tpm", "keyring", "file"]),
    default=None,
    help="the card's device-key back end (default: tpm when there is one, else file; see vsc card create)",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@_server_errors
def activate(link: str, pin: str | None, label: str | None, device_key: str | None, as_json: bool) -> None:
    """Activate a card from a personal://activate?... link: keys are generated here, certified by the server."""
    info = activation.activate(link, new_pin(pin, "New PIN for the card"), label, device_key)
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
    else:
        click.echo(f"activated card {info.label!r} serial {info.serial} (server {info.server})\n  {info.uri}")


@click.group("identity")
def identity() -> None:
    """Cards bound to an identity server: status, renew, delete, migrate."""


@identity.command("status")
@click.argument("card_ref")
@click.option("--pin", default=None, help="with the PIN, a renewal the server asked for is done now")
@_server_errors
def status(card_ref: str, pin: str | None) -> None:
    """Contact the card's server (a card the server deleted is wiped now; a requested renewal is
    recorded, or done at once with --pin)."""
    click.echo(json.dumps(client.status(card_ref, pin)))


@identity.command("renew")
@click.argument("card_ref")
@click.option("--pin", default=None, help="user PIN (asked for when omitted)")
@_server_errors
def renew(card_ref: str, pin: str | None) -> None:
    """New keys and certificates; the old keys are destroyed afterwards."""
    info = client.renew(card_ref, ask(pin, "User PIN"))
    click.echo(f"renewed card {info.label!r} ({info.serial})")


@identity.command("delete")
@click.argument("card_ref")
@click.option("--force", is_flag=True, help="wipe even if the server cannot be told")
@_server_errors
def delete(card_ref: str, force: bool) -> None:
    """Tell the server, then wipe the card."""
    client.delete(card_ref, force)
    click.echo(f"deleted {card_ref}")


@identity.command("migrate")
@click.argument("card_ref")
@click.option("--to", "target", required=True, help="https URL of the new server")
@click.option("--to-pin", "target_pin", required=True, help="SHA-256 pin of the new server's TLS key")
@click.option("--pin", default=None, help="user PIN (asked for when omitted)")
@_server_errors
def migrate(card_ref: str, target: str, target_pin: str, pin: str | None) -> None:
    """Move the card to another server; the keys stay on the device."""
    info = client.migrate(card_ref, ask(pin, "User PIN"), target, target_pin)
    click.echo(f"card {info.label!r} now belongs to {info.server}")


@identity.command("ca")
@click.option("--card", "card_ref", required=True, help="the card (serial, slot or label)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write the PEM here")
@_server_errors
def identity_ca(card_ref: str, out: Path | None) -> None:
    """The identity CA that issued the card's certificates, as PEM (for services that should trust the card)."""
    from vsc_provider.provisioning import identity_ca as ca

    text = ca.pem(ca.card_ca(card_ref))
    if out is None:
        click.echo(text.decode(), nl=False)
        return
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(text)
    click.echo(f"wrote the identity CA of card {card_ref!r} to {out}")
