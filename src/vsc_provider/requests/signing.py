"""What the card signs to approve a request (docs/protocol.md, "Device calls"): the auth JWS, the sign JWS over
the data, or a detached CMS SignedData; each signature made by the card's key through a `Sign` callable.

JWS signatures are as RFC 7518 wants them (ECDSA as r||s, which is what the card gives); CMS wants ECDSA
as a DER SEQUENCE. A CMS signature is made over the digest of the signed attributes with the raw
mechanisms (the digest algorithm is the alg's hash, as the SignerInfo names it).
"""

from __future__ import annotations

import datetime
import importlib
import json
from collections.abc import Callable
from typing import Any

from asn1crypto import algos as a_algos

from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism, PssParams
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.request_wire import ALG_HASH, AUTH_TYP, HASH_BY_LENGTH
from vsc_provider.provisioning.request_wire import digest as digest_of
from vsc_provider.requests.model import PendingRequest, RequestError

Sign = Callable[[Mechanism, bytes], bytes]  # the card key's signature of data under a mechanism

# alg -> the hash-and-sign mechanism a JWS uses (the alg's own hash is request_wire.ALG_HASH's)
JWS_MECHANISMS: dict[str, Mechanism] = {
    "RS256": Mechanism(C.CKM_SHA256_RSA_PKCS),
    "RS512": Mechanism(C.CKM_SHA512_RSA_PKCS),
    "PS256": Mechanism(C.CKM_SHA256_RSA_PKCS_PSS, PssParams(C.CKM_SHA256, C.CKG_MGF1_SHA256, 32)),
    "ES256": Mechanism(C.CKM_ECDSA_SHA256),
    "ES384": Mechanism(C.CKM_ECDSA_SHA384),
}
# each hash's PKCS#11 names (the PSS hash and MGF1)
PSS_HASHES = {
    "sha256": (C.CKM_SHA256, C.CKG_MGF1_SHA256),
    "sha384": (C.CKM_SHA384, C.CKG_MGF1_SHA384),
    "sha512": (C.CKM_SHA512, C.CKG_MGF1_SHA512),
}


def _segment(data: dict[str, Any]) -> str:
    return wire.b64u(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())


def compact_jws(alg: str, header: dict[str, Any], payload_b64: str, sign: Sign) -> str:
    mechanism = JWS_MECHANISMS[alg]
    protected = _segment({**header, "alg": alg})
    signature = sign(mechanism, f"{protected}.{payload_b64}".encode())
    return f"{protected}.{payload_b64}.{wire.b64u(signature)}"


def auth_jws(request: PendingRequest, sign: Sign, now: float) -> str:
    doc = request.document
    claims = {
        "typ": AUTH_TYP,
        "request": request.id,
        "challenge": doc.get("challenge"),
        "display_hash": request.display_hash,
        "aud": doc["iss"],
        "iat": int(now),
    }
    return compact_jws(request.alg, {}, wire.b64u(wire.canonical(claims)), sign)


def _data(request: PendingRequest) -> bytes | None:
    value = request.document.get("data")
    if value is None:
        return None
    try:
        return wire.unb64u(value)
    except ValueError:
        raise RequestError(f"request {request.id}: its data is not base64url") from None


def sign_jws(request: PendingRequest, sign: Sign) -> str:
    data = _data(request)
    if data is None:
        raise RequestError(f"request {request.id}: a JWS needs the data, and the request carries only a hash")
    header = {"vsc_request": request.id, "vsc_display": request.display_hash}
    return compact_jws(request.alg, header, wire.b64u(data), sign)


def sign_digest(alg: str, hash_name: str, digest: bytes, sign: Sign) -> bytes:
    """A signature over a digest with the raw mechanisms: RSA PKCS#1 v1.5 over its DigestInfo, RSA-PSS (MGF1
    of the same hash, salt as long as the digest), ECDSA (r||s as the card gives it)."""
    if alg.startswith("RS"):
        info = a_algos.DigestInfo({"digest_algorithm": {"algorithm": hash_name}, "digest": digest})
        return sign(Mechanism(C.CKM_RSA_PKCS), info.dump())
    if alg.startswith("PS"):
        hash_mech, mgf = PSS_HASHES[hash_name]
        return sign(Mechanism(C.CKM_RSA_PKCS_PSS, PssParams(hash_mech, mgf, len(digest))), digest)
    return sign(Mechanism(C.CKM_ECDSA), digest)


def cms_hash(request: PendingRequest) -> tuple[str, bytes]:
    """The CMS digest algorithm (the alg's hash) and the message digest: the RP's hash, which must be one
    of that algorithm, or the digest of the data."""
    hash_name = ALG_HASH[request.alg]
    given = request.document.get("hash")
    if given is not None:
        try:
            digest = wire.unb64u(given)
        except ValueError:
            raise RequestError(f"request {request.id}: its hash is not base64url") from None
        if HASH_BY_LENGTH.get(len(digest)) != hash_name:
            raise RequestError(f"request {request.id}: its hash is not a {hash_name} digest, as {request.alg} signs")
        return hash_name, digest
    data = _data(request)
    if data is None:
        raise RequestError(f"request {request.id}: neither data nor hash to sign")
    return hash_name, digest_of(hash_name, data)


def cms_signature(alg: str, hash_name: str, signed_attrs: bytes, sign: Sign) -> bytes:
    """The SignerInfo signature over the DER signed attributes (ECDSA as DER, as CMS wants it)."""
    signature = sign_digest(alg, hash_name, digest_of(hash_name, signed_attrs), sign)
    if alg.startswith("ES"):
        signature = a_algos.DSASignature.from_p1363(signature).dump()
    return signature


def sign_cms(request: PendingRequest, sign: Sign, certificate: bytes, now: float) -> bytes:
    """A detached CMS SignedData (DER ContentInfo) with the signer's certificate."""
    cms = importlib.import_module("vsc_provider.provisioning.cms")  # the CMS encoding shared with the server
    hash_name, digest = cms_hash(request)
    signed_attrs = cms.signed_attributes(digest, hash_name, datetime.datetime.fromtimestamp(now, datetime.UTC))
    signature = cms_signature(request.alg, hash_name, signed_attrs, sign)
    return bytes(cms.signed_data(certificate, signed_attrs, signature, hash_name, request.alg))


def answer_signature(request: PendingRequest, sign: Sign, certificate: bytes, now: float) -> str:
    """The `signature` field of an approving answer."""
    if request.kind == "auth":
        return auth_jws(request, sign, now)
    if request.format == "cms":
        return wire.b64u(sign_cms(request, sign, certificate, now))
    return sign_jws(request, sign)
