"""A request as the server sends it (a compact JWS by its protocol key) checked before anything of it is
shown: signature, typ, iss, device, freshness, shape (docs/protocol.md, "The request as the device gets it").
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws

from vsc_provider.provisioning import wire
from vsc_provider.provisioning.request_wire import (
    ALGS,
    FORMATS,
    IAT_SKEW,
    KINDS,
    METADATA_TYPES,
    REQUEST_TYP,
    display_hash,
)
from vsc_provider.requests.model import MetadataItem, PendingRequest, RequestError

REQUEST_ALG = "RS256"  # the server's protocol key signs every request document with it


class RefusedRequest(RequestError):
    """The request does not verify: it is never shown, and never answered. `request_id` is known when the
    server's signature verified (an expired request, one for another device)."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class UnknownKey(RefusedRequest):
    """The JWS names a key (kid) that the server's protocol keys as known here do not include."""


def _key_for(jwks: dict[str, Any], kid: Any) -> jose_jwk.JWK:
    for entry in jwks.get("keys", []):
        key = jose_jwk.JWK(**entry)
        if kid == key.thumbprint():  # RFC 7638, as the server names its key
            return key
    raise UnknownKey(f"the request is signed by a key ({kid}) that is not the server's protocol key")


def verified_payload(compact: str, jwks: dict[str, Any]) -> bytes:
    """The payload bytes of a compact JWS (RS256) by the server's protocol key, as received."""
    if not isinstance(compact, str) or compact.count(".") != 2:
        raise RefusedRequest("the request is not a compact JWS")
    try:
        header = json.loads(wire.unb64u(compact.split(".", 1)[0]))
    except ValueError:
        raise RefusedRequest("the request's JWS header is not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != REQUEST_ALG or "crit" in header:
        raise RefusedRequest(f"the request is not signed with {REQUEST_ALG}")
    key = _key_for(jwks, header.get("kid"))
    token = jose_jws.JWS()
    token.allowed_algs = [REQUEST_ALG]
    try:
        token.deserialize(compact)
        token.verify(key)
    except Exception:  # jwcrypto raises several kinds for a bad signature or encoding
        raise RefusedRequest("the request's signature does not verify with the server's protocol key") from None
    return bytes(token.payload)


def _metadata(items: Any) -> tuple[MetadataItem, ...]:
    if not isinstance(items, list):
        raise RefusedRequest("the request's metadata is not a list")
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") not in METADATA_TYPES:
            raise RefusedRequest("a metadata item of the request has no known type")
        label, data = item.get("label", ""), item.get("data")
        if not isinstance(label, str) or not isinstance(data, str):
            raise RefusedRequest("a metadata item of the request is malformed")
        try:
            raw = data.encode() if item["type"] == "text" else wire.unb64u(data)
        except ValueError:
            raise RefusedRequest(f"metadata item {label!r} is not base64url") from None
        out.append(MetadataItem(item["type"], label, raw))
    return tuple(out)


def _claims(payload: bytes, url: str, device: str, now: float) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError:
        raise RefusedRequest("the request's payload is not JSON") from None
    if not isinstance(claims, dict) or claims.get("typ") != REQUEST_TYP:
        raise RefusedRequest(f"the JWS is not a request (typ {REQUEST_TYP})")
    rid = claims.get("id")
    if not isinstance(rid, str) or not isinstance(claims.get("key"), str):
        raise RefusedRequest("the request lacks its id or key")
    if claims.get("iss") != url:
        raise RefusedRequest(f"request {rid} was issued by {claims.get('iss')!r}, not this card's server {url}", rid)
    if claims.get("device") != device:
        raise RefusedRequest(f"request {rid} is for another device", rid)
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise RefusedRequest(f"request {rid} has no iat/exp", rid)
    if iat > now + IAT_SKEW:
        raise RefusedRequest(f"request {rid} is dated in the future", rid)
    if exp <= now:
        raise RefusedRequest(f"request {rid} expired", rid)
    if claims.get("kind") not in KINDS or claims.get("alg") not in ALGS:
        raise RefusedRequest(f"request {rid}: its kind or alg is not one this device knows", rid)
    return claims


def pending_request(
    compact: str,
    jwks: dict[str, Any],
    binding: dict[str, Any],
    serial: str,
    label: str,
    now: float | None = None,
) -> PendingRequest:
    """The request if it verifies for this card's binding (server URL, device id); RefusedRequest if not."""
    payload = verified_payload(compact, jwks)
    claims = _claims(payload, binding["url"], binding["device"], time.time() if now is None else now)
    wanted = claims.get("format", "jws") if claims["kind"] == "sign" else "jws"
    if wanted not in FORMATS:
        raise RefusedRequest(f"request {claims['id']}: its format is not jws or cms", claims["id"])
    fmt: Literal["jws", "cms"] = "cms" if wanted == "cms" else "jws"
    rp = claims.get("rp")
    branding = claims.get("branding", {})
    return PendingRequest(
        id=claims["id"],
        card=serial,
        card_label=label,
        kind=claims["kind"],
        rp=str(rp.get("name", "")) if isinstance(rp, dict) else "",
        alg=claims["alg"],
        format=fmt,
        metadata=_metadata(claims.get("metadata", [])),
        expires=float(claims["exp"]),
        display_hash=display_hash(payload),
        branding=branding if isinstance(branding, dict) else {},
        document=claims,
    )
