"""The device's side of requests: /v1/requests (what is pending for it) and /v1/requests/answer (approve
with the card's signature, or reject). An approval is checked in full (display hash, the certificate the
server issued for the request's key, the signature) before one conditional UPDATE decides the request."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from vsc_provider.provisioning import request_wire as rw
from vsc_provider.provisioning import wire
from vsc_provider.server import requests, results
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.state import IdentityServer


def pending(srv: IdentityServer, body: Any) -> dict[str, Any]:
    _, dev = srv.verify_active(body, "/v1/requests")
    out: dict[str, Any] = {"requests": [doc for _, doc in srv.db.pending_documents(dev.id, time.time())]}
    if srv.relay is not None:
        out["relay"] = srv.relay.for_device(dev.id)
    return out


def answer(srv: IdentityServer, body: Any) -> dict[str, Any]:
    v, dev = srv.verify_active(body, "/v1/requests/answer")
    p = v.payload
    request_id, shown, decision = p.get("id"), p.get("display_hash"), p.get("decision")
    if not isinstance(request_id, str) or not isinstance(shown, str) or decision not in rw.DECISIONS:
        raise ProtocolError(400, "malformed", "the answer is {id, display_hash, decision: approve|reject, ...}")
    target = srv.db.request_target(request_id, dev.id) if len(request_id) <= 64 else None
    row = srv.db.request(request_id) if target is not None else None
    if target is None or row is None:
        raise ProtocolError(404, "unknown_request", "no such request for this device")
    if not hmac.compare_digest(shown.encode(), str(target["display_hash"]).encode()):
        raise ProtocolError(409, "display_mismatch", "display_hash is not the hash of the request this server sent")
    now = time.time()
    if decision == "reject":
        if not srv.db.decide_request(request_id, "REJECTED", now, device=dev.id):
            raise ProtocolError(409, "not_pending", "the request was decided, cancelled or expired already")
        requests.finished(srv, request_id)
        return {"id": request_id, "state": "REJECTED"}
    if row["state"] != "PENDING" or row["expires"] <= now:
        raise ProtocolError(409, "not_pending", "the request was decided, cancelled or expired already")
    signature, certificate = p.get("signature"), p.get("certificate")
    try:
        cert_der = wire.unb64u(certificate) if isinstance(certificate, str) and len(certificate) < 65536 else b""
    except ValueError:
        cert_der = b""
    issued = next((k for k in srv.db.active_keys(dev.id) if k["key_id"] == target["key_id"]), None)
    if issued is None or issued["cert"] is None or not hmac.compare_digest(cert_der, bytes(issued["cert"])):
        raise results.bad_result(f"the certificate is not the one issued for this device's key {target['key_id']}")
    results.check(row, json.loads(row["input"]), shown, srv.public_url(), signature, cert_der)
    if not srv.db.decide_request(request_id, "APPROVED", time.time(), dev.id, str(signature), cert_der):
        raise ProtocolError(409, "not_pending", "the request was decided, cancelled or expired already")
    requests.finished(srv, request_id)
    return {"id": request_id, "state": "APPROVED"}
