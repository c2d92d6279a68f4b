"""RSA signatures and their verification, one builder a mechanism: PKCS#1 v1.5 and PSS, hash-and-sign or over
a hash the caller made, and the raw CKM_RSA_X_509 / CKM_RSA_PKCS private operation (token/rsa_raw.py)."""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import mechanisms as M
from vsc_provider.token.operation import (
    DIGESTS,
    Buffered,
    Build,
    HashFactory,
    HashThenSign,
    Signer,
    Verifier,
    by_direction,
    no_param,
)
from vsc_provider.token.operation import signature_checked as _invalid
from vsc_provider.token.rsa_padding import pss
from vsc_provider.token.rsa_raw import RsaRaw, rsa_public_raw

RSA_PKCS_HASHED: dict[int, HashFactory] = {m: DIGESTS[d] for m, d in M.RSA_PKCS_HASHED.items()}
# DigestInfo prefixes (RFC 8017 section 9.2 note 1): a CKM_RSA_PKCS payload starting with one of these is
# signed as a pre-hashed value, which is what TLS stacks and the OpenSSL engine send.
DIGEST_INFO: dict[bytes, HashFactory] = {
    bytes.fromhex("3021300906052b0e03021a05000414"): DIGESTS[C.CKM_SHA_1],
    bytes.fromhex("302d300d06096086480165030402040500041c"): DIGESTS[C.CKM_SHA224],
    bytes.fromhex("3031300d060960864801650304020105000420"): DIGESTS[C.CKM_SHA256],
    bytes.fromhex("3041300d060960864801650304020205000430"): DIGESTS[C.CKM_SHA384],
    bytes.fromhex("3051300d060960864801650304020305000440"): DIGESTS[C.CKM_SHA512],
}


def _modulus_bytes(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> int:
    return (key.key_size + 7) // 8


# --- hash-and-sign: the padding and hash of each combined mechanism ----------------------------------


def _pkcs1_hashed(mech: Mechanism, key_bits: int) -> tuple[padding.AsymmetricPadding, HashFactory]:
    no_param(mech)
    return padding.PKCS1v15(), RSA_PKCS_HASHED[mech.type]


def _pss_hashed(mech: Mechanism, key_bits: int) -> tuple[padding.AsymmetricPadding, HashFactory]:
    hash_mech = M.RSA_PSS_HASHED[mech.type]
    return pss(mech, hash_mech, key_bits)[0], DIGESTS[hash_mech]


_HASHED: dict[int, Callable[[Mechanism, int], tuple[padding.AsymmetricPadding, HashFactory]]] = {
    **dict.fromkeys(M.RSA_PKCS_HASHED, _pkcs1_hashed),
    **dict.fromkeys(M.RSA_PSS_HASHED, _pss_hashed),
}


# --- signing -----------------------------------------------------------------------------------------


def _sign_hashed(mech: Mechanism, key: rsa.RSAPrivateKey) -> Signer:
    pad, alg = _HASHED[mech.type](mech, key.key_size)
    halg, pre = alg(), utils.Prehashed(alg())
    return HashThenSign(lambda d: key.sign(d, pad, halg), lambda h: key.sign(h, pad, pre), alg, _modulus_bytes(key))


def _sign_pss(mech: Mechanism, key: rsa.RSAPrivateKey) -> Signer:
    pad, halg = pss(mech, None, key.key_size)
    pre = utils.Prehashed(halg)

    def sign_pss(digest: bytes) -> bytes:
        if len(digest) != halg.digest_size:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "CKM_RSA_PKCS_PSS signs a hash of the parameter's size")
        return key.sign(digest, pad, pre)

    return Buffered(sign_pss, _modulus_bytes(key))


def _sign_pkcs1(mech: Mechanism, key: rsa.RSAPrivateKey) -> Signer:
    raw = RsaRaw(key)
    pad = padding.PKCS1v15()

    def sign_pkcs(payload: bytes) -> bytes:
        for prefix, alg in DIGEST_INFO.items():
            if payload.startswith(prefix) and len(payload) == len(prefix) + alg().digest_size:
                return key.sign(payload[len(prefix) :], pad, utils.Prehashed(alg()))
        return raw.sign_pkcs1(payload)

    return Buffered(sign_pkcs, raw.size)


def _sign_x509(mech: Mechanism, key: rsa.RSAPrivateKey) -> Signer:
    raw = RsaRaw(key)
    size = raw.size
    return Buffered(lambda block: raw.sign(block.rjust(size, b"\x00")) if len(block) <= size else _too_long(), size)


def _too_long() -> bytes:
    raise CKRError(C.CKR_DATA_LEN_RANGE, "input longer than the modulus")


# --- verifying ---------------------------------------------------------------------------------------


def _length_ok(signature: bytes, size: int) -> None:
    if len(signature) != size:
        raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "RSA signature of the wrong length")


def _verify_hashed(mech: Mechanism, key: rsa.RSAPublicKey) -> Verifier:
    pad, alg = _HASHED[mech.type](mech, key.key_size)
    size = _modulus_bytes(key)

    def check(d: bytes, s: bytes) -> None:
        _length_ok(s, size)
        _invalid(lambda: key.verify(s, d, pad, alg()))

    def check_pre(h: bytes, s: bytes) -> None:
        _length_ok(s, size)
        _invalid(lambda: key.verify(s, h, pad, utils.Prehashed(alg())))

    return Verifier(check, alg, check_pre)


def _verify_pss(mech: Mechanism, key: rsa.RSAPublicKey) -> Verifier:
    pad, halg = pss(mech, None, key.key_size)
    size = _modulus_bytes(key)

    def check_pss(h: bytes, s: bytes) -> None:
        _length_ok(s, size)
        if len(h) != halg.digest_size:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "CKM_RSA_PKCS_PSS verifies a hash of the parameter's size")
        _invalid(lambda: key.verify(s, h, pad, utils.Prehashed(halg)))

    return Verifier(check_pss, None, None)


def _verify_raw(mech: Mechanism, key: rsa.RSAPublicKey) -> Verifier:
    """CKM_RSA_PKCS and CKM_RSA_X_509: the public operation, compared with the block the signer made."""
    size = _modulus_bytes(key)
    x509 = mech.type == C.CKM_RSA_X_509

    def check_raw(d: bytes, s: bytes) -> None:
        _length_ok(s, size)
        block = rsa_public_raw(key, s)
        if x509:
            expected = d.rjust(size, b"\x00")
        else:
            if len(d) > size - 11:
                raise CKRError(C.CKR_DATA_LEN_RANGE, "payload too long for PKCS#1 v1.5")
            expected = b"\x00\x01" + b"\xff" * (size - 3 - len(d)) + b"\x00" + d
        if block != expected:
            raise CKRError(C.CKR_SIGNATURE_INVALID, "signature does not verify")

    return Verifier(check_raw, None, None)


# mechanism -> (what makes its signer, what makes its verifier)
_BUILDERS: dict[int, tuple[Build[Signer], Build[Verifier]]] = {
    **dict.fromkeys(_HASHED, (_sign_hashed, _verify_hashed)),
    C.CKM_RSA_PKCS_PSS: (_sign_pss, _verify_pss),
    C.CKM_RSA_PKCS: (_sign_pkcs1, _verify_raw),
    C.CKM_RSA_X_509: (_sign_x509, _verify_raw),
}
SIGNERS, VERIFIERS = by_direction(_BUILDERS)
