"""Device-side building blocks: the device (protocol) key, and keys, CSRs and certificates on the card.

The device key is the card's identity towards its server: an RSA key sealed under the machine's device key
file, so that the card can talk to its server without the PIN (status, deletion). Every *card* key is made
by the token through the PKCS#11 layer, and each CSR is signed there: the private keys never leave it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import algos as a_algos
from asn1crypto import csr as a_csr
from asn1crypto import keys as a_keys
from asn1crypto import x509 as a_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwe as jose_jwe
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws

from vsc_provider import config
from vsc_provider.api import KEY_KINDS
from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import keys, objects, signing
from vsc_provider.provisioning import wire
from vsc_provider.token import keywrap
from vsc_provider.token.engine import Card

# how each key kind signs its CSR through the token: mechanism, asn1crypto signature algorithm
CSR_SIGNING = {
    "rsa2048": (C.CKM_SHA256_RSA_PKCS, "sha256_rsa"),
    "rsa3072": (C.CKM_SHA256_RSA_PKCS, "sha256_rsa"),
    "rsa4096": (C.CKM_SHA256_RSA_PKCS, "sha256_rsa"),
    "p256": (C.CKM_ECDSA_SHA256, "sha256_ecdsa"),
    "p384": (C.CKM_ECDSA_SHA384, "sha384_ecdsa"),
    "ed25519": (C.CKM_EDDSA, "ed25519"),
}


# how each key kind signs a JWS through the token: mechanism, JWS alg (RFC 7518: ECDSA as r||s, as PKCS#11 gives it)
JWS_SIGNING = {
    "rsa2048": (C.CKM_SHA256_RSA_PKCS, "RS256"),
    "rsa3072": (C.CKM_SHA256_RSA_PKCS, "RS256"),
    "rsa4096": (C.CKM_SHA256_RSA_PKCS, "RS256"),
    "p256": (C.CKM_ECDSA_SHA256, "ES256"),
    "p384": (C.CKM_ECDSA_SHA384, "ES384"),
    "ed25519": (C.CKM_EDDSA, "EdDSA"),
}


def _aad(serial: str) -> bytes:
    return f"vsc-server-device-key:{serial}".encode()


@dataclass
class DeviceKey:
    key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(rsa.generate_private_key(65537, 2048))

    @classmethod
    def unseal(cls, sealed_hex: str, device_file_key: bytes, serial: str) -> DeviceKey:
        der = keywrap.unseal(device_file_key, bytes.fromhex(sealed_hex), _aad(serial))
        if der is None:
            raise ValueError("the card's device key does not decrypt with this machine's device key")
        key = serialization.load_der_private_key(der, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(key)

    def seal(self, device_file_key: bytes, serial: str) -> str:
        der = self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return keywrap.seal(device_file_key, der, _aad(serial)).hex()

    @property
    def jwk(self) -> jose_jwk.JWK:
        return jose_jwk.JWK.from_pyca(self.key)

    def public_jwk(self) -> dict[str, Any]:
        return dict(self.jwk.export_public(as_dict=True))

    def thumbprint(self) -> str:
        return str(self.jwk.thumbprint())

    def sign(
        self, url: str, nonce: str, payload: dict[str, Any], kid: str | None = None, alg: str = "RS256"
    ) -> dict[str, Any]:
        """A flattened JWS: the new-key form carries 'jwk', a registered device signs with 'kid'."""
        header: dict[str, Any] = {"alg": alg, "nonce": nonce, "url": url}
        if kid is None:
            header["jwk"] = self.public_jwk()
        else:
            header["kid"] = kid
        token = jose_jws.JWS(wire.canonical(payload))
        token.add_signature(self.jwk, alg=alg, protected=json.dumps(header))
        return dict(json.loads(token.serialize()))

    def open(self, compact: str) -> bytes:
        token = jose_jwe.JWE()
        token.allowed_algs = [wire.JWE_ALG, wire.JWE_ENC]
        token.deserialize(compact, key=self.jwk)
        return bytes(token.payload)


def jwe_to_server(jwks: dict[str, Any], plaintext: bytes) -> str:
    key = jose_jwk.JWK(**jwks["keys"][0])
    token = jose_jwe.JWE(
        plaintext, protected=json.dumps({"alg": wire.JWE_ALG, "enc": wire.JWE_ENC, "kid": key.get("kid")})
    )
    token.add_recipient(key)
    return str(token.serialize(compact=True))


def attestation_key_path() -> Path | None:
    """The implementer's attestation key, configured at install time (VSC_ATTESTATION_KEY or in VSC_HOME)."""
    explicit = os.environ.get("VSC_ATTESTATION_KEY")
    if explicit:
        return Path(explicit)
    default = config.home() / "attestation.pem"
    return default if default.exists() else None


def attest(device: DeviceKey, nonce: str) -> str | None:
    path = attestation_key_path()
    if path is None:
        return None
    pem = path.read_bytes()
    key = jose_jwk.JWK.from_pem(pem)
    private = serialization.load_pem_private_key(pem, None)
    alg = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "RS256"
    token = jose_jws.JWS(wire.canonical({"device": device.thumbprint(), "nonce": nonce}))
    token.add_signature(key, alg=alg, protected=json.dumps({"alg": alg}))
    return str(token.serialize(compact=True))


# --- keys on the card (through the PKCS#11 layer, in-process) ------------------------------------


@dataclass
class CardKey:
    request_id: str
    kind: str
    key_id: bytes
    public: int
    private: int
    spki: bytes


def generate(h: int, card: Card, request_id: str, kind: str, label: str) -> CardKey:
    mech_type, pub_extra = KEY_KINDS[kind]
    key_id = secrets.token_bytes(16)
    pub = A.make({C.CKA_TOKEN: True, C.CKA_LABEL: label, C.CKA_ID: key_id, **pub_extra})
    priv = A.make({C.CKA_TOKEN: True, C.CKA_LABEL: label, C.CKA_ID: key_id})
    pub_h, priv_h = keys.generate_key_pair(h, Mechanism(mech_type), list(pub.items()), list(priv.items()))
    obj = card.get(pub_h)
    assert obj is not None
    return CardKey(request_id, kind, key_id, pub_h, priv_h, obj.attrs[C.CKA_PUBLIC_KEY_INFO])


def csr(h: int, key: CardKey, common_name: str) -> bytes:
    """A PKCS#10 request for `key`, its signature made by the token with the key's handle."""
    info = a_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": a_x509.Name.build({"common_name": common_name}),
            "subject_pk_info": a_keys.PublicKeyInfo.load(key.spki),
            "attributes": [],
        }
    )
    mech, algorithm = CSR_SIGNING[key.kind]
    signing.sign_init(h, Mechanism(mech), key.private)
    signature = signing.sign(h, info.dump(), False, 8192)
    if algorithm.endswith("ecdsa"):
        signature = a_algos.DSASignature.from_p1363(signature).dump()
    request = a_csr.CertificationRequest(
        {"certification_request_info": info, "signature_algorithm": {"algorithm": algorithm}, "signature": signature}
    )
    return bytes(request.dump())


def import_private_key(h: int, pkcs8: bytes, label: str) -> bytes:
    """A server-generated (escrowed) RSA key: stored like a local one, sensitive and never extractable."""
    private = serialization.load_der_private_key(pkcs8, None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError("imported keys are RSA")
    numbers = private.private_numbers()
    key_id = secrets.token_bytes(16)

    def big(n: int) -> bytes:
        return n.to_bytes((n.bit_length() + 7) // 8, "big")

    common: dict[int, A.Value] = {C.CKA_TOKEN: True, C.CKA_LABEL: label, C.CKA_ID: key_id, C.CKA_KEY_TYPE: C.CKK_RSA}
    priv = A.make(
        {
            **common,
            C.CKA_CLASS: C.CKO_PRIVATE_KEY,
            C.CKA_MODULUS: big(numbers.public_numbers.n),
            C.CKA_PUBLIC_EXPONENT: big(numbers.public_numbers.e),
            C.CKA_PRIVATE_EXPONENT: big(numbers.d),
            C.CKA_PRIME_1: big(numbers.p),
            C.CKA_PRIME_2: big(numbers.q),
            C.CKA_SENSITIVE: True,
            C.CKA_EXTRACTABLE: False,
        }
    )
    pub = A.make(
        {
            **common,
            C.CKA_CLASS: C.CKO_PUBLIC_KEY,
            C.CKA_MODULUS: big(numbers.public_numbers.n),
            C.CKA_PUBLIC_EXPONENT: big(numbers.public_numbers.e),
        }
    )
    objects.create_object(h, list(priv.items()))
    objects.create_object(h, list(pub.items()))
    return key_id


def destroy_key_id(h: int, card: Card, key_id: bytes) -> None:
    for obj in list(card.objects.values()):
        if obj.attrs.get(C.CKA_ID) == key_id:
            objects.destroy_object(h, obj.handle)


def keep_only(h: int, card: Card, key_ids: list[bytes]) -> None:
    """Destroy every object of the card but the key pairs with these ids (a half-done install's leftovers)."""
    for obj in list(card.objects.values()):
        if obj.klass not in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY) or obj.attrs.get(C.CKA_ID) not in key_ids:
            objects.destroy_object(h, obj.handle)


def possession_jws(h: int, signers: list[CardKey], payload: dict[str, Any]) -> dict[str, Any]:
    """A JWS in general JSON serialization (RFC 7515 7.2.1) over `payload`, one signature per card key,
    each made on the token (kid = the key's id in the profile): proof that the device holds those keys."""
    body = wire.b64u(wire.canonical(payload))
    signatures = []
    for key in signers:
        mech, alg = JWS_SIGNING[key.kind]
        protected = wire.b64u(json.dumps({"alg": alg, "kid": key.request_id}, sort_keys=True).encode())
        signing.sign_init(h, Mechanism(mech), key.private)
        signature = signing.sign(h, f"{protected}.{body}".encode(), False, 8192)
        signatures.append({"protected": protected, "signature": wire.b64u(signature)})
    return {"payload": body, "signatures": signatures}


def existing_key(card: Card, request_id: str, kind: str, key_id: bytes) -> CardKey:
    """A key already on the card (by CKA_ID) as a CardKey, to sign with it."""
    pub = next(o for o in card.objects.values() if o.klass == C.CKO_PUBLIC_KEY and o.attrs.get(C.CKA_ID) == key_id)
    priv = next(o for o in card.objects.values() if o.klass == C.CKO_PRIVATE_KEY and o.attrs.get(C.CKA_ID) == key_id)
    return CardKey(request_id, kind, key_id, pub.handle, priv.handle, pub.attrs[C.CKA_PUBLIC_KEY_INFO])
