"""The card's own keys as provisioning uses them: generated on the card, their CSRs and proofs of possession
signed there through the card service (the private keys never leave the token), escrowed keys imported.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos as a_algos
from asn1crypto import csr as a_csr
from asn1crypto import keys as a_keys
from asn1crypto import x509 as a_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism
from vsc_provider.provisioning import wire
from vsc_provider.token import service
from vsc_provider.token.engine import Card, Engine

# How each key kind signs through the token: the mechanism, the asn1crypto signature algorithm of its CSR and
# the JWS alg (RFC 7518: ECDSA as r||s, as PKCS#11 gives it).
SIGNING = {
    "rsa2048": (C.CKM_SHA256_RSA_PKCS, "sha256_rsa", "RS256"),
    "rsa3072": (C.CKM_SHA256_RSA_PKCS, "sha256_rsa", "RS256"),
    "rsa4096": (C.CKM_SHA256_RSA_PKCS, "sha256_rsa", "RS256"),
    "p256": (C.CKM_ECDSA_SHA256, "sha256_ecdsa", "ES256"),
    "p384": (C.CKM_ECDSA_SHA384, "sha384_ecdsa", "ES384"),
    "ed25519": (C.CKM_EDDSA, "ed25519", "EdDSA"),
}


@dataclass
class CardKey:
    request_id: str
    kind: str
    key_id: bytes
    public: int
    private: int
    spki: bytes


def generate(eng: Engine, card: Card, request_id: str, kind: str, label: str) -> CardKey:
    """A new key pair on the card for one of the profile's requests (the user logged in)."""
    key_id = secrets.token_bytes(16)
    pub, priv = service.generate(eng, card, kind, key_id, label)
    return CardKey(request_id, kind, key_id, pub.handle, priv.handle, pub.attrs[C.CKA_PUBLIC_KEY_INFO])


def csr(eng: Engine, card: Card, key: CardKey, common_name: str) -> bytes:
    """A PKCS#10 request for `key`, its signature made on the card."""
    info = a_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": a_x509.Name.build({"common_name": common_name}),
            "subject_pk_info": a_keys.PublicKeyInfo.load(key.spki),
            "attributes": [],
        }
    )
    mech, algorithm, _ = SIGNING[key.kind]
    signature = service.sign(eng, card, key.key_id, Mechanism(mech), info.dump())
    if algorithm.endswith("ecdsa"):
        signature = a_algos.DSASignature.from_p1363(signature).dump()
    request = a_csr.CertificationRequest(
        {"certification_request_info": info, "signature_algorithm": {"algorithm": algorithm}, "signature": signature}
    )
    return bytes(request.dump())


def import_private_key(eng: Engine, card: Card, pkcs8: bytes, label: str) -> bytes:
    """A server-generated (escrowed) RSA key: stored like a local one, sensitive and never extractable."""
    private = serialization.load_der_private_key(pkcs8, None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError("imported keys are RSA")
    key_id = secrets.token_bytes(16)
    service.import_private_key(eng, card, private, key_id, label)
    return key_id


def possession_jws(eng: Engine, card: Card, signers: list[CardKey], payload: dict[str, Any]) -> dict[str, Any]:
    """A JWS in general JSON serialization (RFC 7515 7.2.1) over `payload`, one signature per card key,
    each made on the token (kid = the key's id in the profile): proof that the device holds those keys."""
    body = wire.b64u(wire.canonical(payload))
    signatures = []
    for key in signers:
        mech, _, alg = SIGNING[key.kind]
        protected = wire.b64u(json.dumps({"alg": alg, "kid": key.request_id}, sort_keys=True).encode())
        signature = service.sign(eng, card, key.key_id, Mechanism(mech), f"{protected}.{body}".encode())
        signatures.append({"protected": protected, "signature": wire.b64u(signature)})
    return {"payload": body, "signatures": signatures}


def existing_key(card: Card, request_id: str, kind: str, key_id: bytes) -> CardKey:
    """A key already on the card (by CKA_ID) as a CardKey, to sign with it."""
    pub = next(o for o in card.objects.values() if o.klass == C.CKO_PUBLIC_KEY and o.attrs.get(C.CKA_ID) == key_id)
    priv = next(o for o in card.objects.values() if o.klass == C.CKO_PRIVATE_KEY and o.attrs.get(C.CKA_ID) == key_id)
    return CardKey(request_id, kind, key_id, pub.handle, priv.handle, pub.attrs[C.CKA_PUBLIC_KEY_INFO])
