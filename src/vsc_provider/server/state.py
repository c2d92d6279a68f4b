"""What every handler shares: the data directory, CA, database, escrow, profiles, protocol key, the push
streams, background posts and push relay, and the checks every signed device request passes (JWS by the
device key, this endpoint's url, a fresh nonce)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.serialization import Encoding
from jwcrypto import jwk as jose_jwk

from vsc_provider.server import jose, tls, tpm_attestation
from vsc_provider.server.ca import Authority
from vsc_provider.server.db import RELAY_URL, TLS_NEXT_PIN, TLS_PIN, Device, open_database
from vsc_provider.server.db_schema import NO_SERVER
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.escrow import EscrowVault
from vsc_provider.server.limits import Limits
from vsc_provider.server.outbound import Outbox
from vsc_provider.server.profiles import load as load_profiles
from vsc_provider.server.push import PushHub
from vsc_provider.server.push_bus import PgPushBus
from vsc_provider.server.relay import Relay
from vsc_provider.server.revocation import Revocation

log = logging.getLogger("vsc.server")


def private_folder(data: Path) -> None:
    """The data directory holds the CA, TLS, protocol and escrow keys: 0700, whoever made it, and every file
    the server makes from now on is its owner's alone (umask 077: SQLite's -wal and -shm files included)."""
    os.umask(0o077)
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    data.chmod(0o700)


def private_files(data: Path) -> None:
    """Files an earlier version (or a looser umask) left readable by others: the owner's alone."""
    for path in data.rglob("*"):
        if path.is_file() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
        elif path.is_dir():
            path.chmod(0o700)


ADMIN_RP = "admin"  # the relying party the admin's request commands act as (id and name)


@dataclass
class Verified:
    """A device request whose JWS checked out: its protected header, payload, signing key and device
    (None for a new device key)."""

    header: dict[str, Any]
    payload: dict[str, Any]
    key: jose_jwk.JWK
    device: Device | None


class WrongDataDirectory(Exception):
    """The data directory is not the one the (shared) database belongs to (a one-line reason)."""


# Files every instance on one database must hold identical copies of, and which a lone server makes when
# missing (the CA, protocol key and escrow key are checked by fingerprint: _check_identity).
SHARED_FILES = ("tls.key", "tls.pem", "admin.json")


def _relay_check(secret: bytes) -> str:
    """What the database records of the push relay's topic key (relay-secret) to compare instances' copies."""
    return hmac.new(secret, b"vsc-relay-secret-check", hashlib.sha256).hexdigest()


def _missing(data: Path, name: str) -> str:
    return (
        f"{data} has no {name}, which the instances sharing this database must all have the same copy of:"
        " copy it from another instance's data directory"
    )


class IdentityServer:
    """State shared by the handlers: data directory, CA, database, protocol key, profiles.

    `database` is a postgresql:// URL that several instances share (each with a copy of the same data
    directory), or None for SQLite in the data directory."""

    def __init__(self, data: Path, hosts: list[str], database: str | None = None, admin: bool = False) -> None:
        """ADMIN: for an admin command on the database (admin_local.py), with a copy of a data directory that
        holds every file already: nothing is migrated, claimed, repaired or made, in the database or in DATA."""
        self.data = data
        self._public_url = ""
        if not admin:
            private_folder(data)
        self.db = open_database(data, database, upgrade=not admin)
        try:
            self._load(data, hosts, admin)
        except BaseException:
            self.db.close()
            raise
        bus = None
        if database is not None:
            notify = self.db.backend.notify  # type: ignore[attr-defined]
            bus = PgPushBus(database, notify, self._push_document)
        self.push = PushHub(bus)
        self.outbox = Outbox()

    def _load(self, data: Path, hosts: list[str], admin: bool) -> None:
        recorded = self.db.identity()
        if admin and not recorded:
            raise WrongDataDirectory(NO_SERVER)
        if not (data / "ca.key").exists() and (recorded or self.db.has_devices()):
            raise WrongDataDirectory(
                f"the database already serves devices but {data} holds no CA: copy the data directory of the"
                " server that made it (every instance needs the same one)"
            )
        self._check_shared_files()
        self.authority = Authority.load_or_create(data, hosts)
        self.escrow = EscrowVault(data)
        self.protocol_key = jose.load_protocol_key(data / "protocol-key.json")
        self._check_identity(claim=not admin)
        self.db.sealer = self.escrow
        self.limits = Limits(self.escrow.key, self.db.backend if self.db.shared else None)
        self.revocation = Revocation(self.db, self.authority)
        self.profiles = load_profiles(data)
        self.admin_token = self._admin_token()
        # the pin activation links carry: the key this server presents; for an admin command, the key the
        # servers on the database present (recorded at their start: the copy may predate a rotation)
        self.link_pin = (recorded.get(TLS_PIN) if admin else None) or self.authority.tls_pin
        # set by `vsc server run --push-relay URL`; for an admin command, the relay the servers notify
        self.relay: Relay | None = self._recorded_relay(recorded) if admin else None
        if not admin:
            self._maintain()
            self.db.add_relying_party(ADMIN_RP, ADMIN_RP, None)

    def _maintain(self) -> None:
        """What a starting server repairs: certificate serials and secrets earlier versions did not store,
        escrow and device secrets they stored in clear, files they left readable by others."""
        self.db.fill_serials()
        self._seal_legacy_escrow()
        self.db.seal_clear_fields()
        private_files(self.data)

    def _check_identity(self, claim: bool) -> None:
        """The database records which CA, protocol key and escrow key its data directory holds: an instance
        with other ones (a data directory made anew instead of copied) is refused before it serves. The first
        server to start on a database records them (CLAIM); an admin command only compares."""
        mine = {
            "ca": hashlib.sha256(self.authority.cert.public_bytes(Encoding.DER)).hexdigest(),
            "protocol_key": self.protocol_key.thumbprint(),
            "escrow_key": hmac.new(self.escrow.key, b"vsc-escrow-key-check", hashlib.sha256).hexdigest(),
        }
        recorded = self.db.claim_identity(mine) if claim else self.db.identity()
        differ = [name for name, value in mine.items() if recorded.get(name) != value]
        if differ:
            raise WrongDataDirectory(
                f"{self.data} does not belong to this database (its {', '.join(differ)} differ):"
                " give every instance a copy of the same data directory"
            )

    def _check_shared_files(self) -> None:
        """On a database that already belongs to a data directory (shared by instances), a copy missing a
        file the instances share is refused: made anew here, it would differ from the others' (another TLS
        key than the one cards pin, another admin token)."""
        if not self.db.shared or not self.db.identity():
            return
        for name in SHARED_FILES:
            if not (self.data / name).exists():
                raise WrongDataDirectory(_missing(self.data, name))

    def use_relay(self, url: str) -> None:
        """Notify devices through a push relay (`vsc server run --push-relay`): its topic key (relay-secret).
        On a shared database (PostgreSQL) it is the same on every instance, recorded in the database by the
        first one to use it, and a copy without it or with another is refused. A lone server (SQLite) that
        lost the file makes a new one and records it: its devices learn their new topics at their next call."""
        path = self.data / "relay-secret"
        recorded = self.db.identity().get("relay_secret")
        if self.db.shared and recorded and not path.exists():
            raise WrongDataDirectory(_missing(self.data, path.name))
        relay = Relay.load(self.data, url)
        mine = _relay_check(relay.secret)
        if not self.db.shared:
            if recorded != mine:
                if recorded:
                    log.warning("%s is not the one recorded: relay topics change (devices learn them anew)", path)
                self.db.record_served({"relay_secret": mine})
        elif self.db.claim_identity({"relay_secret": mine}).get("relay_secret") != mine:
            raise WrongDataDirectory(
                f"{path} differs from the one the database's other instances use: copy theirs to every instance"
            )
        self.relay = relay

    def record_served(self) -> None:
        """Record in the database what this server serves, once its start-up checks all passed (a start refused
        later records nothing): its TLS pin and announced next pin, which admin commands put in links, and its
        push relay's URL (None without one), which they notify."""
        url = self.relay.url if self.relay is not None else None
        self.db.record_served({TLS_PIN: self.authority.tls_pin, TLS_NEXT_PIN: tls.next_pin(self.data), RELAY_URL: url})

    def _recorded_relay(self, recorded: dict[str, str]) -> Relay | None:
        """The push relay the servers on the database notify (RECORDED at their start), with this copy's
        relay-secret, which must be theirs; None when they use none."""
        url = recorded.get(RELAY_URL)
        if url is None:
            return None
        path = self.data / "relay-secret"
        if not path.exists() or _relay_check(path.read_bytes()) != recorded.get("relay_secret"):
            raise WrongDataDirectory(
                f"{path} is missing or differs from the servers' (they notify the push relay {url}): copy theirs"
            )
        return Relay.load(self.data, url)

    def _push_document(self, request_id: str, device: str) -> str | None:
        target = self.db.request_target(request_id, device)
        return None if target is None else str(target["document"])

    def _seal_legacy_escrow(self) -> None:
        """Escrowed keys stored in clear by earlier versions are sealed in place at start-up."""
        for rowid, device_id, key_id, blob in self.db.escrow_rows():
            if not EscrowVault.is_sealed(blob):
                self.db.set_escrow(rowid, self.escrow.seal(device_id, key_id, blob))

    def _admin_token(self) -> str:
        path = self.data / "admin.json"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"token": secrets.token_urlsafe(32)}, f)
        return str(json.loads(path.read_text())["token"])

    def public_url(self) -> str:
        """The URL devices know this server by (server.json, written when `vsc server run` starts)."""
        if not self._public_url:
            path = self.data / "server.json"
            self._public_url = str(json.loads(path.read_text())["url"]).rstrip("/") if path.exists() else ""
        return self._public_url

    def attestation_keys(self) -> list[jose_jwk.JWK]:
        folder = self.data / "attestation"
        if not folder.is_dir():
            return []
        return [jose_jwk.JWK.from_pem(p.read_bytes()) for p in sorted(folder.glob("*.pem"))]

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [self.protocol_key.export_public(as_dict=True)]}

    def jwe_open(self, compact: Any) -> bytes:
        return jose.jwe_open(self.protocol_key, compact)

    def verify(self, body: Any, path: str, new_key: bool) -> Verified:
        """A flattened JWS: allowed alg, RSA >= 2048, good signature, url of this endpoint, fresh nonce."""
        header = jose.protected_header(body)
        device = None
        if new_key:
            if "kid" in header or not isinstance(header.get("jwk"), dict):
                raise ProtocolError(400, "bad_key", "a new device key is sent as 'jwk' (and no 'kid')")
            key = jose.rsa_public_jwk(header["jwk"])
        else:
            kid = header.get("kid")
            if "jwk" in header or not isinstance(kid, str):
                raise ProtocolError(400, "bad_key", "a registered device signs with 'kid' (and no 'jwk')")
            device = self.db.device(kid)
            if device is None:
                raise ProtocolError(401, "unknown_key", "no device is registered with this kid")
            key = jose_jwk.JWK(**device.jwk)
        payload = jose.verified_payload(body, key, header["alg"])
        url, here = header.get("url"), self.public_url()
        if not isinstance(url, str) or url != (here + path if here else url) or urlsplit(url).path != path:
            raise ProtocolError(400, "bad_url", f"the protected header's url must be {here or '<this server>'}{path}")
        nonce = header.get("nonce")
        expires = self.limits.nonces.expiry(nonce) if isinstance(nonce, str) else None
        if expires is None or not self.db.spend_nonce(str(nonce), expires):
            raise ProtocolError(400, "bad_nonce", "unknown, expired or already used nonce: get a new one")
        claims = jose.json_object(payload)
        if device is not None:  # refused before it confirms anything: a copied store does not count as the device
            tpm_attestation.on_call(device, path, claims, key.thumbprint(), str(nonce))
        if device is not None and device.confirmed is None:
            # the device knows its id, so it has its activation answer: that answer is not replayed any more
            self.db.confirm_device(device.id)
        return Verified(header, claims, key, device)

    def verify_active(self, body: Any, path: str) -> tuple[Verified, Device]:
        """A request by a registered device that is still active here (410 for a deleted or migrated one)."""
        v = self.verify(body, path, new_key=False)
        return v, active(v)


def active(v: Verified) -> Device:
    """The device of a verified request, refused (410) unless it is active here."""
    dev = v.device
    assert dev is not None
    if dev.state != "active":
        raise ProtocolError(410, f"device_{dev.state}", f"this device is {dev.state} on the server: wipe the card")
    return dev
