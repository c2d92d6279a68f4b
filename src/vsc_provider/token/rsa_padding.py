"""RSA paddings from their mechanism parameters: PSS (CK_RSA_PKCS_PSS_PARAMS) and OAEP (CK_RSA_PKCS_OAEP_PARAMS),
checked against what `cryptography` offers."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism, OaepParams, PssParams
from vsc_provider.token.operation import DIGESTS, HashFactory, param_invalid

MGF_HASHES: dict[int, HashFactory] = {
    C.CKG_MGF1_SHA1: hashes.SHA1,
    C.CKG_MGF1_SHA224: hashes.SHA224,
    C.CKG_MGF1_SHA256: hashes.SHA256,
    C.CKG_MGF1_SHA384: hashes.SHA384,
    C.CKG_MGF1_SHA512: hashes.SHA512,
}


def pss(mech: Mechanism, hash_mech: int | None, key_bits: int) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    """The PSS padding and its hash; `hash_mech` is the combined mechanism's own hash, which the parameter
    must name too."""
    p = mech.param
    if not isinstance(p, PssParams):
        raise param_invalid("PSS needs CK_RSA_PKCS_PSS_PARAMS")
    if hash_mech is not None and p.hash_alg != hash_mech:
        raise param_invalid("PSS parameter hash differs from the mechanism's hash")
    if p.hash_alg not in DIGESTS or p.mgf not in MGF_HASHES:
        raise param_invalid("unsupported PSS hash or MGF")
    algorithm = DIGESTS[p.hash_alg]()
    # RFC 8017 9.1.1: emLen >= hLen + sLen + 2, with emLen = ceil((modBits - 1) / 8).
    if p.salt_len > (key_bits + 6) // 8 - algorithm.digest_size - 2:
        raise param_invalid("PSS salt too long for this key and hash")
    return padding.PSS(mgf=padding.MGF1(MGF_HASHES[p.mgf]()), salt_length=p.salt_len), algorithm


_OAEP_HASHES = frozenset({C.CKM_SHA_1, C.CKM_SHA224, C.CKM_SHA256, C.CKM_SHA384, C.CKM_SHA512})


def oaep(mech: Mechanism) -> padding.OAEP:
    p = mech.param
    if not isinstance(p, OaepParams):
        raise param_invalid("OAEP needs CK_RSA_PKCS_OAEP_PARAMS")
    # OpenSSL's OAEP takes SHA-1 and SHA-2 only: a SHA-3 hash raised UnsupportedAlgorithm (CKR_GENERAL_ERROR).
    if p.hash_alg not in _OAEP_HASHES or p.mgf not in MGF_HASHES:
        raise param_invalid("unsupported OAEP hash or MGF")
    if p.source not in (0, C.CKZ_DATA_SPECIFIED):
        raise param_invalid("unsupported OAEP source")
    return padding.OAEP(mgf=padding.MGF1(MGF_HASHES[p.mgf]()), algorithm=DIGESTS[p.hash_alg](), label=p.label or None)
