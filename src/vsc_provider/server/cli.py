"""`vsc server ...`: run the identity server, and the admin's commands against a running one."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from vsc_provider.provisioning.http import PinnedClient, ServerError

_DATA = click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the server's data directory",
)


def admin_client(data: Path) -> tuple[PinnedClient, dict[str, str]]:
    """A pinned client to the server running on DATA, with its admin bearer token."""
    try:
        where = json.loads((data / "server.json").read_text())
        token = json.loads((data / "admin.json").read_text())["token"]
    except FileNotFoundError:
        raise click.ClickException(f"no server has run with --data {data}") from None
    return PinnedClient(where["url"], where["pin"]), {"Authorization": f"Bearer {token}"}


def _admin(data: Path, method: str, path: str, body: Any = None) -> dict[str, Any]:
    try:
        client, headers = admin_client(data)
        with client:
            return client.call(method, path, body, headers=headers)
    except ServerError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("server")
def server() -> None:
    """The reference identity server (HTTPS, its own CA, SQLite) and its admin commands."""


@server.command("run")
@_DATA
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8443, show_default=True, type=int, help="HTTPS port")
@click.option("--public-url", default=None, help="the URL clients use (default https://HOST:PORT)")
def run(data: Path, host: str, port: int, public_url: str | None) -> None:
    """Serve until interrupted; creates the CA, TLS certificate and admin token on first start."""
    import uvicorn

    from vsc_provider.server.app import create_app
    from vsc_provider.server.state import IdentityServer

    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    hosts = sorted({host, "127.0.0.1", "localhost"}, key=lambda h: h != host)
    ident = IdentityServer(data, hosts)
    url = (public_url or f"https://{host}:{port}").rstrip("/")
    (data / "server.json").write_text(json.dumps({"url": url, "pin": ident.authority.tls_pin}))
    click.echo(f"identity server on {url}  (TLS key pin {ident.authority.tls_pin})")
    click.echo(f"admin credentials: {data / 'admin.json'}")
    sys.stdout.flush()
    uvicorn.run(
        create_app(ident),
        host=host,
        port=port,
        ssl_certfile=str(ident.authority.tls_cert_path),
        ssl_keyfile=str(ident.authority.tls_key_path),
        log_level="warning",
        timeout_graceful_shutdown=2,
    )


@server.command("rotate-tls")
@_DATA
@click.option("--switch", is_flag=True, help="present the announced key from the next start on")
def rotate_tls(data: Path, switch: bool) -> None:
    """Rotate the server's TLS key in two steps: announce the next key (cards learn it at their next contact),
    later --switch to it and restart. Cards also trust keys the server's CA issues, so none is cut off."""
    from vsc_provider.server import tls
    from vsc_provider.server.ca import Authority

    if not (data / "tls.pem").exists():
        raise click.ClickException(f"no server has run with --data {data}")
    if switch:
        try:
            pin = tls.switch(data)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"the server presents the key {pin} from its next start: restart it now")
        return
    authority = Authority.load_or_create(data, tls.hosts_of(data / "tls.pem"))
    pin = tls.announce(data, authority.key, authority.cert)
    click.echo(f"announced the next TLS key {pin}; cards learn it at their next contact; then run with --switch")


@server.group("activation")
def activation() -> None:
    """One-time activation links."""


@activation.command("create")
@_DATA
@click.option("--user", required=True, help="the user the card is for (the card takes it as its label)")
@click.option("--profile", default="default", show_default=True, help="activation profile: which keys the card gets")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
def activation_create(data: Path, user: str, profile: str, as_json: bool) -> None:
    """Print a one-time activation link for USER (and a QR code when segno is installed)."""
    result = _admin(data, "POST", "/admin/activations", {"user": user, "profile": profile})
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(result["link"])
    try:
        import segno
    except ImportError:
        return
    if sys.stdout.isatty():
        segno.make(result["link"]).terminal(compact=True)


@server.group("device")
def device_group() -> None:
    """Devices (activated cards) known to the server."""


@device_group.command("list")
@_DATA
def device_list(data: Path) -> None:
    """List the devices that hold cards of this server (JSON)."""
    click.echo(json.dumps(_admin(data, "GET", "/admin/devices")["devices"], indent=2))


@device_group.command("action")
@_DATA
@click.argument("device_id")
@click.argument("action", type=click.Choice(["delete", "renew", "unblock"]))
def device_action(data: Path, device_id: str, action: str) -> None:
    """delete (the card is wiped at its next contact), renew (flag), unblock (the PIN counter)."""
    _admin(data, "POST", f"/admin/devices/{device_id}/{action}")
    click.echo(f"{action}: {device_id}")


@server.command("trust")
@_DATA
@click.option(
    "--peer-data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="data directory of the server whose migration tickets to accept",
)
def trust(data: Path, peer_data: Path) -> None:
    """Accept migration tickets from the server running on PEER_DATA (fetched over its pinned TLS)."""
    client, _ = admin_client(peer_data)
    with client:
        info = client.call("GET", "/v1/server")
    path = data / "trusted-servers.json"
    trusted = json.loads(path.read_text()) if path.exists() else []
    trusted.append({"url": client.url, "jwk": info["jwks"]["keys"][0]})
    path.write_text(json.dumps(trusted, indent=2))
    click.echo(f"trusting migration tickets from {client.url}")
