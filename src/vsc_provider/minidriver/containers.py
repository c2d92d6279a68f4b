"""Key containers: every RSA or NIST-curve key pair on the card is a container, whatever front end made it.

The container index is the key pair's position among the card's public keys in store order (object ids only
grow), so PKCS#11 and the card edge see one list and a CSP re-reads it when cardcf says containers changed.
A container's name (the cmapfile GUID) and the key pair's CKA_ID are tied: a container made here gets the
GUID's 16 bytes as CKA_ID and its name as CKA_LABEL; a key pair made elsewhere is named after its CKA_ID.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import layouts as L
from vsc_provider.minidriver.context import CardContext
from vsc_provider.token import curves, ec_params, service
from vsc_provider.token.engine import Card
from vsc_provider.token.objects import TokenObject

AT_KEYEXCHANGE = 1
AT_SIGNATURE = 2
AT_ECDSA = {256: 3, 384: 4, 521: 5}
AT_ECDHE = {256: 6, 384: 7, 521: 8}
CARD_CREATE_CONTAINER_KEY_GEN = 1
CARD_CREATE_CONTAINER_KEY_IMPORT = 2
MAX_CONTAINERS = 255  # bContainerIndex is a BYTE
EC_BITS = {curves.P256: 256, curves.P384: 384, curves.P521: 521}
_NAMES = uuid.UUID("6f1e2c52-3d0b-4b7e-9a55-76a7c0a1d2e3")  # namespace of names derived from other CKA_IDs


@dataclass(frozen=True)
class Container:
    index: int
    name: str
    key_id: bytes
    key_type: int  # CKK_RSA or CKK_EC
    bits: int
    sig_bits: int  # wSigKeySizeBits: the key signs as AT_SIGNATURE / AT_ECDSA_*
    keyex_bits: int  # wKeyExchangeKeySizeBits: the key decrypts (AT_KEYEXCHANGE) or agrees (AT_ECDHE_*)
    public: TokenObject


def key_id_for_name(name: str) -> bytes:
    """The CKA_ID of a container name: a GUID's 16 bytes in text order, any other name's UTF-8."""
    try:
        return uuid.UUID(name.strip("{}")).bytes
    except ValueError:
        return name.encode()


def name_for(key_id: bytes, label: str) -> str:
    """A key pair's container name: its label when that names its CKA_ID (a container made here), else a
    GUID of its CKA_ID (the id itself when it has 16 bytes)."""
    if label and len(label) <= L.MAX_CONTAINER_NAME_LEN and key_id_for_name(label) == key_id:
        return label
    if len(key_id) == 16:
        return "{" + str(uuid.UUID(bytes=key_id)) + "}"
    return "{" + str(uuid.uuid5(_NAMES, key_id.hex())) + "}"


def _describe(index: int, pub: TokenObject) -> Container | None:
    key_type = pub.ulong(C.CKA_KEY_TYPE)
    key_id = pub.attrs.get(C.CKA_ID, b"")
    label = str(A.decode(C.CKA_LABEL, pub.attrs.get(C.CKA_LABEL, b"")))
    if key_type == C.CKK_RSA:
        bits = pub.ulong(C.CKA_MODULUS_BITS) or 8 * len(pub.attrs.get(C.CKA_MODULUS, b""))
        can_decrypt = pub.bool(C.CKA_ENCRYPT)
        return Container(
            index,
            name_for(key_id, label),
            key_id,
            C.CKK_RSA,
            bits,
            0 if can_decrypt else bits,
            bits if can_decrypt else 0,
            pub,
        )
    if key_type == C.CKK_EC:
        try:
            bits = EC_BITS.get(ec_params.curve_from_params(pub.attrs.get(C.CKA_EC_PARAMS, b"")), 0)
        except CKRError:
            bits = 0
        if not bits:
            return None
        sig = bits if pub.bool(C.CKA_VERIFY) else 0
        keyex = bits if pub.bool(C.CKA_DERIVE) else 0
        return Container(index, name_for(key_id, label), key_id, C.CKK_EC, bits, sig, keyex, pub)
    return None


def _candidates(card: Card) -> list[TokenObject]:
    return sorted(
        (o for o in list(card.objects.values()) if o.klass == C.CKO_PUBLIC_KEY and card.visible(o)),
        key=lambda o: o.handle,
    )


def containers(ctx: CardContext) -> list[Container]:
    """The card's containers in index order."""
    out: list[Container] = []
    for pub in _candidates(ctx.fresh()):
        found = _describe(len(out), pub)
        if found is not None:
            out.append(found)
    return out[:MAX_CONTAINERS]


def container(ctx: CardContext, index: int) -> Container:
    found = containers(ctx)
    if not 0 <= index < len(found):
        raise E.MinidriverError(E.SCARD_E_NO_KEY_CONTAINER, f"no container {index}")
    return found[index]


def cmap_records(ctx: CardContext) -> list[L.ContainerMapRecord]:
    """mscp/cmapfile: one valid record per container, the first one the default container."""
    records = []
    for c in containers(ctx):
        flags = L.CONTAINER_MAP_VALID_CONTAINER | (L.CONTAINER_MAP_DEFAULT_CONTAINER if c.index == 0 else 0)
        records.append(L.ContainerMapRecord(c.name, flags, c.sig_bits, c.keyex_bits))
    return records


def write_cmapfile(ctx: CardContext, raw: bytes) -> None:
    """A CSP's cmapfile write: records past the last container name the containers it is about to create
    (CardCreateContainer takes the name from here); records of existing containers keep the card's names."""
    try:
        records = L.unpack_cmapfile(raw)
    except ValueError as exc:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, str(exc)) from None
    count = len(containers(ctx))
    for index, rec in enumerate(records):
        if index >= count and rec.flags & L.CONTAINER_MAP_VALID_CONTAINER and rec.guid:
            ctx.pending_names[index] = rec.guid


def public_blobs(c: Container) -> L.ContainerInfo:
    """CONTAINER_INFO's blobs: PUBLICKEYBLOB for RSA, BCRYPT_ECCKEY_BLOB (ECDSA / ECDH magic) for EC."""
    pub = c.public
    if c.key_type == C.CKK_RSA:
        n = int.from_bytes(pub.attrs[C.CKA_MODULUS], "big")
        e = int.from_bytes(pub.attrs[C.CKA_PUBLIC_EXPONENT], "big")
        alg = L.CALG_RSA_KEYX if c.keyex_bits else L.CALG_RSA_SIGN
        blob = L.rsa_public_blob(n, e, c.bits, alg)
        return L.ContainerInfo(
            L.CONTAINER_INFO_CURRENT_VERSION, b"" if c.keyex_bits else blob, blob if c.keyex_bits else b""
        )
    point = ec_params.unwrap_octet_string(pub.attrs[C.CKA_EC_POINT])
    size = (c.bits + 7) // 8
    x, y = int.from_bytes(point[1 : 1 + size], "big"), int.from_bytes(point[1 + size :], "big")
    sig = L.ecc_public_blob(L.ECDSA_PUBLIC_MAGIC[c.bits], x, y, size) if c.sig_bits else b""
    keyex = L.ecc_public_blob(L.ECDH_PUBLIC_MAGIC[c.bits], x, y, size) if c.keyex_bits else b""
    return L.ContainerInfo(L.CONTAINER_INFO_CURRENT_VERSION, sig, keyex)


def get_container_info(ctx: CardContext, index: int, flags: int = 0, version: int = 1) -> L.ContainerInfo:
    """CardGetContainerInfo."""
    if flags:
        raise E.MinidriverError(E.NTE_BAD_FLAGS, "dwFlags must be 0")
    if version > L.CONTAINER_INFO_CURRENT_VERSION:
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CONTAINER_INFO version {version}")
    return public_blobs(container(ctx, index))


def _kind(key_spec: int, key_size: int) -> str:
    if key_spec in (AT_KEYEXCHANGE, AT_SIGNATURE):
        size = key_size or 2048
        if size not in (2048, 3072, 4096):
            raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, f"RSA keys of {size} bits are not made here")
        return f"rsa{size}"
    for table in (AT_ECDSA, AT_ECDHE):
        for bits, spec in table.items():
            if spec == key_spec and bits in (256, 384):
                return f"p{bits}"
    raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, f"key spec {key_spec} is not supported")


def _import_key(key_spec: int, blob: bytes) -> Any:
    """A `cryptography` private key from the blob CardCreateContainer imports (PRIVATEKEYBLOB for RSA,
    BCRYPT_ECCPRIVATE_BLOB for EC)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        if key_spec in (AT_KEYEXCHANGE, AT_SIGNATURE):
            f = L.parse_rsa_private_blob(blob)
            public = rsa.RSAPublicNumbers(f.e, f.n)
            return rsa.RSAPrivateNumbers(f.p, f.q, f.d, f.dp, f.dq, f.qinv, public).private_key()
        magic, _x, _y, d = L.parse_ecc_blob(blob, private=True)
        bits = {**{v: k for k, v in L.ECDSA_PRIVATE_MAGIC.items()}, **{v: k for k, v in L.ECDH_PRIVATE_MAGIC.items()}}
        curve = {256: ec.SECP256R1(), 384: ec.SECP384R1()}.get(bits.get(magic, 0))
        if curve is None:
            raise ValueError("unsupported ECC private blob")
        return ec.derive_private_key(int.from_bytes(d, "big"), curve)
    except ValueError as exc:
        raise E.MinidriverError(E.NTE_BAD_DATA, f"key blob: {exc}") from None


def _restrict(ctx: CardContext, key_id: bytes, key_spec: int) -> None:
    """What a container's key spec leaves out of the PKCS#11 key pair it is (a signature key does not decrypt,
    an ECDSA key does not derive, an ECDH key does not sign)."""
    card = ctx.card
    pub_off: tuple[int, ...]
    priv_off: tuple[int, ...]
    if key_spec == AT_SIGNATURE:
        pub_off, priv_off = (C.CKA_ENCRYPT, C.CKA_WRAP), (C.CKA_DECRYPT, C.CKA_UNWRAP)
    elif key_spec in AT_ECDSA.values():
        pub_off, priv_off = (C.CKA_DERIVE,), (C.CKA_DERIVE,)
    elif key_spec in AT_ECDHE.values():
        pub_off, priv_off = (C.CKA_VERIFY,), (C.CKA_SIGN,)
    else:
        return
    for obj in service.with_key_id(card, key_id):
        off = pub_off if obj.klass == C.CKO_PUBLIC_KEY else priv_off
        ctx.engine.update_attrs(card, obj, A.make(dict.fromkeys(off, False)))


def create_container(
    ctx: CardContext, index: int, flags: int, key_spec: int, key_size: int, key_data: bytes | None = None
) -> Container:
    """CardCreateContainer(Ex): generate (CARD_CREATE_CONTAINER_KEY_GEN) or import (KEY_IMPORT) the key pair of
    the next container, named as the CSP's cmapfile write said (else a new GUID). The user must be logged in."""
    if flags not in (CARD_CREATE_CONTAINER_KEY_GEN, CARD_CREATE_CONTAINER_KEY_IMPORT):
        raise E.MinidriverError(E.NTE_BAD_FLAGS, f"dwFlags 0x{flags:x}")
    count = len(containers(ctx))
    if index < count:
        raise E.MinidriverError(E.NTE_EXISTS, f"container {index} exists: delete it first")
    if index != count or index >= MAX_CONTAINERS:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"the next container is {count}")
    card = ctx.card
    if not card.user:
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, "authenticate the user first")
    name = ctx.pending_names.pop(index, None) or "{" + str(uuid.uuid4()) + "}"
    key_id = key_id_for_name(name)
    try:
        if flags == CARD_CREATE_CONTAINER_KEY_GEN:
            service.generate(ctx.engine, card, _kind(key_spec, key_size), key_id, name)
        else:
            if key_data is None:
                raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "KEY_IMPORT needs the key blob")
            service.import_private_key(ctx.engine, card, _import_key(key_spec, key_data), key_id, name)
        _restrict(ctx, key_id, key_spec)
    except CKRError as exc:
        raise E.from_ckr(exc) from None
    return container(ctx, index)


def delete_container(ctx: CardContext, index: int, reserved: int = 0) -> None:
    """CardDeleteContainer: the key pair and its certificate go (later containers move down one index)."""
    if reserved:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwReserved must be 0")
    c = container(ctx, index)
    card = ctx.card
    if not card.user:
        raise E.MinidriverError(E.SCARD_W_SECURITY_VIOLATION, "authenticate the user first")
    try:
        service.destroy_key_id(ctx.engine, card, c.key_id)
    except CKRError as exc:
        raise E.from_ckr(exc) from None
