"""Certificate requests and self-signed certificates for a key on a card, signed through the card service.

`cryptography` builds the to-be-signed part (it signs only with keys it holds, so it signs with a throw-away
key of the same type, which fixes the signature algorithm field); the card then signs those bytes with
the card service (as C_Sign would) and asn1crypto swaps the signature in.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from vsc_provider import api
from vsc_provider.cert_builder import certificate_builder
from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import service
from vsc_provider.token.engine import Card


def parse_subject(text: str) -> x509.Name:
    """`CN=Alice,O=Example` (RFC 4514), or a bare name taken as the common name."""
    if "=" not in text:
        return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, text)])
    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"subject {text!r}: {exc}") from None


def _find_key(card: Card, label: str) -> tuple[bytes, Any]:
    """The CKA_ID of the private key labelled `label` (or with that hex CKA_ID) and its public key as
    `cryptography` sees it."""
    privates = [o for o in card.objects.values() if o.klass == C.CKO_PRIVATE_KEY and card.visible(o)]
    found = [o for o in privates if A.decode(C.CKA_LABEL, o.attrs.get(C.CKA_LABEL, b"")) == label]
    if not found and _is_hex(label):
        found = [o for o in privates if o.attrs.get(C.CKA_ID, b"") == bytes.fromhex(label)]
    if not found:
        raise CKRError(C.CKR_KEY_HANDLE_INVALID, f"no private key {label!r} on card {card.label!r}")
    if len(found) > 1:
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"several keys are labelled {label!r}: give the hex id instead")
    key_id = found[0].attrs.get(C.CKA_ID, b"")
    for obj in card.objects.values():
        if obj.klass == C.CKO_PUBLIC_KEY and obj.attrs.get(C.CKA_ID, b"") == key_id:
            return key_id, serialization.load_der_public_key(obj.attrs[C.CKA_PUBLIC_KEY_INFO])
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


def _card_sign(card: Card, key_id: bytes, mechanism: int, tbs: bytes) -> bytes:
    signature = service.sign(api.engine(), card, key_id, Mechanism(mechanism), tbs)
    if mechanism in (C.CKM_ECDSA_SHA256, C.CKM_ECDSA_SHA384):  # the card gives r || s, X.509 wants DER
        half = len(signature) // 2
        signature = encode_dss_signature(int.from_bytes(signature[:half]), int.from_bytes(signature[half:]))
    return signature


def request(ref: str, key_label: str, subject: str, pin: str) -> bytes:
    """A PEM certificate signing request (PKCS#10) for the card's key."""
    card = api.find_card(ref)
    with api.session(card, pin=pin):
        key, public = _find_key(card, key_label)
        throwaway, digest, mechanism = _scheme(public)
        draft = x509.CertificateSigningRequestBuilder().subject_name(parse_subject(subject)).sign(throwaway, digest)
        signed = asn1_csr.CertificationRequest.load(draft.public_bytes(serialization.Encoding.DER))
        info = signed["certification_request_info"]
        info["subject_pk_info"] = asn1_x509.PublicKeyInfo.load(_spki(public))
        signed["signature"] = _card_sign(card, key, mechanism, info.dump(force=True))
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
    with api.session(card, pin=pin):
        key, public = _find_key(card, key_label)
        throwaway, digest, mechanism = _scheme(public)
        usage = x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
        )
        draft = (
            certificate_builder(name, name, public, days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(throwaway, digest)
        )
        signed = asn1_x509.Certificate.load(draft.public_bytes(serialization.Encoding.DER))
        signed["signature_value"] = _card_sign(card, key, mechanism, draft.tbs_certificate_bytes)
        der = signed.dump(force=True)
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
