"""/v1/server and /v1/nonce: what a device learns before it signs anything."""

from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives import serialization

from vsc_provider.provisioning import wire
from vsc_provider.server import jose, tls
from vsc_provider.server.state import IdentityServer


def info(srv: IdentityServer) -> dict[str, Any]:
    return {
        "protocol": 1,
        "jws_algorithms": list(wire.JWS_ALGS),
        "jwks": srv.public_jwks(),
        "ca": wire.b64u(srv.authority.cert.public_bytes(serialization.Encoding.DER)),
        "attestation_required": bool(srv.attestation_keys()),
        "tls": {"announcement": tls_announcement(srv)},
    }


def tls_announcement(srv: IdentityServer) -> str:
    """The TLS keys cards should accept (the current one, one announced by `vsc server rotate-tls`, the
    previous one during its grace period) and when each retired key stops being accepted (`retire`), in a
    compact JWS by the protocol key."""
    now = time.time()
    announced = tls.next_pin(srv.data)  # read each time: `rotate-tls` runs beside a running server
    retire = tls.retired(srv.data)
    previous = [pin for pin, until in retire.items() if until > now and pin != srv.authority.tls_pin]
    pins = [srv.authority.tls_pin, *([announced] if announced else []), *previous]
    retire = {pin: until for pin, until in retire.items() if pin != srv.authority.tls_pin}
    claims = {"typ": "vsc-tls-pins", "pins": pins, "retire": {p: int(t) for p, t in retire.items()}, "iat": int(now)}
    return jose.sign_compact(srv.protocol_key, claims)


def new_nonce(srv: IdentityServer) -> str:
    """A nonce for one signed request: stateless (limits.NonceMint), stored only when a request spends it."""
    return srv.limits.nonces.new()
