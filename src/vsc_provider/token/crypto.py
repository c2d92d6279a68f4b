"""Mechanisms: the cryptography behind sign/verify, encrypt/decrypt, digest, wrap and derive.

Each operation object is built once at *Init time with everything it needs (padding objects, hash
algorithms, the loaded key), so the per-call work is the `cryptography` call itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, keywrap
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import GcmParams, Mechanism, OaepParams, PssParams
from vsc_provider.token import aes_modes
from vsc_provider.token import mechanisms as M
from vsc_provider.token.operation import DIGESTS, HashFactory, Signer, Verifier
from vsc_provider.token.operation import PREHASH_BY_SIZE as _PREHASH_BY_SIZE
from vsc_provider.token.operation import Buffered as _Buffered
from vsc_provider.token.operation import HashThenSign as _HashThenSign
from vsc_provider.token.operation import signature_checked as _invalid
from vsc_provider.token.rsa_raw import RsaRaw

MGF_HASHES: dict[int, HashFactory] = {
    C.CKG_MGF1_SHA1: hashes.SHA1,
    C.CKG_MGF1_SHA224: hashes.SHA224,
    C.CKG_MGF1_SHA256: hashes.SHA256,
    C.CKG_MGF1_SHA384: hashes.SHA384,
    C.CKG_MGF1_SHA512: hashes.SHA512,
}
# Combined mechanisms -> the hash class (the mechanism table itself lives in mechanisms.py).
RSA_PKCS_HASHED: dict[int, HashFactory] = {m: DIGESTS[d] for m, d in M.RSA_PKCS_HASHED.items()}
RSA_PSS_HASHED = M.RSA_PSS_HASHED
ECDSA_HASHED: dict[int, HashFactory] = {m: DIGESTS[d] for m, d in M.ECDSA_HASHED.items()}
HMACS: dict[int, HashFactory] = {m: DIGESTS[d] for m, d in M.HMACS.items()}
# DigestInfo prefixes (RFC 8017 section 9.2 note 1): a CKM_RSA_PKCS payload starting with one of these is
# signed as a pre-hashed value, which is what TLS stacks and the OpenSSL engine send.
DIGEST_INFO: dict[bytes, HashFactory] = {
    bytes.fromhex("3021300906052b0e03021a05000414"): hashes.SHA1,
    bytes.fromhex("302d300d06096086480165030402040500041c"): hashes.SHA224,
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256,
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384,
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512,
}


def _bad_param(what: str) -> CKRError:
    return CKRError(C.CKR_MECHANISM_PARAM_INVALID, what)


def _pss(mech: Mechanism, hash_mech: int | None, key_bits: int) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    p = mech.param
    if not isinstance(p, PssParams):
        raise _bad_param("PSS needs CK_RSA_PKCS_PSS_PARAMS")
    if hash_mech is not None and p.hash_alg != hash_mech:
        raise _bad_param("PSS parameter hash differs from the mechanism's hash")
    if p.hash_alg not in DIGESTS or p.mgf not in MGF_HASHES:
        raise _bad_param("unsupported PSS hash or MGF")
    algorithm = DIGESTS[p.hash_alg]()
    # RFC 8017 9.1.1: emLen >= hLen + sLen + 2, with emLen = ceil((modBits - 1) / 8).
    if p.salt_len > (key_bits + 6) // 8 - algorithm.digest_size - 2:
        raise _bad_param("PSS salt too long for this key and hash")
    return padding.PSS(mgf=padding.MGF1(MGF_HASHES[p.mgf]()), salt_length=p.salt_len), algorithm


def _ec_raw(sig_der: bytes, size: int) -> bytes:
    r, s = utils.decode_dss_signature(sig_der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _ec_der(sig: bytes, size: int) -> bytes:
    if len(sig) != 2 * size:
        raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "ECDSA signature of the wrong length")
    return utils.encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))


def _ecdsa_prehashed(data: bytes, order_bytes: int) -> tuple[bytes, ec.ECDSA]:
    """CKM_ECDSA takes a hash of any length: present it to OpenSSL as a pre-hashed value of a known size."""
    if not data:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "ECDSA needs a hash to sign")
    if len(data) in _PREHASH_BY_SIZE:
        return data, ec.ECDSA(utils.Prehashed(_PREHASH_BY_SIZE[len(data)]()))
    if len(data) > order_bytes:
        data = data[:order_bytes]
    fits = [s for s in sorted(_PREHASH_BY_SIZE) if s >= max(len(data), 20)]
    if not fits:  # P-521: more than 64 bytes left after truncation to the order's length
        raise CKRError(C.CKR_DATA_LEN_RANGE, "CKM_ECDSA input longer than 64 bytes is not supported on this curve")
    size = fits[0]
    if size > order_bytes and len(data) < order_bytes:
        size = next(s for s in sorted(_PREHASH_BY_SIZE) if s >= order_bytes)
    # Leading zeros keep the integer value, which is what ECDSA signs for inputs shorter than the order.
    data = data.rjust(size, b"\x00")
    return data, ec.ECDSA(utils.Prehashed(_PREHASH_BY_SIZE[size]()))


def rsa_public_raw(key: rsa.RSAPublicKey, block: bytes) -> bytes:
    n = key.public_numbers()
    size = (key.key_size + 7) // 8
    value = int.from_bytes(block, "big")
    if len(block) > size or value >= n.n:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "input is not smaller than the modulus")
    return pow(value, n.e, n.n).to_bytes(size, "big")


# --- signing -----------------------------------------------------------------------------------


def make_signer(mech: Mechanism, key: Any) -> Signer:
    m = mech.type
    if m in M.AES_MACS:
        return aes_modes.AesMac(mech, key)  # type: ignore[return-value]
    if isinstance(key, rsa.RSAPrivateKey):
        size = (key.key_size + 7) // 8
        if m in RSA_PKCS_HASHED:
            if mech.param is not None:
                raise _bad_param("this mechanism takes no parameter")
            alg = RSA_PKCS_HASHED[m]
            pad, halg = padding.PKCS1v15(), alg()
            pre = utils.Prehashed(alg())
            return _HashThenSign(lambda d: key.sign(d, pad, halg), lambda h: key.sign(h, pad, pre), alg, size)
        if m in RSA_PSS_HASHED:
            pss, halg = _pss(mech, RSA_PSS_HASHED[m], key.key_size)
            pre = utils.Prehashed(DIGESTS[RSA_PSS_HASHED[m]]())
            return _HashThenSign(
                lambda d: key.sign(d, pss, halg), lambda h: key.sign(h, pss, pre), DIGESTS[RSA_PSS_HASHED[m]], size
            )
        if m == C.CKM_RSA_PKCS_PSS:
            pss, halg = _pss(mech, None, key.key_size)
            pre = utils.Prehashed(halg)

            def sign_pss(digest: bytes) -> bytes:
                if len(digest) != halg.digest_size:
                    raise CKRError(C.CKR_DATA_LEN_RANGE, "CKM_RSA_PKCS_PSS signs a hash of the parameter's size")
                return key.sign(digest, pss, pre)

            return _Buffered(sign_pss, size)
        if m == C.CKM_RSA_PKCS:
            raw = RsaRaw(key)
            pad = padding.PKCS1v15()

            def sign_pkcs(payload: bytes) -> bytes:
                for prefix, alg in DIGEST_INFO.items():
                    if payload.startswith(prefix) and len(payload) == len(prefix) + alg().digest_size:
                        return key.sign(payload[len(prefix) :], pad, utils.Prehashed(alg()))
                return raw.sign_pkcs1(payload)

            return _Buffered(sign_pkcs, size)
        if m == C.CKM_RSA_X_509:
            raw = RsaRaw(key)
            return _Buffered(
                lambda block: raw.sign(block.rjust(size, b"\x00")) if len(block) <= size else _too_long(), size
            )
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "mechanism does not fit an RSA key")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        if m in ECDSA_HASHED:
            if mech.param is not None:
                raise _bad_param("this mechanism takes no parameter")
            alg = ECDSA_HASHED[m]
            ecdsa = ec.ECDSA(alg())
            pre_ec = ec.ECDSA(utils.Prehashed(alg()))
            return _HashThenSign(
                lambda d: _ec_raw(key.sign(d, ecdsa), size), lambda h: _ec_raw(key.sign(h, pre_ec), size), alg, 2 * size
            )
        if m == C.CKM_ECDSA:
            if mech.param is not None:
                raise _bad_param("CKM_ECDSA takes no parameter")
            prehash32 = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
            sign_der, decode = key.sign, utils.decode_dss_signature

            def sign_ecdsa(digest: bytes) -> bytes:
                if len(digest) == 32:  # the common case (a SHA-256 hash), spelled out: this is the hot path
                    r, s = decode(sign_der(digest, prehash32))
                    return r.to_bytes(size, "big") + s.to_bytes(size, "big")
                data, algorithm = _ecdsa_prehashed(digest, size)
                return _ec_raw(key.sign(data, algorithm), size)

            return _Buffered(sign_ecdsa, 2 * size)
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "mechanism does not fit an EC key")
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        if m != C.CKM_EDDSA:
            raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "an EdDSA key signs with CKM_EDDSA")
        if mech.param is not None and (getattr(mech.param, "prehash", False) or getattr(mech.param, "context", b"")):
            raise _bad_param("EdDSA with pre-hashing or a context (Ed25519ph/ctx, Ed448ph) is not supported")
        return _Buffered(key.sign, 64 if isinstance(key, ed25519.Ed25519PrivateKey) else 114)
    if isinstance(key, bytes):
        if m not in HMACS:
            raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "a secret key signs with an HMAC mechanism")
        if mech.param is not None:
            raise _bad_param("HMAC mechanisms take no parameter")
        return _HmacSigner(key, HMACS[m])
    from vsc_provider.token import dsa_dh, pqc  # post-quantum, DSA: their own modules

    if pqc.is_pq(key):
        return pqc.make_signer(mech, key)
    if dsa_dh.is_dsa_dh(key):
        return dsa_dh.make_signer(mech, key)
    raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "this key cannot sign")


def _too_long() -> bytes:
    raise CKRError(C.CKR_DATA_LEN_RANGE, "input longer than the modulus")


class _HmacSigner(Signer):
    def __init__(self, key: bytes, alg: HashFactory) -> None:
        super().__init__()
        self._key = key
        self._alg = alg
        self._ctx = hmac.HMAC(key, alg())
        self.length = alg().digest_size

    def sign(self, data: bytes) -> bytes:
        ctx = hmac.HMAC(self._key, self._alg())
        ctx.update(data)
        return ctx.finalize()

    def update(self, part: bytes) -> None:
        self._ctx.update(part)

    def final(self) -> bytes:
        return self._ctx.finalize()

    def fresh(self) -> Signer:
        other = super().fresh()
        assert isinstance(other, _HmacSigner)
        other._ctx = hmac.HMAC(self._key, self._alg())
        return other


def make_verifier(mech: Mechanism, key: Any) -> Verifier:
    """Verify with a public key (or HMAC secret); the same mechanisms as make_signer."""
    m = mech.type
    if m in M.AES_MACS:
        return aes_modes.AesMacVerifier(mech, key)  # type: ignore[return-value]
    if isinstance(key, rsa.RSAPublicKey):
        size = (key.key_size + 7) // 8

        def length_ok(sig: bytes) -> None:
            if len(sig) != size:
                raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "RSA signature of the wrong length")

        if m in RSA_PKCS_HASHED or m in RSA_PSS_HASHED:
            if m in RSA_PKCS_HASHED:
                if mech.param is not None:
                    raise _bad_param("this mechanism takes no parameter")
                alg = RSA_PKCS_HASHED[m]
                pad: padding.AsymmetricPadding = padding.PKCS1v15()
            else:
                pad, _ = _pss(mech, RSA_PSS_HASHED[m], key.key_size)
                alg = DIGESTS[RSA_PSS_HASHED[m]]

            def check(d: bytes, s: bytes) -> None:
                length_ok(s)
                _invalid(lambda: key.verify(s, d, pad, alg()))

            def check_pre(h: bytes, s: bytes) -> None:
                length_ok(s)
                _invalid(lambda: key.verify(s, h, pad, utils.Prehashed(alg())))

            return Verifier(check, alg, check_pre)
        if m == C.CKM_RSA_PKCS_PSS:
            pss, halg = _pss(mech, None, key.key_size)

            def check_pss(h: bytes, s: bytes) -> None:
                length_ok(s)
                if len(h) != halg.digest_size:
                    raise CKRError(C.CKR_DATA_LEN_RANGE, "CKM_RSA_PKCS_PSS verifies a hash of the parameter's size")
                _invalid(lambda: key.verify(s, h, pss, utils.Prehashed(halg)))

            return Verifier(check_pss, None, None)
        if m in (C.CKM_RSA_PKCS, C.CKM_RSA_X_509):

            def check_raw(d: bytes, s: bytes) -> None:
                length_ok(s)
                block = rsa_public_raw(key, s)
                if m == C.CKM_RSA_X_509:
                    expected = d.rjust(size, b"\x00")
                else:
                    if len(d) > size - 11:
                        raise CKRError(C.CKR_DATA_LEN_RANGE, "payload too long for PKCS#1 v1.5")
                    expected = b"\x00\x01" + b"\xff" * (size - 3 - len(d)) + b"\x00" + d
                if block != expected:
                    raise CKRError(C.CKR_SIGNATURE_INVALID, "signature does not verify")

            return Verifier(check_raw, None, None)
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "mechanism does not fit an RSA key")
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        if m in ECDSA_HASHED:
            alg = ECDSA_HASHED[m]
            return Verifier(
                lambda d, s: _invalid(lambda: key.verify(_ec_der(s, size), d, ec.ECDSA(alg()))),
                alg,
                lambda h, s: _invalid(lambda: key.verify(_ec_der(s, size), h, ec.ECDSA(utils.Prehashed(alg())))),
            )
        if m == C.CKM_ECDSA:

            def check_ecdsa(d: bytes, s: bytes) -> None:
                data, algorithm = _ecdsa_prehashed(d, size)
                _invalid(lambda: key.verify(_ec_der(s, size), data, algorithm))

            return Verifier(check_ecdsa, None, None)
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "mechanism does not fit an EC key")
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        if m != C.CKM_EDDSA:
            raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "an EdDSA key verifies with CKM_EDDSA")
        if mech.param is not None and (getattr(mech.param, "prehash", False) or getattr(mech.param, "context", b"")):
            raise _bad_param("EdDSA with pre-hashing or a context (Ed25519ph/ctx, Ed448ph) is not supported")
        sig_len = 64 if isinstance(key, ed25519.Ed25519PublicKey) else 114

        def check_ed(d: bytes, s: bytes) -> None:
            if len(s) != sig_len:
                raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "EdDSA signature of the wrong length")
            _invalid(lambda: key.verify(s, d))

        return Verifier(check_ed, None, None)
    if isinstance(key, bytes):
        if m not in HMACS:
            raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "a secret key verifies with an HMAC mechanism")
        if mech.param is not None:
            raise _bad_param("HMAC mechanisms take no parameter")
        signer = _HmacSigner(key, HMACS[m])

        def check_mac(d: bytes, s: bytes) -> None:
            expected = signer.sign(d)
            if len(s) != len(expected):
                raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "HMAC of the wrong length")
            if not _constant_time_eq(expected, s):
                raise CKRError(C.CKR_SIGNATURE_INVALID, "HMAC does not verify")

        return Verifier(check_mac, None, None)
    from vsc_provider.token import dsa_dh, pqc

    if pqc.is_pq(key):
        return pqc.make_verifier(mech, key)
    if dsa_dh.is_dsa_dh(key):
        return dsa_dh.make_verifier(mech, key)
    raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "this key cannot verify")


def _constant_time_eq(a: bytes, b: bytes) -> bool:
    import hmac as std_hmac

    return std_hmac.compare_digest(a, b)


# --- encryption and decryption ---------------------------------------------------------------


class Cipherer:
    """An encrypt or decrypt operation: one-shot `run`, or `update`... then `final`."""

    def __init__(
        self,
        run: Callable[[bytes], bytes],
        update: Callable[[bytes], bytes] | None = None,
        final: Callable[[], bytes] | None = None,
    ) -> None:
        self.run = run
        self._parts: list[bytes] = []
        self._update = update
        self._final = final

    def update(self, part: bytes) -> bytes:
        if self._update is None:
            self._parts.append(part)
            return b""
        return self._update(part)

    def final(self) -> bytes:
        if self._final is None:
            return self.run(b"".join(self._parts))
        return self._final()


_OAEP_HASHES = frozenset({C.CKM_SHA_1, C.CKM_SHA224, C.CKM_SHA256, C.CKM_SHA384, C.CKM_SHA512})


def _oaep(mech: Mechanism) -> padding.OAEP:
    p = mech.param
    if not isinstance(p, OaepParams):
        raise _bad_param("OAEP needs CK_RSA_PKCS_OAEP_PARAMS")
    # OpenSSL's OAEP takes SHA-1 and SHA-2 only: a SHA-3 hash raised UnsupportedAlgorithm (CKR_GENERAL_ERROR).
    if p.hash_alg not in _OAEP_HASHES or p.mgf not in MGF_HASHES:
        raise _bad_param("unsupported OAEP hash or MGF")
    if p.source not in (0, C.CKZ_DATA_SPECIFIED):
        raise _bad_param("unsupported OAEP source")
    return padding.OAEP(mgf=padding.MGF1(MGF_HASHES[p.mgf]()), algorithm=DIGESTS[p.hash_alg](), label=p.label or None)


def _aes_key(key: Any) -> bytes:
    if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "mechanism needs an AES key")
    return key


def _iv(mech: Mechanism) -> bytes:
    if not isinstance(mech.param, bytes) or len(mech.param) != 16:
        raise _bad_param("AES-CBC needs a 16-byte IV")
    return mech.param


def _block_aligned(data: bytes) -> bytes:
    if len(data) % 16:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "AES without padding needs whole blocks")
    return data


def _gcm(mech: Mechanism) -> GcmParams:
    p = mech.param
    if not isinstance(p, GcmParams):
        raise _bad_param("AES-GCM needs CK_GCM_PARAMS")
    if not p.iv or p.tag_bits not in (96, 104, 112, 120, 128):
        raise _bad_param("AES-GCM needs an IV and a tag of 96 to 128 bits")
    if not 8 <= len(p.iv) <= 128:  # what OpenSSL (through `cryptography`) takes
        raise _bad_param("AES-GCM IVs have 8 to 128 bytes")
    return p


def make_encryptor(mech: Mechanism, key: Any) -> Cipherer:
    m = mech.type
    if m == C.CKM_AES_CTR:
        return aes_modes.CtrCipher(mech, key)  # type: ignore[return-value]
    if isinstance(key, rsa.RSAPublicKey):
        if m == C.CKM_RSA_PKCS:
            pad: padding.AsymmetricPadding = padding.PKCS1v15()
            return Cipherer(lambda d: _rsa_encrypt(key, d, pad))
        if m == C.CKM_RSA_PKCS_OAEP:
            oaep = _oaep(mech)
            return Cipherer(lambda d: _rsa_encrypt(key, d, oaep))
        if m == C.CKM_RSA_X_509:
            size = (key.key_size + 7) // 8
            return Cipherer(lambda d: rsa_public_raw(key, d.rjust(size, b"\x00")))
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "mechanism does not fit an RSA key")
    if m in (C.CKM_AES_ECB, C.CKM_AES_CBC, C.CKM_AES_CBC_PAD):
        aes = _aes_key(key)
        mode: modes.ECB | modes.CBC = modes.ECB() if m == C.CKM_AES_ECB else modes.CBC(_iv(mech))  # noqa: S305
        if m == C.CKM_AES_ECB and mech.param is not None:
            raise _bad_param("AES-ECB takes no parameter")
        ctx = Cipher(algorithms.AES(aes), mode).encryptor()
        if m == C.CKM_AES_CBC_PAD:
            padder = sym_padding.PKCS7(128).padder()
            return Cipherer(
                lambda d: ctx.update(padder.update(d) + padder.finalize()) + ctx.finalize(),
                lambda d: ctx.update(padder.update(d)),
                lambda: ctx.update(padder.finalize()) + ctx.finalize(),
            )
        stream = aes_modes.BlockStream(ctx, C.CKR_DATA_LEN_RANGE)
        return Cipherer(lambda d: ctx.update(_block_aligned(d)) + ctx.finalize(), stream.update, stream.final)
    if m == C.CKM_AES_GCM:
        aes = _aes_key(key)
        p = _gcm(mech)
        ctx = Cipher(algorithms.AES(aes), modes.GCM(p.iv, min_tag_length=p.tag_bits // 8)).encryptor()
        ctx.authenticate_additional_data(p.aad)

        def gcm_final() -> bytes:
            return ctx.finalize() + ctx.tag[: p.tag_bits // 8]

        return Cipherer(lambda d: ctx.update(d) + gcm_final(), ctx.update, gcm_final)
    if m in (C.CKM_AES_KEY_WRAP, C.CKM_AES_KEY_WRAP_PAD, C.CKM_AES_KEY_WRAP_KWP):
        aes = _aes_key(key)
        return Cipherer(lambda d: aes_wrap(m, aes, d))
    raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{m:x} cannot encrypt with this key")


def _rsa_encrypt(key: rsa.RSAPublicKey, data: bytes, pad: padding.AsymmetricPadding) -> bytes:
    try:
        return key.encrypt(data, pad)
    except ValueError as exc:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "data too long for this key and padding") from exc


def make_decryptor(mech: Mechanism, key: Any) -> Cipherer:
    m = mech.type
    if m == C.CKM_AES_CTR:
        return aes_modes.CtrCipher(mech, key)  # type: ignore[return-value]
    if isinstance(key, rsa.RSAPrivateKey):
        size = (key.key_size + 7) // 8

        def rsa_decrypt(data: bytes, pad: padding.AsymmetricPadding) -> bytes:
            if len(data) != size:
                raise CKRError(C.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext length differs from the modulus")
            try:
                return key.decrypt(data, pad)
            except ValueError as exc:
                raise CKRError(C.CKR_ENCRYPTED_DATA_INVALID, "decryption failed") from exc

        if m == C.CKM_RSA_PKCS:
            pkcs = padding.PKCS1v15()
            return Cipherer(lambda d: rsa_decrypt(d, pkcs))
        if m == C.CKM_RSA_PKCS_OAEP:
            oaep = _oaep(mech)
            return Cipherer(lambda d: rsa_decrypt(d, oaep))
        if m == C.CKM_RSA_X_509:
            raw = RsaRaw(key)

            def raw_decrypt(d: bytes) -> bytes:
                if len(d) != size:
                    raise CKRError(C.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext length differs from the modulus")
                return raw.decrypt(d)

            return Cipherer(raw_decrypt)
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "mechanism does not fit an RSA key")
    if m in (C.CKM_AES_ECB, C.CKM_AES_CBC, C.CKM_AES_CBC_PAD):
        aes = _aes_key(key)
        mode: modes.ECB | modes.CBC = modes.ECB() if m == C.CKM_AES_ECB else modes.CBC(_iv(mech))  # noqa: S305
        ctx = Cipher(algorithms.AES(aes), mode).decryptor()
        if m == C.CKM_AES_CBC_PAD:
            unpadder = sym_padding.PKCS7(128).unpadder()

            def unpad_final(last: bytes) -> bytes:
                try:
                    return unpadder.update(last) + unpadder.finalize()
                except ValueError as exc:
                    raise CKRError(C.CKR_ENCRYPTED_DATA_INVALID, "bad padding") from exc

            padded = aes_modes.BlockStream(ctx, C.CKR_ENCRYPTED_DATA_LEN_RANGE)
            return Cipherer(
                lambda d: unpad_final(ctx.update(_enc_aligned(d)) + ctx.finalize()),
                lambda d: unpadder.update(padded.update(d)),
                lambda: unpad_final(padded.final()),
            )
        stream = aes_modes.BlockStream(ctx, C.CKR_ENCRYPTED_DATA_LEN_RANGE)
        return Cipherer(lambda d: ctx.update(_enc_aligned(d)) + ctx.finalize(), stream.update, stream.final)
    if m == C.CKM_AES_GCM:
        aes = _aes_key(key)
        p = _gcm(mech)
        tag_len = p.tag_bits // 8

        def gcm_decrypt(d: bytes) -> bytes:
            if len(d) < tag_len:
                raise CKRError(C.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext shorter than the tag")
            ctx = Cipher(algorithms.AES(aes), modes.GCM(p.iv, d[-tag_len:], min_tag_length=tag_len)).decryptor()
            ctx.authenticate_additional_data(p.aad)
            try:
                return ctx.update(d[:-tag_len]) + ctx.finalize()
            except InvalidTag as exc:
                raise CKRError(C.CKR_ENCRYPTED_DATA_INVALID, "GCM tag does not verify") from exc

        return Cipherer(gcm_decrypt)  # multi-part buffers: nothing is released before the tag checks
    if m in (C.CKM_AES_KEY_WRAP, C.CKM_AES_KEY_WRAP_PAD, C.CKM_AES_KEY_WRAP_KWP):
        aes = _aes_key(key)
        return Cipherer(lambda d: aes_unwrap(m, aes, d))
    raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{m:x} cannot decrypt with this key")


def _enc_aligned(data: bytes) -> bytes:
    if len(data) % 16:
        raise CKRError(C.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext is not whole blocks")
    return data


def aes_wrap(m: int, key: bytes, data: bytes) -> bytes:
    if m == C.CKM_AES_KEY_WRAP:
        if len(data) < 16 or len(data) % 8:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "AES key wrap needs a multiple of 8 bytes, at least 16")
        return keywrap.aes_key_wrap(key, data)
    if not data:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "AES key wrap with padding needs at least one byte")
    return keywrap.aes_key_wrap_with_padding(key, data)


def aes_unwrap(m: int, key: bytes, data: bytes) -> bytes:
    try:
        if m == C.CKM_AES_KEY_WRAP:
            return keywrap.aes_key_unwrap(key, data)
        return keywrap.aes_key_unwrap_with_padding(key, data)
    except (keywrap.InvalidUnwrap, ValueError) as exc:
        raise CKRError(C.CKR_WRAPPED_KEY_INVALID, "unwrap failed") from exc


# --- digests -----------------------------------------------------------------------------------


def make_digest(mech: Mechanism) -> hashes.Hash:
    if mech.type not in DIGESTS:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} is not a digest")
    if mech.param is not None:
        raise _bad_param("digests take no parameter")
    return hashes.Hash(DIGESTS[mech.type]())


def digest_size(mech_type: int) -> int:
    return DIGESTS[mech_type]().digest_size
