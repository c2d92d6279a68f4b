"""CardConstructDHAgreement, CardDeriveKey and CardDestroyDHAgreement for an ECDH container: the shared secret
comes from the card service (CKM_ECDH1_DERIVE's rules) and stays in the context; the KDFs BCrypt names
(HASH, HMAC, TRUNCATE) run with `cryptography` over it."""

from __future__ import annotations

from dataclasses import dataclass, field

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.minidriver import containers as K
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import layouts as L
from vsc_provider.minidriver.context import CardContext
from vsc_provider.token import service

CARD_DH_AGREEMENT_INFO_VERSION = 2
CARD_DERIVE_KEY_VERSION = 1
CARD_DERIVE_KEY_VERSION_TWO = 2
CARD_BUFFER_SIZE_ONLY = 0x20000000
# BCryptBufferDesc parameter types (bcrypt.h KDF_*)
KDF_HASH_ALGORITHM = 0
KDF_SECRET_PREPEND = 1
KDF_SECRET_APPEND = 2
KDF_HMAC_KEY = 3
MAX_AGREEMENTS = 256


@dataclass
class DhAgreementInfo:
    """CARD_DH_AGREEMENT_INFO: the peer's BCRYPT_ECCKEY_BLOB in, bSecretAgreementIndex out."""

    version: int
    container_index: int
    flags: int
    public_key: bytes
    secret_agreement_index: int = 0


@dataclass
class DeriveKeyInfo:
    """CARD_DERIVE_KEY: the KDF name (pwszKDF), the agreement, the KDF's parameter list, the derived key out."""

    version: int
    flags: int
    kdf: str
    secret_agreement_index: int
    parameters: list[tuple[int, bytes | str]] = field(default_factory=list)
    derived_key: bytes = b""
    cb_derived_key: int = 0


def construct_dh_agreement(ctx: CardContext, info: DhAgreementInfo) -> int:
    """The agreement of the container's ECDH key with the peer's public key; its index in the context."""
    if info.version != CARD_DH_AGREEMENT_INFO_VERSION:
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_DH_AGREEMENT_INFO version {info.version}")
    if info.flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    c = K.container(ctx, info.container_index)
    if c.key_type != C.CKK_EC or not c.keyex_bits:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"container {c.index} has no ECDH key")
    try:
        magic, x, y, _ = L.parse_ecc_blob(info.public_key)
    except ValueError as exc:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, str(exc)) from None
    if magic != L.ECDH_PUBLIC_MAGIC[c.bits]:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "the peer key is not an ECDH key of this curve")
    try:
        secret = service.ecdh_secret(ctx.engine, ctx.card, c.key_id, b"\x04" + x + y)
    except CKRError as exc:
        raise E.from_ckr(exc) from None
    free = [i for i in range(MAX_AGREEMENTS) if i not in ctx.agreements]
    if not free:
        raise E.MinidriverError(E.SCARD_E_WRITE_TOO_MANY, "destroy an agreement first")
    ctx.agreements[free[0]] = secret
    info.secret_agreement_index = free[0]
    return free[0]


def _params(info: DeriveKeyInfo) -> dict[int, bytes | str]:
    out: dict[int, bytes | str] = {}
    for kind, value in info.parameters:
        if kind not in (KDF_HASH_ALGORITHM, KDF_SECRET_PREPEND, KDF_SECRET_APPEND, KDF_HMAC_KEY):
            raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"KDF parameter {kind}")
        out[kind] = value
    return out


def derive_key(ctx: CardContext, info: DeriveKeyInfo) -> bytes:
    """CardDeriveKey: HASH is H(prepend || Z || append), HMAC is HMAC_key(prepend || Z || append) (Z the key
    when no key is given), TRUNCATE the raw secret little-endian, as BCryptDeriveKey gives them."""
    if info.version not in (CARD_DERIVE_KEY_VERSION, CARD_DERIVE_KEY_VERSION_TWO):
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_DERIVE_KEY version {info.version}")
    secret = ctx.agreements.get(info.secret_agreement_index)
    if secret is None:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"no agreement {info.secret_agreement_index}")
    from cryptography.hazmat.primitives import hashes, hmac

    params = _params(info)
    name = str(params.get(KDF_HASH_ALGORITHM, "SHA1"))
    algorithms: dict[str, hashes.HashAlgorithm] = {
        "SHA1": hashes.SHA1(),  # noqa: S303 - BCrypt's default KDF hash, the CSP names it
        "SHA256": hashes.SHA256(),
        "SHA384": hashes.SHA384(),
        "SHA512": hashes.SHA512(),
    }
    if name not in algorithms:
        raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, f"KDF hash {name!r}")
    body = bytes(params.get(KDF_SECRET_PREPEND, b"")) + secret + bytes(params.get(KDF_SECRET_APPEND, b""))  # type: ignore[arg-type]
    if info.kdf == "HASH":
        h = hashes.Hash(algorithms[name])
        h.update(body)
        key = h.finalize()
    elif info.kdf == "HMAC":
        mac = hmac.HMAC(bytes(params.get(KDF_HMAC_KEY, secret)), algorithms[name])  # type: ignore[arg-type]
        mac.update(body)
        key = mac.finalize()
    elif info.kdf == "TRUNCATE":
        key = secret[::-1]
    else:
        raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, f"KDF {info.kdf!r}")
    info.cb_derived_key = len(key)
    info.derived_key = b"" if info.flags & CARD_BUFFER_SIZE_ONLY else key
    return info.derived_key


def destroy_dh_agreement(ctx: CardContext, index: int, flags: int = 0) -> None:
    """CardDestroyDHAgreement."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    if ctx.agreements.pop(index, None) is None:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"no agreement {index}")
