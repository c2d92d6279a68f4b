"""/v1/offer and /v1/activate: a device shows its one-time code (or a migration ticket), proves its keys with
CSRs and gets certificates, its server secret, for imported keys the keys themselves and, when its profile
or code says so, an OATH seed (otp_provision.py).

An activation verifies everything first and stores last, using the code or ticket once; a device that
lost the answer asks again with the same keys and gets it replayed until its first kid-signed request.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk as jose_jwk

from vsc_provider.provisioning import wire
from vsc_provider.server import issuance, jose, migration, otp_provision, tpm_attestation
from vsc_provider.server.db import Device
from vsc_provider.server.db_otp import OtpSeed
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.ids import typed_id
from vsc_provider.server.pins import new_verifier
from vsc_provider.server.profiles import Profile
from vsc_provider.server.state import IdentityServer, Verified
from vsc_provider.server.throttle import PinTry

log = logging.getLogger("vsc.server")

ACTIVATION_TTL = 7 * 24 * 3600.0
UNCONFIRMED_SWEEP = 100  # devices dropped per sweep at most: a sweep never holds the database for long


def confirm_ttl() -> float:
    """How long an activated device may stay unconfirmed: its activation can be replayed meanwhile, after it
    the device is deleted (its keys retired). VSC_SERVER_CONFIRM_TTL (seconds) shortens it for tests."""
    return float(os.environ.get("VSC_SERVER_CONFIRM_TTL", str(ACTIVATION_TTL)))


def _offer_for(srv: IdentityServer, code: Any) -> tuple[str, Profile]:
    if not isinstance(code, str) or not 8 <= len(code) <= 128:
        raise ProtocolError(400, "bad_code", "an activation code is a string of 8 to 128 characters")
    found = srv.db.activation(code)
    if found is None:
        raise ProtocolError(404, "unknown_code", "unknown, expired or already used activation code")
    user, profile_name = found
    return user, srv.profiles[profile_name]


def offer(srv: IdentityServer, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(400, "malformed", "expected a JSON object with 'code'")
    user, profile = _offer_for(srv, body.get("code"))
    out = {
        "user": user,
        "profile": profile.to_json(),
        "device_key": {"kty": "RSA", "min_bits": wire.MIN_RSA_BITS, "algorithms": list(wire.JWS_ALGS)},
        "attestation_required": bool(srv.attestation_keys()),
        "server": {"jwks": srv.public_jwks()},
    }
    otp = otp_provision.setting_for(srv, profile, body["code"])
    if otp is not None:
        out["otp"] = otp.to_json()
    return out


def _check_attestation(srv: IdentityServer, v: Verified) -> bool:
    """Whether the device is attested: False when the server asks for no attestation, a refusal when it
    does and the request has none by a configured key for this device key and nonce."""
    trusted = srv.attestation_keys()
    if not trusted:
        return False
    token = v.payload.get("attestation")
    if not isinstance(token, str) or len(token) > 16384:
        raise ProtocolError(403, "attestation_required", "this server accepts only attested devices")
    for key in trusted:
        try:
            claims = jose.compact_claims(token, key, jose.ATTESTATION_ALGS)
        except Exception:  # noqa: S112 - try the next configured key
            continue
        if (
            isinstance(claims, dict)
            and claims.get("device") == v.key.thumbprint()
            and claims.get("nonce") == v.header["nonce"]
        ):
            return True
    raise ProtocolError(403, "bad_attestation", "the attestation is not signed by a configured key for this request")


def activate(srv: IdentityServer, body: Any) -> dict[str, Any]:
    drop_unconfirmed(srv)
    v = srv.verify(body, "/v1/activate", new_key=True)
    code, ticket = v.payload.get("code"), v.payload.get("ticket")
    allowed_spki = None
    ticket_id = None
    if isinstance(code, str) and ticket is None:
        replayed = _replay(srv, v, code)
        if replayed is not None:
            return replayed
        user, profile = _offer_for(srv, code)
    elif isinstance(ticket, str) and code is None:
        user, profile, allowed_spki, ticket_id = migration.check_ticket(srv, ticket)
    else:
        raise ProtocolError(400, "malformed", "the payload names either a code or a ticket")
    attested = _check_attestation(srv, v)
    tpm_key = tpm_attestation.at_activation(v.payload, v.key.thumbprint(), v.header["nonce"])
    requests = list(profile.keys)
    if ticket_id is not None:
        requests = [r for r in requests if r.format != "imported"]
    publics = issuance.csr_keys(v, requests, allowed_spki)
    verifier = secret = None
    if not profile.offline:
        verifier = new_verifier(srv, v.payload)
        secret = secrets.token_bytes(32)
    device_id = typed_id()
    jwk = v.key.export_public(as_dict=True)
    keys, rows = issuance.issue(srv, device_id, user, jwk, requests, publics)
    dev = Device(
        device_id,
        user,
        profile.name,
        jwk,
        "active",
        False,
        verifier,
        secret,
        0,
        0.0,
        so_pin=_so_pin(srv, v),
        tpm_key=tpm_key,
    )
    # a migrated card keeps the OTP keys it has; the target provisions none
    otp = otp_provision.setting_for(srv, profile, code) if ticket_id is None else None
    seed = None if otp is None else otp_provision.new_seed(srv, device_id, profile, otp)
    if not srv.db.register_device(dev, attested, rows, code=code, ticket=ticket_id, otp=seed):
        if code is not None:
            raise ProtocolError(409, "code_used", "this activation code was used meanwhile")
        raise ProtocolError(409, "ticket_used", "this migration ticket was used already")
    log.info("activated device %s for %s (profile %s)", device_id, user, profile.name)
    out = _answer(srv, dev, profile, keys, seed)
    if ticket_id is not None:
        out["receipt"] = migration.receipt(srv, ticket_id, device_id)
    return out


def _so_pin(srv: IdentityServer, v: Verified) -> bytes | None:
    """The card's SO PIN, which the device may send (a JWE to the server) so the administrator can unblock
    the card's own PIN counter later."""
    sealed = v.payload.get("so_pin")
    if sealed is None:
        return None
    so_pin = srv.jwe_open(sealed)
    if not 4 <= len(so_pin) <= 64 or not so_pin.isdigit():
        raise ProtocolError(400, "bad_so_pin", "so_pin is 4 to 64 digits")
    return so_pin


def _answer(
    srv: IdentityServer, dev: Device, profile: Profile, keys: list[dict[str, Any]], seed: OtpSeed | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "device": dev.id,
        "user": dev.user,
        "profile": profile.name,
        "offline": profile.offline,
        "keys": keys,
        "ca": wire.b64u(srv.authority.cert.public_bytes(serialization.Encoding.DER)),
    }
    if dev.server_secret is not None:
        out["secret"] = jose.jwe_to(dev.jwk, dev.server_secret)
    if seed is not None:
        out["otp"] = otp_provision.answer(dev.jwk, seed, dev.user)
    return out


def _replay(srv: IdentityServer, v: Verified, code: str) -> dict[str, Any] | None:
    """The answer to an activation that already succeeded, again, for the same device key.

    A device killed after the server used its code but before it stored the answer asks again with the
    same device key and the same card keys. Replays stop at the device's first kid-signed request
    (it then has its answer) and after confirm_ttl(). Any other key, or a code not used by a device,
    gets None: the caller answers as for any used code. A replay changes nothing on the server."""
    device_id = srv.db.code_device(code) if isinstance(code, str) and 8 <= len(code) <= 128 else None
    dev = srv.db.device(device_id) if device_id else None
    if dev is None or dev.state != "active" or dev.confirmed is not None:
        return None
    if time.time() > dev.created + confirm_ttl():
        return None
    if not hmac.compare_digest(jose_jwk.JWK(**dev.jwk).thumbprint(), v.key.thumbprint()):
        return None
    profile = srv.profiles.get(dev.profile)
    if profile is None:
        return None
    _check_attestation(srv, v)
    tpm_key = tpm_attestation.at_activation(v.payload, v.key.thumbprint(), v.header["nonce"])
    if not tpm_attestation.same_key(dev.tpm_key, tpm_key):
        raise ProtocolError(
            409, "activation_mismatch", "the TPM key is not the one registered at this code's activation"
        )
    issued = {k["key_id"]: k for k in srv.db.active_keys(dev.id)}
    publics = issuance.csr_keys(v, [r for r in profile.keys if r.id in issued], None)
    for key_id, public in publics.items():
        if issued[key_id]["spki"] != issuance.public_der(public):
            raise ProtocolError(
                409, "activation_mismatch", f"key {key_id} is not the key certified at this code's activation"
            )
    if dev.pin_verifier is not None:
        # comparing verifiers checks a PIN: counted like a /v1/pin try, so replays are no free PIN oracle
        attempt = PinTry(srv.db, dev.id)
        verifier = srv.jwe_open(v.payload.get("pin_verifier"))
        if not hmac.compare_digest(verifier, dev.pin_verifier):
            raise attempt.wrong()
        attempt.right()
    keys = []
    for key_id, row in issued.items():
        entry: dict[str, Any] = {"id": key_id, "usage": row["usage"], "format": row["format"]}
        if row["cert"] is not None:
            entry["certificate"] = wire.b64u(bytes(row["cert"]))
        if row["escrow"] is not None:
            entry["key"] = jose.jwe_to(dev.jwk, srv.escrow.unseal(dev.id, key_id, bytes(row["escrow"])))
        keys.append(entry)
    log.info("replayed the activation of unconfirmed device %s for %s", dev.id, dev.user)
    return _answer(srv, dev, profile, keys, srv.db.otp_seed(dev.id))


def drop_unconfirmed(srv: IdentityServer) -> None:
    """Devices never confirmed within confirm_ttl() of their activation are deleted, their keys retired;
    at most UNCONFIRMED_SWEEP per call (activations and the admin's device list call it)."""
    for device_id in srv.db.drop_unconfirmed(time.time() - confirm_ttl(), UNCONFIRMED_SWEEP):
        log.warning("deleted device %s: never confirmed after its activation", device_id)
