"""Elliptic-curve signatures and their verification: ECDSA (hash-and-sign, or over a hash the caller made) and
EdDSA (Ed25519, Ed448)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import dss
from vsc_provider.token import mechanisms as M
from vsc_provider.token.operation import (
    DIGESTS,
    PREHASH_BY_SIZE,
    Buffered,
    Build,
    HashFactory,
    Signer,
    Verifier,
    by_direction,
    no_param,
    param_invalid,
)
from vsc_provider.token.operation import signature_checked as _invalid

ECDSA_HASHED: dict[int, HashFactory] = {m: DIGESTS[d] for m, d in M.ECDSA_HASHED.items()}
ECDSA_WRONG_LENGTH = "ECDSA signature of the wrong length"
ED25519_SIGNATURE = 64
ED448_SIGNATURE = 114


def _order_bytes(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> int:
    return (key.curve.key_size + 7) // 8


def _ecdsa_prehashed(data: bytes, order_bytes: int) -> tuple[bytes, ec.ECDSA]:
    """CKM_ECDSA takes a hash of any length: present it to OpenSSL as a pre-hashed value of a known size."""
    if not data:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "ECDSA needs a hash to sign")
    if len(data) in PREHASH_BY_SIZE:
        return data, ec.ECDSA(utils.Prehashed(PREHASH_BY_SIZE[len(data)]()))
    if len(data) > order_bytes:
        data = data[:order_bytes]
    fits = [s for s in sorted(PREHASH_BY_SIZE) if s >= max(len(data), 20)]
    if not fits:  # P-521: more than 64 bytes left after truncation to the order's length
        raise CKRError(C.CKR_DATA_LEN_RANGE, "CKM_ECDSA input longer than 64 bytes is not supported on this curve")
    size = fits[0]
    if size > order_bytes and len(data) < order_bytes:
        size = next(s for s in sorted(PREHASH_BY_SIZE) if s >= order_bytes)
    # Leading zeros keep the integer value, which is what ECDSA signs for inputs shorter than the order.
    data = data.rjust(size, b"\x00")
    return data, ec.ECDSA(utils.Prehashed(PREHASH_BY_SIZE[size]()))


def _hashed(mech: Mechanism) -> tuple[ec.ECDSA, ec.ECDSA, HashFactory]:
    """ECDSA_SHA*: the signature algorithm over the data, over a digest made in parts, and the hash."""
    alg = ECDSA_HASHED[mech.type]
    return ec.ECDSA(alg()), ec.ECDSA(utils.Prehashed(alg())), alg


# --- ECDSA -------------------------------------------------------------------------------------------


def _sign_hashed(mech: Mechanism, key: ec.EllipticCurvePrivateKey) -> Signer:
    no_param(mech)  # (verifying has never checked it)
    return dss.hash_then_sign(key, *_hashed(mech), _order_bytes(key))


def _sign_ecdsa(mech: Mechanism, key: ec.EllipticCurvePrivateKey) -> Signer:
    no_param(mech, "CKM_ECDSA takes no parameter")
    size = _order_bytes(key)
    prehash32 = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    sign_der, decode = key.sign, utils.decode_dss_signature

    def sign_ecdsa(digest: bytes) -> bytes:
        if len(digest) == 32:  # the common case (a SHA-256 hash), spelled out: this is the hot path
            r, s = decode(sign_der(digest, prehash32))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        data, algorithm = _ecdsa_prehashed(digest, size)
        return dss.raw(key.sign(data, algorithm), size)

    return Buffered(sign_ecdsa, 2 * size)


def _verify_hashed(mech: Mechanism, key: ec.EllipticCurvePublicKey) -> Verifier:
    return dss.hash_then_verify(key, *_hashed(mech), _order_bytes(key), ECDSA_WRONG_LENGTH)


def _verify_ecdsa(mech: Mechanism, key: ec.EllipticCurvePublicKey) -> Verifier:
    size = _order_bytes(key)

    def check_ecdsa(d: bytes, s: bytes) -> None:
        data, algorithm = _ecdsa_prehashed(d, size)
        _invalid(lambda: key.verify(dss.der(s, size, ECDSA_WRONG_LENGTH), data, algorithm))

    return Verifier(check_ecdsa, None, None)


# mechanism -> (what makes its signer, what makes its verifier)
_ECDSA: dict[int, tuple[Build[Signer], Build[Verifier]]] = {
    **dict.fromkeys(ECDSA_HASHED, (_sign_hashed, _verify_hashed)),
    C.CKM_ECDSA: (_sign_ecdsa, _verify_ecdsa),
}
ECDSA_SIGNERS, ECDSA_VERIFIERS = by_direction(_ECDSA)


# --- EdDSA -------------------------------------------------------------------------------------------


def _eddsa(mech: Mechanism, verb: str) -> None:
    if mech.type != C.CKM_EDDSA:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, f"an EdDSA key {verb} with CKM_EDDSA")
    if mech.param is not None and (getattr(mech.param, "prehash", False) or getattr(mech.param, "context", b"")):
        raise param_invalid("EdDSA with pre-hashing or a context (Ed25519ph/ctx, Ed448ph) is not supported")


def make_eddsa_signer(signature_length: int, mech: Mechanism, key: Any) -> Signer:
    """An Ed25519 or Ed448 private key's signer; its signatures have `signature_length` bytes."""
    _eddsa(mech, "signs")
    return Buffered(key.sign, signature_length)


def make_eddsa_verifier(signature_length: int, mech: Mechanism, key: Any) -> Verifier:
    _eddsa(mech, "verifies")

    def check_ed(d: bytes, s: bytes) -> None:
        if len(s) != signature_length:
            raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "EdDSA signature of the wrong length")
        _invalid(lambda: key.verify(s, d))

    return Verifier(check_ed, None, None)
