"""The signing cases, each as a python-pkcs11 call and the equivalent raw `cryptography` call (the floor)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

MESSAGE = bytes(range(256))
DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
KEY_NAMES = {"rsa2048": "RSA-2048", "rsa3072": "RSA-3072", "p256": "P-256", "p384": "P-384", "ed25519": "Ed25519"}


@dataclass(frozen=True)
class SignCase:
    kind: str
    mech: str
    data: bytes
    pkcs11: Callable[[Any], bytes]
    raw: Callable[[Any], bytes]

    @property
    def op(self) -> str:
        return f"sign {KEY_NAMES[self.kind]} {self.mech}"

    @property
    def driver_data_len(self) -> int:
        return len(self.data)


def _pss_param() -> tuple[Any, Any, int]:
    from pkcs11 import MGF, Mechanism

    return (Mechanism.SHA256, MGF.SHA256, 32)


def _mech(name: str) -> Any:
    from pkcs11 import Mechanism

    return Mechanism[name]


def _rsa_cases(kind: str) -> list[SignCase]:
    digest = hashlib.sha256(MESSAGE).digest()
    return [
        SignCase(
            kind,
            "SHA256_RSA_PKCS",
            MESSAGE,
            lambda k: k.sign(MESSAGE, mechanism=_mech("SHA256_RSA_PKCS")),
            lambda k: k.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256()),
        ),
        SignCase(
            kind,
            "RSA_PKCS",
            DIGEST_INFO_SHA256 + digest,
            lambda k: k.sign(DIGEST_INFO_SHA256 + digest, mechanism=_mech("RSA_PKCS")),
            lambda k: k.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())),
        ),
        SignCase(
            kind,
            "SHA256_RSA_PKCS_PSS",
            MESSAGE,
            lambda k: k.sign(MESSAGE, mechanism=_mech("SHA256_RSA_PKCS_PSS"), mechanism_param=_pss_param()),
            lambda k: k.sign(MESSAGE, PSS, hashes.SHA256()),
        ),
    ]


def _ecdsa(kind: str, hash_cls: type[hashes.HashAlgorithm]) -> SignCase:
    digest = hashlib.new(hash_cls.name, MESSAGE).digest()
    return SignCase(
        kind,
        "ECDSA",
        digest,
        lambda k: k.sign(digest, mechanism=_mech("ECDSA")),
        lambda k: k.sign(digest, ec.ECDSA(Prehashed(hash_cls()))),
    )


CHUNKS = [MESSAGE * 2] * 4  # 2 KB in four C_SignUpdate calls, like a TLS transcript signed multi-part


def _multipart_pss() -> SignCase:
    return SignCase(
        "rsa2048",
        "SHA256_RSA_PKCS_PSS multi-part",
        b"".join(CHUNKS),
        lambda k: k.sign(iter(CHUNKS), mechanism=_mech("SHA256_RSA_PKCS_PSS"), mechanism_param=_pss_param()),
        lambda k: k.sign(b"".join(CHUNKS), PSS, hashes.SHA256()),
    )


_ALL = [
    *_rsa_cases("rsa2048"),
    *_rsa_cases("rsa3072"),
    _multipart_pss(),
    _ecdsa("p256", hashes.SHA256),
    _ecdsa("p384", hashes.SHA384),
    SignCase(
        "p256",
        "ECDSA_SHA256",
        MESSAGE,
        lambda k: k.sign(MESSAGE, mechanism=_mech("ECDSA_SHA256")),
        lambda k: k.sign(MESSAGE, ec.ECDSA(hashes.SHA256())),
    ),
    SignCase(
        "ed25519",
        "EDDSA",
        MESSAGE,
        lambda k: k.sign(MESSAGE, mechanism=_mech("EDDSA")),
        lambda k: k.sign(MESSAGE),
    ),
]
SIGN_CASES: dict[tuple[str, str], SignCase] = {(c.kind, c.mech): c for c in _ALL}


def _x509_block(size: int) -> bytes:
    """A raw block whose private operation is the PKCS#1 v1.5 signature of the SHA-256 DigestInfo."""
    payload = DIGEST_INFO_SHA256 + hashlib.sha256(MESSAGE).digest()
    return b"\x00\x01" + b"\xff" * (size - 3 - len(payload)) + b"\x00" + payload


def _rsa_x509(kind: str, size: int) -> SignCase:
    block = _x509_block(size)
    digest = hashlib.sha256(MESSAGE).digest()
    return SignCase(
        kind,
        "RSA_X_509",
        block,
        lambda k: k.sign(block, mechanism=_mech("RSA_X_509")),
        # `cryptography` has no raw private operation: the floor is the same single private operation
        # behind PKCS#1 v1.5 over the same DigestInfo (the output is the same bytes).
        lambda k: k.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256())),
    )


# Rows of their own (test_sign_raw_rsa): the C driver has no raw-block input, so they stay out of SIGN_CASES.
RAW_RSA_CASES: dict[tuple[str, str], SignCase] = {
    (c.kind, c.mech): c for c in (_rsa_x509("rsa2048", 256), _rsa_x509("rsa3072", 384))
}
