"""DSA-style signatures (ECDSA, DSA): PKCS#11 gives them as r || s, each as long as the group order, where
`cryptography` takes and gives DER; and the hash-and-sign operations both families build alike."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import utils

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.operation import HashFactory, HashThenSign, Verifier, signature_checked


def raw(der: bytes, size: int) -> bytes:
    """A DER (r, s) signature (ECDSA, DSA) as PKCS#11 gives it: r || s, each `size` bytes."""
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def der(sig: bytes, size: int, wrong_length: str) -> bytes:
    """r || s (PKCS#11) back to the DER that `cryptography` verifies."""
    if len(sig) != 2 * size:
        raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, wrong_length)
    return utils.encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))


def hash_then_sign(key: Any, full: Any, prehashed: Any, algorithm: HashFactory, size: int) -> HashThenSign:
    """ECDSA_SHA* and DSA_SHA*: `key.sign` with `full` over the data, with `prehashed` over a digest made in
    parts; the signature r || s."""
    return HashThenSign(
        lambda d: raw(key.sign(d, full), size),
        lambda h: raw(key.sign(h, prehashed), size),
        algorithm,
        2 * size,
    )


def hash_then_verify(
    key: Any, full: Any, prehashed: Any, algorithm: HashFactory, size: int, wrong_length: str
) -> Verifier:
    """The verifying side of hash_then_sign."""
    return Verifier(
        lambda d, s: signature_checked(lambda: key.verify(der(s, size, wrong_length), d, full)),
        algorithm,
        lambda h, s: signature_checked(lambda: key.verify(der(s, size, wrong_length), h, prehashed)),
    )
