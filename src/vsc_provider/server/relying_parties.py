"""Relying parties: registered by the admin (`vsc server rp create`), each with an API key shown once and
kept as its SHA-256; /rp/v1/* calls carry it as a bearer token."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from vsc_provider.provisioning import request_wire
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.ids import typed_id
from vsc_provider.server.state import ADMIN_RP, IdentityServer


@dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def create(srv: IdentityServer, body: Any) -> dict[str, Any]:
    """POST /admin/relying-parties {"name"} -> {"id", "name", "api_key"} (the key is never shown again)."""
    if not isinstance(body, dict) or set(body) != {"name"}:
        raise ProtocolError(400, "malformed", 'expected {"name": ...}')
    name = body["name"]
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or not name.isprintable() or name != name.strip():
        raise ProtocolError(400, "bad_name", "a relying party's name is 1 to 100 printable characters")
    rp_id = typed_id(12)
    api_key = request_wire.API_KEY_PREFIX + secrets.token_urlsafe(32)
    if not srv.db.add_relying_party(rp_id, name, key_hash(api_key)):
        raise ProtocolError(409, "name_taken", f"a relying party named {name!r} exists already")
    return {"id": rp_id, "name": name, "api_key": api_key}


def authenticate(srv: IdentityServer, request: Request) -> RelyingParty:
    """The relying party whose API key the request carries (401 bad_api_key otherwise)."""
    auth = request.headers.get("authorization", "")
    key = auth[7:] if auth.startswith("Bearer ") else ""
    found = None
    if key.startswith(request_wire.API_KEY_PREFIX) and len(key) <= 200:
        found = srv.db.relying_party(key_hash=key_hash(key))  # a hash of a 256-bit secret: no timing to learn
    if found is None:
        raise ProtocolError(401, "bad_api_key", "relying-party calls carry 'Authorization: Bearer <API key>'")
    return RelyingParty(*found)


def admin(srv: IdentityServer) -> RelyingParty:
    found = srv.db.relying_party(rp_id=ADMIN_RP)
    assert found is not None
    return RelyingParty(*found)
