"""`vsc open URL`: what a personal:// link does. `personal://activate?...` activates a card (as `vsc activate`),
`personal://request?id=ID[&server=URL]` opens the running agent's approval page on that request.

The agent says where its page is in `$VSC_HOME/agent.json`: `{"pid": <its pid>, "url":
"http://127.0.0.1:PORT/TOKEN/"}`; the page of one request is `<url>requests/<ID>`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

import click

from vsc_provider import config, processes
from vsc_provider.cli_support import friendly

SCHEME = "personal"
AGENT_FILE = "agent.json"
OPEN_WAIT = 5.0  # seconds xdg-open has to fail before the browser is taken as started
# Request ids are the server's URL-safe tokens; anything else could walk out of the page's path.
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class LinkError(click.ClickException):
    pass


@dataclass(frozen=True)
class RequestLink:
    """personal://request?id=<request id>[&server=<https URL of the identity server>]"""

    id: str
    server: str | None = None

    @classmethod
    def parse(cls, text: str) -> RequestLink:
        parts = urlsplit(text.strip())
        if parts.scheme != SCHEME or parts.netloc != "request":
            raise LinkError(f"not a request link ({SCHEME}://request?id=...)")
        try:
            query = parse_qs(parts.query, strict_parsing=True)
        except ValueError:
            raise LinkError("the request link's query is malformed") from None
        ids = query.get("id", [])
        if len(ids) != 1 or not _REQUEST_ID.fullmatch(ids[0]):
            raise LinkError("a request link needs one id of letters, digits, '-' and '_'")
        servers = query.get("server", [])
        if len(servers) > 1 or (servers and not servers[0].startswith("https://")):
            raise LinkError("the server of a request link is one https:// URL")
        return cls(ids[0], servers[0].rstrip("/") if servers else None)


def agent_url() -> str:
    """The running agent's page (ends with '/'), or a one-line error saying to start the agent."""
    path = config.home() / AGENT_FILE
    start = "no vsc agent is running: start it with `vsc agent`"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LinkError(start) from None
    except (OSError, ValueError) as exc:
        raise LinkError(f"{path} is not readable ({exc}): start the agent again with `vsc agent`") from None
    pid, url = (data.get("pid"), data.get("url")) if isinstance(data, dict) else (None, None)
    if not isinstance(pid, int) or not isinstance(url, str) or not url.startswith("http://127.0.0.1:"):
        raise LinkError(f"{path} does not name a running agent: start it with `vsc agent`")
    if pid <= 0 or not processes.alive(pid):
        raise LinkError(start)
    return url if url.endswith("/") else url + "/"


def request_page(link: RequestLink) -> str:
    if link.server is not None:
        _check_server(link.server)
    return f"{agent_url()}requests/{quote(link.id, safe='')}"


def _check_server(server: str) -> None:
    """A link naming a server must be for a card bound to it here (a card from another server would never
    have the request)."""
    from vsc_provider import api

    if not any(info.server == server for info in api.list_cards()):
        raise LinkError(f"no card here is bound to {server}: activate one first")


def has_desktop() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show(url: str) -> None:
    """Open the page in the desktop's browser, or print it where there is no desktop."""
    opener = shutil.which("xdg-open") if has_desktop() else None
    if opener is None:
        click.echo(url)
        return
    # The browser may stay in the foreground of xdg-open: after a moment it is left running on its own.
    opening = subprocess.Popen(
        [opener, url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        failed = opening.wait(timeout=OPEN_WAIT) != 0
    except subprocess.TimeoutExpired:
        failed = False
    if failed:
        click.echo(f"xdg-open could not open a browser (exit {opening.returncode}): open this page yourself", err=True)
        click.echo(url)
        return
    click.echo(f"opened {url}")


@click.command("open")
@click.argument("url")
@click.option("--pin", default=None, help="for an activation link: the new card's PIN (asked twice when omitted)")
@click.option("--label", default=None, help="for an activation link: the card's label")
@click.pass_context
@friendly
def open_link(ctx: click.Context, url: str, pin: str | None, label: str | None) -> None:
    """Follow a personal:// link: activate a card, or open a request in the agent's approval page."""
    parts = urlsplit(url.strip())
    if parts.scheme != SCHEME:
        raise LinkError(f"not a {SCHEME}:// link")
    if parts.netloc == "activate":
        from vsc_provider.provisioning.cli import activate
        from vsc_provider.provisioning.wire import ActivationLink

        ActivationLink.parse(url)  # a malformed link fails before the PIN is asked
        ctx.invoke(activate, link=url, pin=pin, label=label, as_json=False)
        return
    if parts.netloc == "request":
        show(request_page(RequestLink.parse(url)))
        return
    raise LinkError(f"unknown link {SCHEME}://{parts.netloc}: vsc opens {SCHEME}://activate and {SCHEME}://request")
