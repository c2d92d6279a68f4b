"""`vsc otp`: one-time password accounts on a card (loaded only when used: protobuf and the QR decoder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from vsc_provider.cli_support import ask, friendly
from vsc_provider.oath import accounts as A
from vsc_provider.oath import service

_CARD_HELP = "card serial, slot number or label"


def _links(link: str | None, qr: tuple[Path, ...]) -> list[str]:
    from vsc_provider.oath import qr as qr_reader

    found = [link] if link else []
    for image in qr:
        found += qr_reader.read_links(image)
    if not found:
        raise click.UsageError("give a link or --qr IMAGE")
    return found


def _show(stored: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(stored, indent=2))
        return
    for item in stored:
        click.echo(f"added {item['name']} ({item['type']}, {item['algorithm']}, {item['digits']} digits)")


@click.group()
def otp() -> None:
    """One-time passwords (TOTP/HOTP) kept on a card: add, import, list, code, delete."""


@otp.command("add")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.argument("link", required=False)
@click.option("--qr", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True, help="a QR image")
@click.option("--label", default=None, help="your own name for the account (default issuer:account)")
@click.option("--pin", default=None, help="user PIN (asked for when omitted)")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@friendly
def otp_add(
    card_ref: str, link: str | None, qr: tuple[Path, ...], label: str | None, pin: str | None, as_json: bool
) -> None:
    """Add the account of an otpauth://totp/... or otpauth://hotp/... LINK (or of the QR code in --qr); a
    Google Authenticator export link is taken too (its accounts, as `vsc otp import` takes them)."""
    found = [acc for text in _links(link, qr) for acc in A.parse_any(text)]
    if label and len(found) > 1:
        raise click.UsageError("--label names one account")
    _show(service.add(card_ref, found, ask(pin, "User PIN"), label), as_json)


@otp.command("import")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.argument("links", nargs=-1)
@click.option("--qr", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True, help="a QR image")
@click.option("--pin", default=None, help="user PIN (asked for when omitted)")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@friendly
def otp_import(card_ref: str, links: tuple[str, ...], qr: tuple[Path, ...], pin: str | None, as_json: bool) -> None:
    """Import Google Authenticator's export: otpauth-migration://offline?data=... LINKS (or their QR codes in
    --qr, one per batch); plain otpauth:// links are taken too."""
    texts = list(links) + (_links(None, qr) if qr else [])
    if not texts:
        raise click.UsageError("give the export's links or --qr IMAGE")
    found: list[A.Account] = []
    batches: dict[int, tuple[int, set[int]]] = {}
    for text in texts:
        if text.strip().lower().startswith("otpauth-migration:"):
            batch = A.parse_migration(text)
            size, seen = batches.setdefault(batch.batch_id, (batch.size, set()))
            if batch.position in seen:
                raise click.ClickException(f"batch {batch.position + 1} of {batch.size} given twice")
            seen.add(batch.position)
            found += batch.accounts
        else:
            found.append(A.parse_otpauth(text))
    stored = service.add(card_ref, found, ask(pin, "User PIN"))
    _show(stored, as_json)
    for size, seen in batches.values():
        if len(seen) < size:
            missing = ", ".join(str(i + 1) for i in range(size) if i not in seen)
            click.echo(f"note: this export has {size} QR codes; not yet imported: {missing}", err=True)


@otp.command("list")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@friendly
def otp_list(card_ref: str, as_json: bool) -> None:
    """List the card's OTP accounts (no secrets; no PIN needed)."""
    items = service.listing(card_ref)
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for item in items:
        extra = f"period {item['period']}s" if item["type"] == "totp" else f"counter {item['counter']}"
        label = f"  [{item['label']}]" if item["label"] != item["name"] else ""
        click.echo(f"{item['name']:<40} {item['type']} {item['algorithm']} {item['digits']} digits, {extra}{label}")


@otp.command("code")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.argument("name")
@click.option("--pin", default=None, help="user PIN (asked for when omitted)")
@click.option("--at", "at", type=int, default=None, help="Unix time to compute a TOTP code for (default now)")
@click.option("--json", "as_json", is_flag=True, help='print {"code": ..., "valid_for": ...}')
@friendly
def otp_code(card_ref: str, name: str, pin: str | None, at: int | None, as_json: bool) -> None:
    """Print the code of account NAME (issuer:account, or the account alone when unique) and the seconds it
    stays valid; a HOTP code uses up the stored counter."""
    got = service.code(card_ref, name, ask(pin, "User PIN"), at)
    if as_json:  # the contract is these two keys for both kinds; a HOTP counter shows in `vsc otp list --json`
        click.echo(json.dumps({"code": got["code"], "valid_for": got["valid_for"]}))
    elif got["valid_for"] is None:
        click.echo(f"{got['code']}  (HOTP counter {got['counter']})")
    else:
        click.echo(f"{got['code']}  (valid {got['valid_for']} s)")


@otp.command("delete")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.argument("name")
@click.option("--pin", default=None, help="user PIN (asked for when omitted)")
@friendly
def otp_delete(card_ref: str, name: str, pin: str | None) -> None:
    """Delete account NAME and its secret from the card."""
    click.echo(f"deleted {service.delete(card_ref, name, ask(pin, 'User PIN'))}")
