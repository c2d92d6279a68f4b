"""Authentication and signing requests, the relying party's side (/rp/v1/requests, and the admin's
/admin/requests acting as the built-in relying party): create, read, cancel, expire; the document each
device gets (a compact JWS by the protocol key), and what follows a final state (callback, `gone` events).

States go PENDING -> APPROVED | REJECTED | EXPIRED | CANCELLED once, by one conditional UPDATE
(db.decide_request), so of a cancel, an expiry and device answers racing exactly one wins.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from vsc_provider.provisioning import request_wire as rw
from vsc_provider.provisioning import wire
from vsc_provider.server import jose, results
from vsc_provider.server.db import Device
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.ids import typed_id
from vsc_provider.server.relying_parties import RelyingParty
from vsc_provider.server.request_input import RequestInput, bad, parse
from vsc_provider.server.state import ADMIN_RP, IdentityServer

log = logging.getLogger("vsc.server")

CALLBACK_TRIES = 3
CALLBACK_TIMEOUT = 5.0
EXPIRY_SWEEP = 100  # requests stored EXPIRED per sweep at most
# pending requests per device, and the size of their documents: what /v1/requests and a push stream's start
# carry stays bounded
MAX_PENDING = 64
MAX_PENDING_CHARS = 32 * 1024 * 1024
USAGE_ORDER = {"auth": ("auth",), "sign": ("sign", "auth")}


def _targets(srv: IdentityServer, inp: RequestInput) -> tuple[str, list[tuple[Device, str]]]:
    """(alg, [(device, key id)]): each active device of the user (or the named one) with a certified key
    of a usage that fits the kind and of a type that fits the alg (the first fitting one picks a missing alg)."""
    devices = [inp.device] if inp.device is not None else srv.db.user_devices(inp.user or "")
    alg = inp.alg
    chosen: list[tuple[Device, str]] = []
    for device_id in devices:
        dev = srv.db.device(device_id)
        if dev is None or dev.state != "active":
            continue
        keys = [k for k in srv.db.active_keys(device_id) if k["cert"] is not None]
        pick = None
        for usage in USAGE_ORDER[inp.kind]:
            for key in (k for k in keys if k["usage"] == usage):
                public = x509.load_der_x509_certificate(bytes(key["cert"])).public_key()
                want = alg or results.default_alg(public, len(inp.hash) if inp.hash else None)
                if want is not None and results.key_fits(public, want):
                    pick, alg = key["key_id"], want
                    break
            if pick is not None:
                break
        if pick is not None:
            chosen.append((dev, pick))
    if not chosen or alg is None:
        whom = f"device {inp.device}" if inp.device else f"user {inp.user}"
        detail = f"{whom} has no active device with a certified key for this request"
        raise ProtocolError(409, "no_suitable_key", detail)
    return alg, chosen


def _server_name(srv: IdentityServer) -> str:
    host = urlsplit(srv.public_url()).hostname
    return f"vsc identity server {host}" if host else "vsc identity server"


def create(srv: IdentityServer, rp: RelyingParty, body: Any) -> dict[str, Any]:
    inp = parse(body)
    alg, targets = _targets(srv, inp)
    now = time.time()
    for dev, _ in targets:  # early, before signing; add_request decides under the devices' locks
        count, chars = srv.db.pending_load(dev.id, now)
        if count >= MAX_PENDING or chars >= MAX_PENDING_CHARS:
            raise _too_many_pending()
    if inp.hash is not None and rw.HASH_BY_LENGTH[len(inp.hash)] != rw.ALG_HASH[alg]:
        raise bad("hash", f"{alg} signs a {rw.ALG_HASH[alg]} digest")
    request_id = typed_id()
    iat = int(now)
    expires = iat + inp.ttl
    given: dict[str, str] = {}
    if inp.data is not None:
        given["data"] = wire.b64u(inp.data)
    if inp.hash is not None:
        given["hash"] = wire.b64u(inp.hash)
    if inp.kind == "auth":
        given["challenge"] = wire.b64u(secrets.token_bytes(rw.CHALLENGE_BYTES))
    iss = srv.public_url()
    rows = []
    for dev, key_id in targets:
        device_id = dev.id
        profile = srv.profiles.get(dev.profile)
        branding = profile.branding_for(_server_name(srv)) if profile else {"name": _server_name(srv)}
        claims = {
            "typ": rw.REQUEST_TYP,
            "id": request_id,
            "iss": iss,
            "device": device_id,
            "kind": inp.kind,
            "rp": {"name": rp.name},
            "key": key_id,
            "alg": alg,
            "format": inp.format,
            **given,
            "metadata": inp.metadata,
            "branding": branding,
            "iat": iat,
            "exp": expires,
        }
        document = jose.sign_compact(srv.protocol_key, claims)
        rows.append((device_id, key_id, document, rw.display_hash(wire.unb64u(document.split(".")[1]))))
    if not srv.db.add_request(
        {
            "id": request_id,
            "rp": rp.id,
            "kind": inp.kind,
            "alg": alg,
            "format": inp.format,
            "input": json.dumps(given),
            "callback": inp.callback,
            "named_device": inp.device,
            "created": now,
            "expires": float(expires),
        },
        rows,
        cap=(MAX_PENDING, MAX_PENDING_CHARS),
    ):
        raise _too_many_pending()
    for device_id, _, document, _ in rows:
        srv.push.publish([device_id], "request", request_id, document)
        _notify_relay(srv, device_id)
    log.info("request %s (%s) by %s for %d device(s)", request_id, inp.kind, rp.name, len(rows))
    out: dict[str, Any] = {"id": request_id, "state": "PENDING", "expires": expires}
    if "challenge" in given:
        out["challenge"] = given["challenge"]
    return out


def _too_many_pending() -> ProtocolError:
    detail = f"a device has {MAX_PENDING} pending requests (or {MAX_PENDING_CHARS} bytes of them) already"
    return ProtocolError(429, "too_many_pending", detail, retry_after=10)


def _notify_relay(srv: IdentityServer, device_id: str) -> None:
    relay = srv.relay
    if relay is None:
        return
    dev = srv.db.device(device_id)
    if dev is None:
        return
    waiting, _ = srv.db.pending_load(device_id, time.time())
    jwe = relay.notification(dev.jwk, waiting)
    srv.outbox.call(partial(relay.post, device_id, jwe), "push-relay notification", relay.url)


def document(row: dict[str, Any]) -> dict[str, Any]:
    """What the relying party reads (GET, cancel, callback)."""
    out: dict[str, Any] = {
        "id": row["id"],
        "kind": row["kind"],
        "state": row["state"],
        "created": row["created"],
        "expires": row["expires"],
        "device": row["device"] or row["named_device"],
        "alg": row["alg"],
        "format": row["format"],
    }
    if row["state"] == "APPROVED":
        out["result"] = {
            "signature": row["signature"],
            "certificate": wire.b64u(bytes(row["certificate"])),
            "verified": True,
        }
    return out


def finished(srv: IdentityServer, request_id: str) -> None:
    """After a final state: the callback (in the background) and `gone` to the devices' push streams."""
    row = srv.db.request(request_id)
    if row is None:
        return
    if row["callback"]:
        body = {"result": jose.sign_compact(srv.protocol_key, document(row))}
        srv.outbox.post(row["callback"], body, f"callback of request {request_id}", CALLBACK_TRIES, CALLBACK_TIMEOUT)
    srv.push.publish(srv.db.request_devices(request_id), "gone", request_id, request_id)


def _own(srv: IdentityServer, rp: RelyingParty, request_id: str) -> dict[str, Any]:
    row = srv.db.request(request_id) if len(request_id) <= 64 else None
    if row is None or (row["rp"] != rp.id and rp.id != ADMIN_RP):
        raise ProtocolError(404, "unknown_request", "no such request")
    if row["state"] == "PENDING" and row["expires"] <= time.time() and expire(srv, request_id):
        row = srv.db.request(request_id)
        assert row is not None
    return row


def get(srv: IdentityServer, rp: RelyingParty, request_id: str) -> dict[str, Any]:
    return document(_own(srv, rp, request_id))


def cancel(srv: IdentityServer, rp: RelyingParty, request_id: str) -> dict[str, Any]:
    _own(srv, rp, request_id)
    if not srv.db.decide_request(request_id, "CANCELLED", time.time()):
        raise ProtocolError(409, "not_pending", "the request was decided, cancelled or expired already")
    finished(srv, request_id)
    return get(srv, rp, request_id)


def expire(srv: IdentityServer, request_id: str) -> bool:
    if srv.db.decide_request(request_id, "EXPIRED", time.time()):
        finished(srv, request_id)
        return True
    return False


def expire_due(srv: IdentityServer) -> int:
    """Store EXPIRED the PENDING requests past their time (at most EXPIRY_SWEEP); the server runs it every second."""
    return sum(expire(srv, request_id) for request_id in srv.db.due_requests(time.time(), EXPIRY_SWEEP))
