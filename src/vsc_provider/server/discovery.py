"""/v1/server and /v1/nonce: what a device learns before it signs anything."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization

from vsc_provider.provisioning import wire
from vsc_provider.server.state import IdentityServer


def info(srv: IdentityServer) -> dict[str, Any]:
    return {
        "protocol": 1,
        "jws_algorithms": list(wire.JWS_ALGS),
        "jwks": srv.public_jwks(),
        "ca": wire.b64u(srv.authority.cert.public_bytes(serialization.Encoding.DER)),
        "attestation_required": bool(srv.attestation_keys()),
    }


def new_nonce(srv: IdentityServer) -> str:
    """A nonce for one signed request: stateless (limits.NonceMint), stored only when a request spends it."""
    return srv.limits.nonces.new()
