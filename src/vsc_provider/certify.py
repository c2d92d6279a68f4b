"""Certificate requests and self-signed certificates for a key on a card, signed through the PKCS#11 layer.

`cryptography` builds the to-be-signed part (it signs only with keys it holds, so it signs with a throw-away
key of the same type, which fixes the signature algorithm field); the card then signs those bytes with
C_Sign and asn1crypto swaps the signature in.
"""

from __future__ import annotations

import datetime
from typing import Any

from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from vsc_provider import api
from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import objects, signing
from vsc_provider.token.engine import Card


def parse_subject(text: str) -> x509.Name:
    """`CN=Alice,O=Example` (RFC 4514), or a bare name taken as the common name."""
    if "=" not in text:
        return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, text)])
    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"subject {text!r}: {exc}") from None


def _find_key(h: int, card: Card, label: str) -> tuple[int, Any]:
    """The private key labelled `label` (or with that hex CKA_ID) and its public key as `cryptography` sees it."""
    found: list[int] = []
    wanted: list[tuple[int, A.Value]] = [(C.CKA_LABEL, label)]
    if _is_hex(label):
        wanted.append((C.CKA_ID, bytes.fromhex(label)))
    for attr, value in wanted:
        pairs = list(A.make({C.CKA_CLASS: C.CKO_PRIVATE_KEY, attr: value}).items())
        objects.find_objects_init(h, pairs)
        found = objects.find_objects(h, 2)
        objects.find_objects_final(h)
        if found:
            break
    if not found:
        raise CKRError(C.CKR_KEY_HANDLE_INVALID, f"no private key {label!r} on card {card.label!r}")
    if len(found) > 1:
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"several keys are labelled {label!r}: give the hex id instead")
    key_id = card.get(found[0]).attrs.get(C.CKA_ID, b"")  # type: ignore[union-attr]
    for obj in card.objects.values():
        if obj.klass == C.CKO_PUBLIC_KEY and obj.attrs.get(C.CKA_ID, b"") == key_id:
            return found[0], serialization.load_der_public_key(obj.attrs[C.CKA_PUBLIC_KEY_INFO])
    raise CKRError(C.CKR_KEY_HANDLE_INVALID, f"key {label!r} has no public key object on the card")


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return bool(text)


def _scheme(public: Any) -> tuple[Any, hashes.SHA256 | hashes.SHA384 | None, int]:
    """A throw-away key of the same type, the hash, and the PKCS#11 mechanism that signs like it."""
    if isinstance(public, rsa.RSAPublicKey):
        return rsa.generate_private_key(65537, 2048), hashes.SHA256(), C.CKM_SHA256_RSA_PKCS
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.key_size > 256:
            return ec.generate_private_key(public.curve), hashes.SHA384(), C.CKM_ECDSA_SHA384
        return ec.generate_private_key(public.curve), hashes.SHA256(), C.CKM_ECDSA_SHA256
    if isinstance(public, ed25519.Ed25519PublicKey):
        return ed25519.Ed25519PrivateKey.generate(), None, C.CKM_EDDSA
    raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "this key type cannot sign certificates")


def _card_sign(h: int, key: int, mechanism: int, tbs: bytes) -> bytes:
    signing.sign_init(h, Mechanism(mechanism), key)
    signature = signing.sign(h, tbs, False, 1024)
    if mechanism in (C.CKM_ECDSA_SHA256, C.CKM_ECDSA_SHA384):  # PKCS#11 gives r || s, X.509 wants DER
        half = len(signature) // 2
        signature = encode_dss_signature(int.from_bytes(signature[:half]), int.from_bytes(signature[half:]))
    return signature


def request(ref: str, key_label: str, subject: str, pin: str) -> bytes:
    """A PEM certificate signing request (PKCS#10) for the card's key."""
    card = api.find_card(ref)
    with api.session(card, pin=pin) as h:
        key, public = _find_key(h, card, key_label)
        throwaway, digest, mechanism = _scheme(public)
        draft = x509.CertificateSigningRequestBuilder().subject_name(parse_subject(subject)).sign(throwaway, digest)
        signed = asn1_csr.CertificationRequest.load(draft.public_bytes(serialization.Encoding.DER))
        info = signed["certification_request_info"]
        info["subject_pk_info"] = asn1_x509.PublicKeyInfo.load(_spki(public))
        signed["signature"] = _card_sign(h, key, mechanism, info.dump(force=True))
        der = signed.dump(force=True)
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)


def _spki(public: Any) -> bytes:
    return bytes(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def self_sign(ref: str, key_label: str, subject: str, pin: str, days: int = 365) -> bytes:
    """A PEM self-signed certificate for the card's key (client and server authentication)."""
    if days < 1:
        raise CKRError(C.CKR_ARGUMENTS_BAD, "--days is at least 1")
    card = api.find_card(ref)
    name = parse_subject(subject)
    now = datetime.datetime.now(datetime.UTC)
    with api.session(card, pin=pin) as h:
        key, public = _find_key(h, card, key_label)
        throwaway, digest, mechanism = _scheme(public)
        usage = x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
        )
        draft = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(throwaway, digest)
        )
        signed = asn1_x509.Certificate.load(draft.public_bytes(serialization.Encoding.DER))
        signed["signature_value"] = _card_sign(h, key, mechanism, draft.tbs_certificate_bytes)
        der = signed.dump(force=True)
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
