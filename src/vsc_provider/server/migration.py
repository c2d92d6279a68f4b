"""Moving a device to another server. Server A (/v1/migration, /v1/migration/complete) signs a ticket naming
the device's keys and the target's protocol key, and ends the device when it brings back the target's
receipt; server B checks tickets from servers it trusts (trusted-servers.json) at activation and signs the receipt.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

from jwcrypto import jwk as jose_jwk

from vsc_provider.server import jose
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.issuance import spki_hash
from vsc_provider.server.profiles import Profile
from vsc_provider.server.state import IdentityServer

log = logging.getLogger("vsc.server")

TICKET_TTL = 24 * 3600.0
MAX_OPEN_TICKETS = 3  # issued and not completed within TICKET_TTL, per device


def ticket(srv: IdentityServer, body: Any) -> dict[str, Any]:
    """Server A's side: a signed ticket naming the device's keys and the target's protocol key.

    The device stays A's (active) until it brings back the target's signed receipt (/v1/migration/complete):
    a migration that fails at the target leaves the card working with A."""
    v, dev = srv.verify_active(body, "/v1/migration")
    if srv.db.open_tickets(dev.id, time.time() - TICKET_TTL) >= MAX_OPEN_TICKETS:
        raise _too_many_tickets()  # early, before signing; add_ticket decides under the device's lock
    target = v.payload.get("target")
    if not isinstance(target, str) or not target.startswith("https://") or len(target) > 512:
        raise ProtocolError(400, "bad_target", "target is the https URL of the new server")
    target_key_data = v.payload.get("target_key")
    if not isinstance(target_key_data, dict):
        raise ProtocolError(400, "bad_target", "target_key is the new server's protocol key (public RSA JWK)")
    target_key = jose.rsa_public_jwk(target_key_data)
    keys = srv.db.active_keys(dev.id)
    claims = {
        "iss": "vsc-identity-server",
        "jti": secrets.token_urlsafe(16),
        "aud": target.rstrip("/"),
        "aud_key": target_key.thumbprint(),
        "exp": int(time.time() + TICKET_TTL),
        "user": dev.user,
        "profile": dev.profile,
        "keys": [spki_hash(k["spki"]) for k in keys if k["format"] != "imported"],
    }
    signed = jose.sign_compact(srv.protocol_key, claims)
    since = time.time() - TICKET_TTL
    if not srv.db.add_ticket(claims["jti"], dev.id, claims["aud"], target_key.export_public(), since, MAX_OPEN_TICKETS):
        raise _too_many_tickets()
    answer = {"ticket": signed}
    so_pin = srv.db.so_pin(dev.id)
    if so_pin is not None:  # for the device to hand to the target, which then can unblock the card
        answer["so_pin"] = jose.jwe_to(dev.jwk, so_pin)
    return answer


def _too_many_tickets() -> ProtocolError:
    detail = f"{MAX_OPEN_TICKETS} migration tickets are open for this device: use one or wait"
    return ProtocolError(429, "too_many_tickets", detail)


def complete(srv: IdentityServer, body: Any) -> dict[str, Any]:
    """Server A's side, second step: the target's receipt for one of this device's tickets ends the device here."""
    v, dev = srv.verify_active(body, "/v1/migration/complete")
    receipt = v.payload.get("receipt")
    if not isinstance(receipt, str) or len(receipt) > 16384:
        raise ProtocolError(400, "bad_receipt", "receipt is the target server's compact JWS")
    try:
        ticket_id = str(jose.unverified_claims(receipt)["ticket"])
    except Exception:
        raise ProtocolError(400, "bad_receipt", "the receipt is not a JWS naming a ticket") from None
    row = srv.db.ticket(ticket_id)
    if row is None or row["device"] != dev.id or row["state"] != "issued" or not row["target_key"]:
        raise ProtocolError(400, "bad_receipt", "the receipt names no open migration ticket of this device")
    try:
        jose.compact_claims(receipt, jose_jwk.JWK.from_json(row["target_key"]))
    except Exception:
        raise ProtocolError(401, "bad_receipt", "the receipt is not signed by the ticket's target") from None
    if not srv.db.complete_ticket(ticket_id, dev.id):
        raise ProtocolError(409, "ticket_used", "this migration was completed already")
    log.info("device %s migrated to %s", dev.id, row["target"])
    return {"state": "migrated"}


def check_ticket(srv: IdentityServer, token: str) -> tuple[str, Profile, set[str], str]:
    """Server B's side: a ticket from a server this one trusts (trusted-servers.json), for this server:
    (user, profile, hashes of the keys it names, ticket id)."""
    path = srv.data / "trusted-servers.json"
    trusted = json.loads(path.read_text()) if path.exists() else []
    for entry in trusted:
        try:
            claims = jose.compact_claims(token, jose_jwk.JWK(**entry["jwk"]))
        except Exception:  # noqa: S112 - try the next trusted server
            continue
        if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
            raise ProtocolError(400, "bad_ticket", "the migration ticket expired")
        if claims.get("aud") != srv.public_url():
            raise ProtocolError(400, "bad_ticket", "the migration ticket is for another server")
        if claims.get("aud_key") != srv.protocol_key.thumbprint():
            raise ProtocolError(400, "bad_ticket", "the migration ticket names another server key")
        profile = srv.profiles.get(str(claims.get("profile")))
        if profile is None:
            raise ProtocolError(400, "bad_ticket", "this server has no profile of that name")
        return str(claims["user"]), profile, set(claims.get("keys", [])), str(claims["jti"])
    raise ProtocolError(403, "bad_ticket", "the ticket is not signed by a server this one trusts")


def receipt(srv: IdentityServer, ticket_id: str, device_id: str) -> str:
    """Server B's signed receipt for a ticket it activated a device with: server A ends the device on it."""
    claims = {"ticket": ticket_id, "device": device_id, "iss": srv.public_url(), "iat": int(time.time())}
    return jose.sign_compact(srv.protocol_key, claims)
