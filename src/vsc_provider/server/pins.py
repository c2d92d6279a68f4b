"""/v1/pin and /v1/pin/change: a device proves its PIN (an HMAC over the request's nonce keyed with the
PIN verifier, wire.pin_proof) and gets the server's share of its data key; a PIN change brings a new verifier."""

from __future__ import annotations

import hmac
from typing import Any

from vsc_provider.provisioning import wire
from vsc_provider.server import jose
from vsc_provider.server.db import Device
from vsc_provider.server.devices import wants_renewal
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.state import IdentityServer, Verified, active
from vsc_provider.server.throttle import PinTry


def new_verifier(srv: IdentityServer, payload: dict[str, Any]) -> bytes:
    """The PIN verifier a device sends in a JWE to the server (at activation or PIN change)."""
    verifier = srv.jwe_open(payload.get("pin_verifier"))
    if len(verifier) != 32:
        raise ProtocolError(400, "bad_pin_verifier", "the PIN verifier has 32 bytes")
    return verifier


def pin(srv: IdentityServer, body: Any) -> dict[str, Any]:
    v = srv.verify(body, "/v1/pin", new_key=False)
    dev = check_pin(srv, v)
    assert dev.server_secret is not None
    return {"secret": jose.jwe_to(dev.jwk, dev.server_secret), "renew": wants_renewal(srv, dev)}


def check_pin(srv: IdentityServer, v: Verified) -> Device:
    """Count the try, then check the proof against the verifier (or a changed one not yet confirmed).

    A proof by the new verifier of a PIN change confirms it: the old one is dropped. Refusals raise."""
    dev = active(v)
    if dev.pin_verifier is None or dev.server_secret is None:
        raise ProtocolError(400, "offline_card", "this device's PIN is not checked by the server")
    proof = v.payload.get("proof")
    if not isinstance(proof, str):
        raise ProtocolError(400, "malformed", "the payload has 'proof'")
    attempt = PinTry(srv.db, dev.id)
    try:
        given = wire.unb64u(proof)
    except ValueError:
        given = b""
    nonce = v.header["nonce"]
    good = hmac.compare_digest(given, wire.pin_proof(dev.pin_verifier, nonce))
    confirmed = dev.pin_verifier_next is not None and hmac.compare_digest(
        given, wire.pin_proof(dev.pin_verifier_next, nonce)
    )
    if not (good or confirmed):
        raise attempt.wrong()
    if confirmed:
        srv.db.set_device(dev.id, pin_verifier=dev.pin_verifier_next, pin_verifier_next=None)
        dev.pin_verifier, dev.pin_verifier_next = dev.pin_verifier_next, None
    attempt.right()
    return dev


def pin_change(srv: IdentityServer, body: Any) -> dict[str, Any]:
    """A new PIN verifier, accepted with a proof of the current PIN (a wrong one counts like /v1/pin).

    The new verifier works alongside the old one until a proof by the new one confirms it, so a device
    that dies between this answer and re-wrapping its data key still opens with the old PIN."""
    v = srv.verify(body, "/v1/pin/change", new_key=False)
    verifier = new_verifier(srv, v.payload)
    dev = check_pin(srv, v)
    assert dev.server_secret is not None
    srv.db.set_device(dev.id, pin_verifier_next=verifier)
    return {"secret": jose.jwe_to(dev.jwk, dev.server_secret)}
