"""CardSignData and CardRSADecrypt: the CSP hashes and hands over the hash; the card service signs or decrypts
by the container's key (no cryptography here: DigestInfo is asn1crypto's, the rest `cryptography`'s).

CryptoAPI keeps RSA numbers little-endian: an RSA signature comes back byte-reversed, and CardRSADecrypt
takes and gives its buffer reversed. ECDSA signatures are r || s, big-endian, as BCrypt has them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism, OaepParams, PssParams
from vsc_provider.minidriver import containers as K
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver.context import CardContext
from vsc_provider.token import service

CARD_PADDING_INFO_PRESENT = 0x40000000
CARD_BUFFER_SIZE_ONLY = 0x20000000
CARD_PADDING_NONE = 0x00000001
CARD_PADDING_PKCS1 = 0x00000002
CARD_PADDING_PSS = 0x00000004
CARD_PADDING_OAEP = 0x00000008
CRYPT_NOHASHOID = 0x00000001  # in dwSigningFlags without padding info: PKCS#1 v1.5 without the DigestInfo
CARD_SIGNING_INFO_BASIC_VERSION = 1
CARD_SIGNING_INFO_CURRENT_VERSION = 2
CARD_RSA_KEY_DECRYPT_INFO_VERSION_ONE = 1
CARD_RSA_KEY_DECRYPT_INFO_VERSION_TWO = 2

CALG_MD5 = 0x8003
CALG_SHA1 = 0x8004
CALG_SSL3_SHAMD5 = 0x8008
CALG_SHA_256 = 0x800C
CALG_SHA_384 = 0x800D
CALG_SHA_512 = 0x800E
# (asn1crypto digest name, digest size, PKCS#11 hash, MGF1) by ALG_ID and by BCrypt algorithm name
_BY_ALG_ID = {
    CALG_MD5: ("md5", 16, 0, None),  # DigestInfo only: no PSS or OAEP with MD5
    CALG_SHA1: ("sha1", 20, C.CKM_SHA_1, C.CKG_MGF1_SHA1),
    CALG_SHA_256: ("sha256", 32, C.CKM_SHA256, C.CKG_MGF1_SHA256),
    CALG_SHA_384: ("sha384", 48, C.CKM_SHA384, C.CKG_MGF1_SHA384),
    CALG_SHA_512: ("sha512", 64, C.CKM_SHA512, C.CKG_MGF1_SHA512),
}
_BY_NAME = {"MD5": CALG_MD5, "SHA1": CALG_SHA1, "SHA256": CALG_SHA_256, "SHA384": CALG_SHA_384, "SHA512": CALG_SHA_512}


class PaddingInfo(NamedTuple):
    """BCRYPT_PKCS1_PADDING_INFO / BCRYPT_PSS_PADDING_INFO / BCRYPT_OAEP_PADDING_INFO: pszAlgId (None for
    no OID), cbSalt (PSS), pbLabel (OAEP)."""

    alg_id: str | None = None
    salt: int = 0
    label: bytes = b""


@dataclass
class SigningInfo:
    """CARD_SIGNING_INFO: the inputs, and pbSignedData / cbSignedData filled in by sign_data."""

    version: int
    container_index: int
    key_spec: int
    signing_flags: int
    hash_alg: int
    data: bytes
    padding_info: PaddingInfo | None = None
    padding_type: int = 0
    signed_data: bytes = b""
    cb_signed_data: int = 0


@dataclass
class RsaDecryptInfo:
    """CARD_RSA_DECRYPT_INFO: pbData is decrypted in place (cbData may shrink once padding is removed)."""

    version: int
    container_index: int
    key_spec: int
    data: bytes
    padding_info: PaddingInfo | None = None
    padding_type: int = 0


def _refused(ctx: CardContext, exc: CKRError) -> E.MinidriverError:
    """The card service's refusal; a private key out of sight because nobody is logged in is the
    specification's "authenticate first" (SCARD_W_SECURITY_VIOLATION), so that a CSP asks for the PIN."""
    if exc.rv == C.CKR_KEY_HANDLE_INVALID and not ctx.card.user:
        return E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, "authenticate the user first")
    return E.from_ckr(exc)


def _hash(alg_id: int) -> tuple[str, int, int, int | None]:
    found = _BY_ALG_ID.get(alg_id)
    if found is None:
        raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, f"hash ALG_ID 0x{alg_id:x}")
    return found


def _named_hash(name: str) -> int:
    if name not in _BY_NAME:
        raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, f"hash {name!r}")
    return _BY_NAME[name]


@functools.cache
def _digest_info_prefix(name: str, size: int) -> bytes:
    """A DigestInfo's DER up to its digest: fixed by the hash (asn1crypto encodes it once per hash)."""
    from asn1crypto import algos, core

    algorithm = algos.DigestAlgorithm({"algorithm": name, "parameters": core.Null()})
    return bytes(algos.DigestInfo({"digest_algorithm": algorithm, "digest": bytes(size)}).dump()[:-size])


def _digest_info(alg_id: int, digest: bytes) -> bytes:
    name, size, _, _ = _hash(alg_id)
    if len(digest) != size:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"a {name} hash has {size} bytes")
    return _digest_info_prefix(name, size) + digest


def _rsa_mechanism(info: SigningInfo) -> tuple[Mechanism, bytes]:
    if info.signing_flags & CARD_PADDING_INFO_PRESENT:
        pad = info.padding_info or PaddingInfo()
        if info.padding_type == CARD_PADDING_PKCS1:
            if pad.alg_id is None:
                return Mechanism(C.CKM_RSA_PKCS), info.data
            return Mechanism(C.CKM_RSA_PKCS), _digest_info(_named_hash(pad.alg_id), info.data)
        if info.padding_type == CARD_PADDING_PSS:
            if pad.alg_id is None:
                raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "PSS needs its hash")
            _, size, mech, mgf = _hash(_named_hash(pad.alg_id))
            if mgf is None or len(info.data) != size:
                raise E.MinidriverError(
                    E.SCARD_E_INVALID_PARAMETER, f"PSS with {pad.alg_id} over {len(info.data)} bytes"
                )
            return Mechanism(C.CKM_RSA_PKCS_PSS, PssParams(mech, mgf, pad.salt)), info.data
        if info.padding_type == CARD_PADDING_NONE:
            return Mechanism(C.CKM_RSA_X_509), info.data
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"dwPaddingType 0x{info.padding_type:x}")
    if info.signing_flags & CRYPT_NOHASHOID or info.hash_alg in (0, CALG_SSL3_SHAMD5):
        return Mechanism(C.CKM_RSA_PKCS), info.data
    return Mechanism(C.CKM_RSA_PKCS), _digest_info(info.hash_alg, info.data)


def sign_data(ctx: CardContext, info: SigningInfo) -> bytes:
    """CardSignData: fills info.signed_data and info.cb_signed_data (only the length with
    CARD_BUFFER_SIZE_ONLY) and returns the signature."""
    if info.version not in (CARD_SIGNING_INFO_BASIC_VERSION, CARD_SIGNING_INFO_CURRENT_VERSION):
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_SIGNING_INFO version {info.version}")
    if info.version == CARD_SIGNING_INFO_BASIC_VERSION and info.signing_flags & CARD_PADDING_INFO_PRESENT:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "padding info needs CARD_SIGNING_INFO version 2")
    c = K.container(ctx, info.container_index)
    if c.key_type == C.CKK_RSA:
        if info.key_spec not in (K.AT_KEYEXCHANGE, K.AT_SIGNATURE) or (info.key_spec == K.AT_SIGNATURE) != bool(
            c.sig_bits
        ):
            raise E.MinidriverError(
                E.SCARD_E_INVALID_PARAMETER, f"container {c.index} has no key of spec {info.key_spec}"
            )
        mechanism, payload = _rsa_mechanism(info)
        size = c.bits // 8
    else:
        if info.key_spec != K.AT_ECDSA.get(c.bits) or not c.sig_bits:
            raise E.MinidriverError(
                E.SCARD_E_INVALID_PARAMETER, f"container {c.index} has no key of spec {info.key_spec}"
            )
        mechanism, payload = Mechanism(C.CKM_ECDSA), info.data
        size = 2 * ((c.bits + 7) // 8)
    info.cb_signed_data = size
    if info.signing_flags & CARD_BUFFER_SIZE_ONLY:
        info.signed_data = b""
        return b""
    try:
        signature = service.sign(ctx.engine, ctx.card, c.key_id, mechanism, payload)
    except CKRError as exc:
        raise _refused(ctx, exc) from None
    info.signed_data = signature[::-1] if c.key_type == C.CKK_RSA else signature
    info.cb_signed_data = len(info.signed_data)
    return info.signed_data


def rsa_decrypt(ctx: CardContext, info: RsaDecryptInfo) -> bytes:
    """CardRSADecrypt: version 1 (and version 2 with CARD_PADDING_NONE) gives the raw RSA result for the CSP to
    unpad; version 2 removes PKCS#1 v1.5 or OAEP padding on the card. Buffers are little-endian."""
    if info.version not in (CARD_RSA_KEY_DECRYPT_INFO_VERSION_ONE, CARD_RSA_KEY_DECRYPT_INFO_VERSION_TWO):
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_RSA_DECRYPT_INFO version {info.version}")
    c = K.container(ctx, info.container_index)
    if c.key_type != C.CKK_RSA or info.key_spec != K.AT_KEYEXCHANGE or not c.keyex_bits:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"container {c.index} has no key exchange RSA key")
    if len(info.data) != c.bits // 8:
        raise E.MinidriverError(E.SCARD_E_INSUFFICIENT_BUFFER, "the buffer is not the modulus' length")
    padding = info.padding_type if info.version == CARD_RSA_KEY_DECRYPT_INFO_VERSION_TWO else CARD_PADDING_NONE
    if padding == CARD_PADDING_NONE:
        mechanism = Mechanism(C.CKM_RSA_X_509)
    elif padding == CARD_PADDING_PKCS1:
        mechanism = Mechanism(C.CKM_RSA_PKCS)
    elif padding == CARD_PADDING_OAEP:
        pad = info.padding_info or PaddingInfo()
        _, _, mech, mgf = _hash(_named_hash(pad.alg_id or "SHA1"))
        if mgf is None:
            raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, "OAEP with MD5")
        mechanism = Mechanism(C.CKM_RSA_PKCS_OAEP, OaepParams(mech, mgf, C.CKZ_DATA_SPECIFIED, pad.label))
    else:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"dwPaddingType 0x{padding:x}")
    try:
        plain = service.decrypt(ctx.engine, ctx.card, c.key_id, mechanism, info.data[::-1])
    except CKRError as exc:
        raise _refused(ctx, exc) from None
    if mechanism.type == C.CKM_RSA_X_509:
        plain = plain.rjust(c.bits // 8, b"\0")
    info.data = plain[::-1]
    return info.data
