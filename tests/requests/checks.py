"""Independent checks of what the device signs, with `cryptography` and asn1crypto only (none of the
device's code): compact JWS by a card key, and the signature of CMS signed attributes."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from vsc_provider.provisioning.wire import unb64u

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
ALG_HASH = {"RS256": "sha256", "RS512": "sha512", "PS256": "sha256", "ES256": "sha256", "ES384": "sha384"}


def verify_signature(public: Any, alg: str, signature: bytes, data: bytes, hash_name: str, der_ecdsa: bool) -> None:
    """Raises InvalidSignature unless `signature` is `public`'s over `data` as `alg` with `hash_name` says."""
    h = HASHES[hash_name]()
    if alg.startswith("RS"):
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PKCS1v15(), h)
    elif alg.startswith("PS"):
        assert isinstance(public, rsa.RSAPublicKey)
        salt = h.digest_size
        public.verify(signature, data, padding.PSS(padding.MGF1(HASHES[hash_name]()), salt), h)
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        if not der_ecdsa:
            half = len(signature) // 2
            signature = encode_dss_signature(int.from_bytes(signature[:half]), int.from_bytes(signature[half:]))
        public.verify(signature, data, ec.ECDSA(h))


def verify_jws(compact: str, public: Any) -> tuple[dict[str, Any], bytes]:
    """The protected header and payload of a compact JWS whose signature verifies with `public`."""
    head, body, sig = compact.split(".")
    header = json.loads(unb64u(head))
    alg = header["alg"]
    verify_signature(public, alg, unb64u(sig), f"{head}.{body}".encode(), ALG_HASH[alg], der_ecdsa=False)
    return header, unb64u(body)
