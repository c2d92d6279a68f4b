"""The `vsc` command: cards, keys, certificates, PINs and the PKCS#11 module, with --json on listings."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from vsc_provider import api, module
from vsc_provider.cli_keys import export_public
from vsc_provider.cli_support import ask, friendly, new_pin, server_errors

F = TypeVar("F", bound=Callable[..., Any])

_CARD_HELP = "card serial, slot number or label"
_JSON_HELP = "print JSON (for scripts)"


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        human()


def _pin_option(name: str = "--pin", help_text: str = "user PIN (asked for when omitted)") -> Callable[[F], F]:
    return click.option(name, help=help_text, default=None)


class LazyGroup(click.Group):
    """Subcommands whose modules import heavy dependencies (the server, HTTP) load only when used."""

    lazy: ClassVar[dict[str, str]] = {
        "activate": "vsc_provider.provisioning.cli:activate",
        "audit": "vsc_provider.audit_cli:audit",
        "agent": "vsc_provider.requests.cli:agent",
        "identity": "vsc_provider.provisioning.cli:identity",
        "push-relay": "vsc_provider.relay.cli:push_relay",
        "licenses": "vsc_provider.licenses:licenses",
        "open": "vsc_provider.links:open_link",
        "otp": "vsc_provider.oath.cli:otp",
        "pcsc": "vsc_provider.piv.cli:pcsc",
        "requests": "vsc_provider.requests.cli:requests",
        "server": "vsc_provider.server.cli:server",
        "setup": "vsc_provider.clients:setup",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="vsc-provider")
def main() -> None:
    """vsc: virtual smart cards for PKCS#11 programs (Firefox, OpenSSL, ssh, ...)."""
    from vsc_provider import log

    log.configure_from_environment()  # VSC_DEBUG=1 / VSC_LOG: the CLI logs like the module
    from vsc_provider import tamper

    tamper.harden()  # no core dumps or same-user ptrace of a process that may hold unlocked keys
    api.serve_as("cli")  # the audit log names the front end of each entry (the agent says "agent")


# --- cards ------------------------------------------------------------------------------------


@main.group()
def card() -> None:
    """Create, list, show and delete virtual cards."""


@card.command("create")
@click.option("--label", required=True, help="the card's label (token label), up to 32 bytes")
@_pin_option()
@click.option("--so-pin", default=None, help="security officer (SO) PIN, at least 8 digits (asked for when omitted)")
@click.option(
    "--policy",
    "card_policy",
    type=click.Choice(["strict", "compatible"]),
    default="strict",
    show_default=True,
    help="compatible: SoftHSM-like rules for test rigs (4+ byte PINs, RSA-1024, keys usable without login)",
)
@click.option(
    "--device-key",
    type=click.Choice(["tpm", "keyring", "file"]),
    default=None,
    help="where the card's device-key layer lives: sealed to this machine's TPM, in the kernel keyring (lost at "
    "reboot), or in a 0600 file (default: tpm when there is one, else file)",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@friendly
def card_create(
    label: str, pin: str | None, so_pin: str | None, card_policy: str, device_key: str | None, as_json: bool
) -> None:
    """Create a local virtual card (its policy and device-key back end are fixed for good)."""
    strict = card_policy == "strict"
    user = new_pin(pin, "New user PIN", strict=strict)
    so = new_pin(so_pin, "New SO PIN", so=True, strict=strict)
    policy = api.default_policy_from_env()
    info = api.create_card(label, user, so, policy=policy, card_policy=card_policy, device_key=device_key)
    if info.device_key == "file":
        click.echo(
            "warning: the card's device key is a 0600 file: a copy of this user's data directory opens the card "
            "on another machine (--device-key tpm seals it to a TPM: /dev/tpmrm0 or VSC_TPM_TCTI)",
            err=True,
        )
    elif info.device_key == "keyring":
        click.echo(
            "warning: the kernel keyring forgets its keys at reboot: this card will not open after one", err=True
        )
    emit(info.to_json(), as_json, lambda: click.echo(f"created card {info.label!r} serial {info.serial}\n  {info.uri}"))


def _print_card(info: api.CardInfo) -> None:
    state = "blocked" if info.locked else ("no user PIN" if not info.user_pin_set else "ready")
    origin = f"server {info.server}" if info.server else "local"
    if info.renewal_requested:
        state += ", renewal requested"
    if info.policy != "strict":
        state += f", {info.policy} policy"
    click.echo(f"slot {info.slot}: {info.label!r} serial {info.serial} ({origin}, {state})")
    click.echo(f"  {info.uri}")
    for o in info.objects:
        extra = ", ".join(f"{k}={v}" for k, v in o.details.items())
        kind = f"{o.kind} {o.key_type or ''}".strip()
        click.echo(f"    {kind:<14} {o.label!r} id={o.id or '-'}{(' ' + extra) if extra else ''}")
        click.echo(f"      {o.uri}")


@card.command("list")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@friendly
def card_list(as_json: bool) -> None:
    """List cards with their pkcs11: URIs and public objects."""
    cards = api.list_cards()

    def human() -> None:
        if not cards:
            click.echo("no cards: create one with `vsc card create`")
        for info in cards:
            _print_card(info)

    emit([c.to_json() for c in cards], as_json, human)


@card.command("show")
@click.argument("card_ref")
@_pin_option(help_text="user PIN, to include private objects")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@friendly
def card_show(card_ref: str, pin: str | None, as_json: bool) -> None:
    """Show one card (by serial, slot or label); with --json also its server binding and public keys (JWK, PEM)."""
    if as_json:
        from vsc_provider import key_info

        click.echo(json.dumps(key_info.card_metadata(card_ref, pin), indent=2))
    else:
        _print_card(api.list_objects(card_ref, pin))
    if pin is not None and api.find_card(card_ref).record.server:  # with the PIN: a renewal its server asked for
        from vsc_provider.provisioning import client

        if client.renew_if_requested(card_ref, pin):
            click.echo(f"renewed card {card_ref}: its server asked for new keys", err=True)


@card.command("delete")
@click.argument("card_ref")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--force", is_flag=True, help="for a provisioned card: wipe even if its server cannot be told")
@friendly
def card_delete(card_ref: str, yes: bool, force: bool) -> None:
    """Delete a card and every key on it (a provisioned card tells its server first)."""
    target = api.find_card(card_ref)
    if not yes:
        click.confirm(f"Delete card {target.label!r} ({target.serial}) and all its keys?", abort=True)
    if target.record.server:
        from vsc_provider.provisioning import client

        with server_errors():
            client.delete(target.serial, force)
    else:
        api.delete_card(card_ref)
    click.echo(f"deleted card {target.label!r} ({target.serial})")


@card.command("renew")
@click.argument("card_ref")
@_pin_option()
@friendly
def card_renew(card_ref: str, pin: str | None) -> None:
    """New keys and certificates from the card's server; the old keys are destroyed afterwards."""
    from vsc_provider.provisioning import client

    with server_errors():
        info = client.renew(card_ref, ask(pin, "User PIN"))
    click.echo(f"renewed card {info.label!r} ({info.serial})")


# --- keys and certificates --------------------------------------------------------------------


@main.group()
def key() -> None:
    """Generate, list and delete keys on a card."""


@key.command("generate")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.option(
    "--type", "kind", type=click.Choice(sorted(api.KEY_KINDS)), default="rsa2048", show_default=True, help="key type"
)
@click.option("--label", required=True, help="the key's label (CKA_LABEL), used to name it in commands and URIs")
@click.option("--always-authenticate", is_flag=True, help="ask for the PIN before every signature")
@_pin_option()
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@friendly
def key_generate(
    card_ref: str, kind: str, label: str, always_authenticate: bool, pin: str | None, as_json: bool
) -> None:
    """Generate a key pair on the card (the private key never leaves it)."""
    objs = api.generate_key(card_ref, kind, label, ask(pin, "User PIN"), always_authenticate)

    def human() -> None:
        for o in objs:
            click.echo(f"{o.kind:<8} {o.uri}")

    emit([o.to_json() for o in objs], as_json, human)


@key.command("list")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@_pin_option(help_text="user PIN, to include private keys")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@friendly
def key_list(card_ref: str, pin: str | None, as_json: bool) -> None:
    """List keys on a card."""
    info = api.list_objects(card_ref, pin)
    keys = [o for o in info.objects if o.kind in ("public", "private", "secret-key")]

    def human() -> None:
        for o in keys:
            click.echo(f"{o.kind:<10} {o.key_type or '':<6} {o.label!r} {o.uri}")

    emit([o.to_json() for o in keys], as_json, human)


@key.command("delete")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.argument("selector")
@_pin_option()
@friendly
def key_delete(card_ref: str, selector: str, pin: str | None) -> None:
    """Delete the objects (keys, certificate) labelled SELECTOR or with that hex id."""
    api.check_objects(card_ref, selector)
    count = api.delete_objects(card_ref, selector, ask(pin, "User PIN"))
    click.echo(f"deleted {count} object(s)")


key.add_command(export_public)


@main.group()
def cert() -> None:
    """Import and export certificates."""


@cert.command("import")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", default=None, help="CKA_LABEL (default: the matching key's label)")
@click.option("--id", "key_id", default=None, help="hex CKA_ID (default: the matching key's)")
@click.option("--no-key-ok", is_flag=True, help="import even if no key on the card matches the certificate")
@_pin_option()
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@friendly
def cert_import(
    card_ref: str, path: Path, label: str | None, key_id: str | None, no_key_ok: bool, pin: str | None, as_json: bool
) -> None:
    """Import a PEM or DER certificate next to its key (same label and CKA_ID)."""
    done = api.import_certificate(
        card_ref,
        path.read_bytes(),
        ask(pin, "User PIN"),
        label,
        bytes.fromhex(key_id) if key_id else None,
        no_key_ok,
    )
    word = "imported" if done.new else "already on the card, nothing imported:"
    emit(done.info.to_json(), as_json, lambda: click.echo(f"{word} {done.info.uri}"))


def _write_pem(pem: bytes, out: Path | None) -> None:
    if out is None:
        click.echo(pem.decode(), nl=False)
        return
    out.write_bytes(pem)
    click.echo(f"wrote {out}")


_SUBJECT_HELP = "subject, e.g. 'CN=Alice,O=Example' (a bare name is the CN; default: the key's label)"


@cert.command("request")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.option("--key", "key_label", required=True, help="label (or hex id) of the key to certify")
@click.option("--subject", default=None, help=_SUBJECT_HELP)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="file (default: stdout)")
@_pin_option()
@friendly
def cert_request(card_ref: str, key_label: str, subject: str | None, out: Path | None, pin: str | None) -> None:
    """Make a PKCS#10 certificate request (CSR) signed by the card's key, for a CA to sign."""
    from vsc_provider import certify

    _write_pem(certify.request(card_ref, key_label, subject or key_label, ask(pin, "User PIN")), out)


@cert.command("self-sign")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.option("--key", "key_label", required=True, help="label (or hex id) of the key to certify")
@click.option("--subject", default=None, help=_SUBJECT_HELP)
@click.option("--days", default=365, show_default=True, help="validity in days")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="file (default: stdout)")
@_pin_option()
@friendly
def cert_self_sign(
    card_ref: str, key_label: str, subject: str | None, days: int, out: Path | None, pin: str | None
) -> None:
    """Make a self-signed certificate for the card's key (then `vsc cert import` it)."""
    from vsc_provider import certify

    _write_pem(certify.self_sign(card_ref, key_label, subject or key_label, ask(pin, "User PIN"), days), out)


@cert.command("export")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.argument("selector")
@click.option("--der", is_flag=True, help="DER instead of PEM")
@friendly
def cert_export(card_ref: str, selector: str, der: bool) -> None:
    """Print the certificate labelled SELECTOR (or with that hex id)."""
    raw = api.export_certificate(card_ref, selector)
    if der:
        sys.stdout.buffer.write(raw)
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    click.echo(x509.load_der_x509_certificate(raw).public_bytes(serialization.Encoding.PEM).decode(), nl=False)


# --- PINs -------------------------------------------------------------------------------------


@main.group()
def pin() -> None:
    """Change the user PIN, or reset it with the SO PIN."""


@pin.command("change")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.option("--old", default=None, help="current user PIN (asked for when omitted)")
@click.option("--new", default=None, help="new user PIN (asked for when omitted)")
@friendly
def pin_change(card_ref: str, old: str | None, new: str | None) -> None:
    """Change the user PIN, knowing the current one (the card's policy decides which PINs are allowed)."""
    _new_user_pin(card_ref, api.change_pin, ask(old, "Current PIN"), new, "PIN changed")


@pin.command("reset")
@click.option("--card", "card_ref", required=True, help=_CARD_HELP)
@click.option("--so-pin", default=None, help="security officer PIN (asked for when omitted)")
@click.option("--new", default=None, help="new user PIN (asked for when omitted)")
@friendly
def pin_reset(card_ref: str, so_pin: str | None, new: str | None) -> None:
    """Set a new user PIN with the SO PIN (unblocks a blocked card)."""
    _new_user_pin(card_ref, api.reset_pin, ask(so_pin, "SO PIN"), new, "user PIN reset")


def _new_user_pin(
    card_ref: str, change: Callable[[str, str, str], None], proof: str, new: str | None, done: str
) -> None:
    """A new user PIN (asked for twice when not given, under the card's PIN rules), proved by `proof`."""
    strict = api.find_card(card_ref).policy.name == "strict"
    change(card_ref, proof, new_pin(new, "New user PIN", strict=strict))
    click.echo(done)


# --- the module -------------------------------------------------------------------------------


@main.group("module")
def module_group() -> None:
    """Where the PKCS#11 and minidriver libraries are, and how to register the first."""


@module_group.command("path")
@click.option("--minidriver", is_flag=True, help="the minidriver card-edge library (CardAcquireContext) instead")
@friendly
def module_path(minidriver: bool) -> None:
    """Print the absolute path of the PKCS#11 library (or of the minidriver card-edge library)."""
    click.echo(str(module.minidriver_path() if minidriver else module.library_path()))


@module_group.command("p11-kit")
@click.option(
    "--write",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the module file there (e.g. ~/.config/pkcs11/modules/vsc.module)",
)
@friendly
def module_p11kit(target: Path | None) -> None:
    """Print (or write) a p11-kit module file for the library."""
    text = module.p11kit_module_text()
    if target is None:
        click.echo(text, nl=False)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    click.echo(f"wrote {target}")


@main.command("demo")
@click.option("--keep", is_flag=True, help="keep the demo's temporary directory (keys, server data) afterwards")
def demo(keep: bool) -> None:
    """Local identity server, activation, then a signature and TLS client auth through the PKCS#11 module."""
    from vsc_provider.demo import main as run_demo

    run_demo(keep=keep)


if __name__ == "__main__":
    main()
