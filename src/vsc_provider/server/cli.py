"""`vsc server ...`: run the identity server, and the admin's commands against a running one."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from vsc_provider.provisioning import request_wire as rw
from vsc_provider.provisioning.http import PinnedClient, ServerError

_DATA = click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the server's data directory",
)


def _database_url(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if not value:
        return None
    if not value.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter("a postgresql:// URL (without one: SQLite in the data directory)")
    return value


_DATABASE = click.option(
    "--database",
    "database",
    default=None,
    envvar="VSC_SERVER_DATABASE",
    callback=_database_url,
    help="postgresql://USER@HOST:PORT/DB shared by several instances (default: SQLite in the data directory);"
    " admin commands given one act on it in this process instead of through the running server",
)


def admin_client(data: Path) -> tuple[PinnedClient, dict[str, str]]:
    """A pinned client to the server running on DATA, with its admin bearer token."""
    try:
        where = json.loads((data / "server.json").read_text())
        token = json.loads((data / "admin.json").read_text())["token"]
    except FileNotFoundError:
        raise click.ClickException(f"no server has run with --data {data}") from None
    return PinnedClient(where["url"], where["pin"]), {"Authorization": f"Bearer {token}"}


def _belongs(data: Path, database: str | None) -> None:
    """With --database, the data directory a file-only command changes must be the one the database serves."""
    if database is not None:
        from vsc_provider.server.admin_local import LocalAdminError, check_belongs

        try:
            check_belongs(data, database)
        except LocalAdminError as exc:
            raise click.ClickException(str(exc)) from None


def _admin(data: Path, database: str | None, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An admin call: in this process on DATABASE when one is given (with a copy of the data directory,
    from any machine), else through the server running on DATA (over its pinned TLS)."""
    if database is not None:
        from vsc_provider.server.admin_local import LocalAdminError, call

        try:
            return call(data, database, method, path, body)
        except LocalAdminError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        client, headers = admin_client(data)
        with client:
            return client.call(method, path, body, headers=headers)
    except ServerError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("server")
def server() -> None:
    """The reference identity server (HTTPS, its own CA, SQLite or PostgreSQL) and its admin commands."""


@server.command("run")
@_DATA
@_DATABASE
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8443, show_default=True, type=int, help="HTTPS port")
@click.option("--public-url", default=None, help="the URL clients use (default https://HOST:PORT)")
@click.option("--push-relay", default=None, help="URL of a push relay (`vsc push-relay run`) to notify devices through")
def run(data: Path, database: str | None, host: str, port: int, public_url: str | None, push_relay: str | None) -> None:
    """Serve until interrupted; creates the CA, TLS certificate and admin token on first start. Instances
    sharing one --database each need a copy of the same data directory (never one made anew)."""
    import time

    from vsc_provider.server import tls
    from vsc_provider.server.app import create_app
    from vsc_provider.server.db_backend import DatabaseUnavailable
    from vsc_provider.server.state import IdentityServer, WrongDataDirectory
    from vsc_provider.web_service import serve

    if push_relay is not None and not push_relay.startswith(("https://", "http://")):
        raise click.BadParameter("an http(s):// URL", param_hint="--push-relay")

    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    tls.forget_previous(data, time.time())  # a previous TLS key past its grace period
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    hosts = sorted({host, "127.0.0.1", "localhost"}, key=lambda h: h != host)
    try:
        ident = IdentityServer(data, hosts, database or None)
    except (DatabaseUnavailable, WrongDataDirectory) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if push_relay is not None:
            ident.use_relay(push_relay)
    except WrongDataDirectory as exc:
        raise click.ClickException(str(exc)) from None
    ident.record_served()
    url = (public_url or f"https://{host}:{port}").rstrip("/")
    # written whole or not at all: scripts and other instances wait for this file to appear
    fresh = data / "server.json.new"
    fresh.write_text(json.dumps({"url": url, "pin": ident.authority.tls_pin}))
    os.replace(fresh, data / "server.json")
    click.echo(f"identity server on {url}  (TLS key pin {ident.authority.tls_pin})")
    click.echo(f"admin credentials: {data / 'admin.json'}")
    sys.stdout.flush()
    serve(create_app(ident), host, port, ident.authority.tls_cert_path, ident.authority.tls_key_path)


def _grace_days(days: float | None) -> float | None:
    from vsc_provider.server import tls

    problem = None if days is None else tls.grace_days_problem(days)
    if problem:
        raise click.BadParameter(problem)
    return days


@server.command("rotate-tls")
@_DATA
@_DATABASE
@click.option("--switch", is_flag=True, help="present the announced key from the next start on")
@click.option(
    "--grace-days",
    type=float,
    default=None,
    callback=lambda _ctx, _param, days: _grace_days(days),
    help="with --switch: days (0 to 3650) cards that heard of the switch still accept the previous key [default: 30]",
)
def rotate_tls(data: Path, database: str | None, switch: bool, grace_days: float | None) -> None:
    """Rotate the server's TLS key in two steps: announce the next key (cards learn it at their next contact),
    later --switch to it and restart. Cards also trust keys the server's CA issues, so none is cut off; the
    previous key is accepted for --grace-days more (instances not restarted yet), then refused."""
    import time

    from vsc_provider.server import tls
    from vsc_provider.server.ca import Authority

    if not (data / "tls.pem").exists():
        raise click.ClickException(f"no server has run with --data {data}")
    _belongs(data, database)
    if grace_days is not None and not switch:
        raise click.UsageError("--grace-days goes with --switch")
    tls.forget_previous(data, time.time())
    if switch:
        try:
            pin = tls.switch(data, tls.GRACE_DAYS if grace_days is None else grace_days)
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
@_DATABASE
@click.option("--user", required=True, help="the user the card is for (the card takes it as its label)")
@click.option("--profile", default="default", show_default=True, help="activation profile: which keys the card gets")
@click.option("--otp", "otp_type", type=click.Choice(["totp", "hotp"]), default=None, help="also an OATH seed")
@click.option("--otp-algorithm", type=click.Choice(["SHA1", "SHA256", "SHA512"]), default=None, help="default SHA1")
@click.option("--otp-digits", type=click.IntRange(6, 8), default=None, help="default 6")
@click.option("--otp-period", type=click.IntRange(1, 3600), default=None, help="TOTP seconds, default 30")
@click.option("--otp-issuer", default=None, help="the account's issuer (default: the branding name or host)")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
def activation_create(
    data: Path,
    database: str | None,
    user: str,
    profile: str,
    otp_type: str | None,
    otp_algorithm: str | None,
    otp_digits: int | None,
    otp_period: int | None,
    otp_issuer: str | None,
    as_json: bool,
) -> None:
    """Print a one-time activation link for USER (and a QR code when segno is installed).

    --otp totp|hotp gives the card an OATH seed (whatever the profile says); the server verifies its codes
    for relying parties at POST /v1/otp/verify."""
    body: dict[str, Any] = {"user": user, "profile": profile}
    given = {"algorithm": otp_algorithm, "digits": otp_digits, "period": otp_period, "issuer": otp_issuer}
    if otp_type is not None:
        body["otp"] = {"type": otp_type, **{k: v for k, v in given.items() if v is not None}}
    elif any(v is not None for v in given.values()):
        raise click.ClickException("--otp-algorithm, --otp-digits, --otp-period and --otp-issuer go with --otp")
    result = _admin(data, database, "POST", "/admin/activations", body)
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
@_DATABASE
def device_list(data: Path, database: str | None) -> None:
    """List the devices that hold cards of this server (JSON)."""
    click.echo(json.dumps(_admin(data, database, "GET", "/admin/devices")["devices"], indent=2))


@device_group.command("show")
@_DATA
@_DATABASE
@click.argument("device_id")
def device_show(data: Path, database: str | None, device_id: str) -> None:
    """One device (JSON): its state and `attested` (tpm, implementer or null), its TPM key if registered."""
    click.echo(json.dumps(_admin(data, database, "GET", f"/admin/devices/{device_id}"), indent=2))


@device_group.command("action")
@_DATA
@_DATABASE
@click.argument("device_id")
@click.argument("action", type=click.Choice(["delete", "renew", "unblock"]))
def device_action(data: Path, database: str | None, device_id: str, action: str) -> None:
    """delete (the card is wiped at its next contact), renew (flag), unblock (the PIN and OTP-code counters).

    Devices activated before ids avoided a leading '-' may have one: give such an id after `--`."""
    _admin(data, database, "POST", f"/admin/devices/{device_id}/{action}")
    click.echo(f"{action}: {device_id}")


@server.command("trust")
@_DATA
@_DATABASE
@click.option(
    "--peer-data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="data directory of the server whose migration tickets to accept",
)
def trust(data: Path, database: str | None, peer_data: Path) -> None:
    """Accept migration tickets from the server running on PEER_DATA (fetched over its pinned TLS)."""
    _belongs(data, database)
    client, _ = admin_client(peer_data)
    with client:
        info = client.call("GET", "/v1/server")
    path = data / "trusted-servers.json"
    trusted = json.loads(path.read_text()) if path.exists() else []
    trusted.append({"url": client.url, "jwk": info["jwks"]["keys"][0]})
    path.write_text(json.dumps(trusted, indent=2))
    click.echo(f"trusting migration tickets from {client.url}")


@server.group("rp")
def rp_group() -> None:
    """Relying parties: web applications that ask users' cards to authenticate or sign."""


@rp_group.command("create")
@_DATA
@_DATABASE
@click.option("--name", required=True, help="the name users see on its requests")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
def rp_create(data: Path, database: str | None, name: str, as_json: bool) -> None:
    """Register a relying party and print its API key (shown this once; the server keeps only its hash)."""
    result = _admin(data, database, "POST", "/admin/relying-parties", {"name": name})
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"relying party {result['name']} (id {result['id']})")
    click.echo(f"API key (shown once): {result['api_key']}")


@server.group("request")
def request_group() -> None:
    """Authentication and signing requests, made as the built-in relying party "admin" (to try it by hand)."""


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@request_group.command("create")
@_DATA
@_DATABASE
@click.option("--user", default=None, help="the user whose devices get the request")
@click.option("--device", default=None, help="one device (instead of --user)")
@click.option("--kind", type=click.Choice(["sign", "auth"]), required=True, help="authenticate, or sign data")
@click.option("--text", default=None, help="a text shown to the user")
@click.option("--pdf", type=_FILE, default=None, help="a PDF shown to the user")
@click.option("--image", type=_FILE, default=None, help="a PNG, JPEG or GIF shown to the user")
@click.option("--raw", type=_FILE, default=None, help="raw data shown to the user (in hex)")
@click.option("--sign-file", type=_FILE, default=None, help="the data to sign (default: the --text)")
@click.option(
    "--alg",
    type=click.Choice(rw.ALGS),
    default=None,
    help="signature algorithm (default: by the card's key)",
)
@click.option("--format", "fmt", type=click.Choice(rw.FORMATS), default=None, help="sign: the result's format")
@click.option("--ttl", type=int, default=None, help="seconds until it expires (10 to 86400; default 300)")
@click.option("--callback", default=None, help="URL the result is POSTed to")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
def request_create(
    data: Path,
    database: str | None,
    user: str | None,
    device: str | None,
    kind: str,
    text: str | None,
    pdf: Path | None,
    image: Path | None,
    raw: Path | None,
    sign_file: Path | None,
    alg: str | None,
    fmt: str | None,
    ttl: int | None,
    callback: str | None,
    as_json: bool,
) -> None:
    """Ask USER's card to authenticate or sign; prints the request id."""
    from vsc_provider.provisioning import wire

    if (user is None) == (device is None):
        raise click.UsageError("name exactly one of --user and --device")
    body: dict[str, Any] = {"kind": kind, **({"user": user} if user else {"device": device})}
    metadata: list[dict[str, str]] = []
    if text is not None:
        metadata.append({"type": "text", "label": "text", "data": text})
    for kind_name, path in (("pdf", pdf), ("image", image), ("raw", raw)):
        if path is not None:
            metadata.append({"type": kind_name, "label": path.name[:100], "data": wire.b64u(path.read_bytes())})
    if metadata:
        body["metadata"] = metadata
    if kind == "sign":
        payload = _read(sign_file) if sign_file is not None else (text.encode() if text is not None else None)
        if payload is None:
            raise click.UsageError("--kind sign needs --sign-file (or --text) for the data to sign")
        body["data"] = wire.b64u(payload)
    elif sign_file is not None:
        raise click.UsageError("--sign-file is for --kind sign")
    for name, value in (("alg", alg), ("format", fmt), ("ttl", ttl), ("callback", callback)):
        if value is not None:
            body[name] = value
    result = _admin(data, database, "POST", "/admin/requests", body)
    click.echo(json.dumps(result) if as_json else result["id"])


@request_group.command("show")
@_DATA
@_DATABASE
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
def request_show(data: Path, database: str | None, request_id: str, as_json: bool) -> None:
    """A request's state and, once approved, the signature, the signer certificate and whether it verified."""
    doc = _admin(data, database, "GET", f"/admin/requests/{request_id}")
    result = doc.pop("result", None) or {}
    doc.update(result)
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"{doc['id']}: {doc['state']} ({doc['kind']}, {doc['alg']}, {doc['format']})")
    if result:
        click.echo(f"verified: {str(doc['verified']).lower()}")
        click.echo(f"signature: {doc['signature']}")
        click.echo(f"certificate: {doc['certificate']}")


@request_group.command("cancel")
@_DATA
@_DATABASE
@click.argument("request_id")
def request_cancel(data: Path, database: str | None, request_id: str) -> None:
    """Cancel a pending request (the devices drop it)."""
    doc = _admin(data, database, "POST", f"/admin/requests/{request_id}/cancel")
    click.echo(f"{doc['id']}: {doc['state']}")
