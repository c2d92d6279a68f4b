"""`vsc requests ...`, `vsc agent` and `vsc setup agent`: the user's side of authentication and signing
requests. Importing this module costs click only (`vsc setup` imports it); the rest loads when a command runs.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vsc_provider.cli_support import ask, friendly

if TYPE_CHECKING:
    from vsc_provider.requests.client import CardRequests
    from vsc_provider.requests.model import MetadataItem, PendingRequest

F = TypeVar("F", bound=Callable[..., Any])
UNIT_NAME = "vsc-agent.service"
EXTENSIONS = {b"%PDF-": "pdf", b"\x89PNG": "png", b"\xff\xd8\xff": "jpg", b"GIF8": "gif"}


def _one_line(fn: F) -> F:
    """Refusals (the request's, the server's, the card's) as one line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vsc_provider.provisioning.client import CardWiped
        from vsc_provider.provisioning.http import ServerError
        from vsc_provider.requests.model import RequestError

        try:
            return friendly(fn)(*args, **kwargs)
        except (RequestError, ServerError, CardWiped) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _source() -> CardRequests:
    from vsc_provider.requests.client import CardRequests

    return CardRequests(on_error=lambda card, exc: click.echo(f"card {card.serial}: {exc}", err=True))


def _summary(request: PendingRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "card": request.card,
        "card_label": request.card_label,
        "kind": request.kind,
        "rp": request.rp,
        "alg": request.alg,
        "format": request.format,
        "expires": request.expires,
        "display_hash": request.display_hash,
        "metadata": [{"type": m.type, "label": m.label, "size": len(m.data)} for m in request.metadata],
    }


@click.group("requests")
def requests() -> None:
    """Authentication and signing requests from the cards' identity servers."""


@requests.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
@_one_line
def list_requests(as_json: bool) -> None:
    """The pending requests of every card bound to a server."""
    source = _source()
    pending = source.pending()
    if source.refused_count:
        click.echo(f"{source.refused_count} request(s) refused: they do not verify (VSC_DEBUG=1 says why)", err=True)
    if as_json:
        click.echo(json.dumps([_summary(r) for r in pending], indent=2))
        return
    if not pending:
        click.echo("no pending requests")
    for r in pending:
        left = max(int(r.expires - time.time()), 0)
        card = f"card {r.card_label!r} ({r.card})"
        click.echo(f"{printable(r.id)}  {r.kind:<4} {printable(r.rp or '-')}  {card}  expires in {left}s")


def printable(text: str) -> str:
    """Text from a relying party as the terminal should show it: control characters (escape sequences that
    could rewrite what is on the screen) as visible \\x.. escapes; new lines and tabs stay."""
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def hex_dump(data: bytes) -> str:
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<47}  |{text}|")
    return "\n".join(lines)


def _documents_dir(request_id: str) -> Path:
    """Where shown PDFs and images go: a folder only this user can read."""
    from vsc_provider import config

    root = config.home() / "requests"
    folder = root / "".join(c if c.isalnum() or c in "-_" else "_" for c in request_id)
    for where in (config.home(), root, folder):
        where.mkdir(mode=0o700, exist_ok=True)
        where.chmod(0o700)
    return folder


def _has_desktop() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and shutil.which("xdg-open") is not None


def _save(request_id: str, n: int, item: MetadataItem) -> Path:
    ext = next((e for magic, e in EXTENSIONS.items() if item.data.startswith(magic)), "bin")
    path = _documents_dir(request_id) / f"item{n}.{ext}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(item.data)
    return path


@requests.command("show")
@click.argument("request_id")
@_one_line
def show(request_id: str) -> None:
    """What a request shows: text here, PDFs and images saved (and opened on a desktop), raw data in hex."""
    r = _source().find(request_id)
    what = "authenticate" if r.kind == "auth" else f"sign ({r.alg}, {r.format})"
    rp = printable(r.rp or "a relying party")
    click.echo(f"request {r.id}: {rp} asks card {r.card_label!r} ({r.card}) to {what}")
    click.echo(f"expires in {max(int(r.expires - time.time()), 0)}s; display hash {r.display_hash}")
    for n, item in enumerate(r.metadata, 1):
        click.echo(f"--- {n}. {item.type}: {printable(item.label)}")
        if item.type == "text":
            click.echo(printable(item.data.decode("utf-8", "replace")))
        elif item.type == "raw":
            click.echo(hex_dump(item.data))
        else:
            path = _save(r.id, n, item)
            if _has_desktop():
                subprocess.Popen(
                    ["xdg-open", str(path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                click.echo(f"opened {path}")
            else:
                click.echo(f"saved to {path}")


@requests.command("approve")
@click.argument("request_id")
@click.option("--pin", default=None, help="the card's user PIN (asked for when omitted)")
@click.option(
    "--fingerprint",
    "use_fingerprint",
    is_flag=True,
    help="approve with a fingerprint (vsc requests fingerprint enable); the PIN is asked when none can be used",
)
@_one_line
def approve(request_id: str, pin: str | None, use_fingerprint: bool) -> None:
    """Approve: the card signs with the request's key after the PIN check (or a fingerprint match)."""
    from vsc_provider.requests.model import FingerprintUnavailable

    source = _source()
    request = source.find(request_id)
    if use_fingerprint and pin is None:
        click.echo("put a finger enrolled with fprintd on the reader", err=True)
        try:
            source.approve_with_fingerprint(request.id)
            click.echo(f"approved request {request.id} (fingerprint)")
            return
        except FingerprintUnavailable as exc:
            click.echo(f"no fingerprint approval: {exc}", err=True)
    source.approve(request.id, ask(pin, f"PIN of card {request.card_label!r}"))
    click.echo(f"approved request {request.id}")


@requests.command("reject")
@click.argument("request_id")
@_one_line
def reject(request_id: str) -> None:
    """Reject: the server tells the relying party."""
    _source().reject(request_id)
    click.echo(f"rejected request {request_id}")


@click.command("agent")
@click.option("--no-page", is_flag=True, help="do not serve the approval page")
@click.option("--once", is_flag=True, help="fetch every card's requests once, act on them, and exit")
@_one_line
def agent(no_page: bool, once: bool) -> None:
    """Keep a push connection for every bound card, notify, run the policy hook, serve the approval page."""
    from vsc_provider.requests import agent as agent_module

    agent_module.run(page=not no_page, once=once)


# --- vsc setup agent --------------------------------------------------------------------------------


def unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def unit_text() -> str:
    env = "".join(
        f"Environment={name}={os.environ[name]}\n" for name in ("VSC_HOME", "VSC_DEVICE_KEY") if os.environ.get(name)
    )
    return (
        "[Unit]\n"
        "Description=vsc agent: authentication and signing requests for the virtual smart cards\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={sys.executable} -m vsc_provider.cli agent\n"
        f"{env}"
        "Restart=on-failure\n"
        "RestartSec=5\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def setup_unit(undo: bool = False) -> list[str]:
    """Write (or with undo, remove) the systemd user unit; the changes made."""
    from vsc_provider.setup_files import write_or_remove

    return write_or_remove(unit_path(), "" if undo else unit_text(), undo)


@click.command("agent")
@click.option("--undo", is_flag=True, help="remove the unit")
def setup_agent(undo: bool) -> None:
    """Write a systemd user unit that runs `vsc agent` (then: systemctl --user enable --now vsc-agent)."""
    changes = setup_unit(undo)
    for line in changes:
        click.echo(line)
    if not changes:
        click.echo(f"nothing to change in {unit_path()}")
    elif not undo:
        click.echo("start it with: systemctl --user daemon-reload && systemctl --user enable --now vsc-agent")


from vsc_provider.requests.fingerprint_cli import fingerprint  # noqa: E402 - the group needs `requests` above

requests.add_command(fingerprint)
