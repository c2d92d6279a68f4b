"""The specification's byte layouts (cardmod.h, wincrypt.h, bcrypt.h), little-endian as Windows lays them out:
the card files (cardcf, cmapfile records), the public-key blobs of CONTAINER_INFO, and the fixed-size
structures properties answer with. Plain `struct` packing: these are Windows structures, not cryptography.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# cardmod.h versions and constants
CARD_CACHE_FILE_CURRENT_VERSION = 1
CARD_CAPABILITIES_CURRENT_VERSION = 1
CARD_FREE_SPACE_INFO_CURRENT_VERSION = 1
CARD_KEY_SIZES_CURRENT_VERSION = 1
CARD_FILE_INFO_CURRENT_VERSION = 1
CONTAINER_INFO_CURRENT_VERSION = 1
PIN_INFO_CURRENT_VERSION = 6
PIN_CACHE_POLICY_CURRENT_VERSION = 6
CARD_DATA_VALUE_UNKNOWN = 0xFFFFFFFF
MAX_CONTAINER_NAME_LEN = 39
CONTAINER_MAP_VALID_CONTAINER = 1
CONTAINER_MAP_DEFAULT_CONTAINER = 2

# CARD_FILE_ACCESS_CONDITION
EVERYONE_READ_USER_WRITE_AC = 1
USER_WRITE_EXECUTE_AC = 2
EVERYONE_READ_ADMIN_WRITE_AC = 3
UNKNOWN_AC = 4
USER_READ_WRITE_AC = 5
ADMIN_READ_WRITE_AC = 6

# SECRET_TYPE, SECRET_PURPOSE, PIN_CACHE_POLICY_TYPE
ALPHANUMERIC_PIN_TYPE = 0
CHALLENGE_RESPONSE_PIN_TYPE = 2
AUTHENTICATION_PIN = 0
ADMINISTRATOR_PIN = 4
PIN_CACHE_NORMAL = 0

# wincrypt.h blob types and algorithm ids; bcrypt.h ECC blob magics
PUBLICKEYBLOB = 0x06
PRIVATEKEYBLOB = 0x07
CUR_BLOB_VERSION = 0x02
CALG_RSA_SIGN = 0x00002400
CALG_RSA_KEYX = 0x0000A400
RSA1_MAGIC = 0x31415352  # "RSA1": public key
RSA2_MAGIC = 0x32415352  # "RSA2": private key
ECDH_PUBLIC_MAGIC = {256: 0x314B4345, 384: 0x334B4345, 521: 0x354B4345}
ECDH_PRIVATE_MAGIC = {256: 0x324B4345, 384: 0x344B4345, 521: 0x364B4345}
ECDSA_PUBLIC_MAGIC = {256: 0x31534345, 384: 0x33534345, 521: 0x35534345}
ECDSA_PRIVATE_MAGIC = {256: 0x32534345, 384: 0x34534345, 521: 0x36534345}

CARD_CACHE_FILE = struct.Struct("<BBHH")  # bVersion, bPinsFreshness, wContainersFreshness, wFilesFreshness
CONTAINER_MAP_RECORD = struct.Struct(f"<{2 * (MAX_CONTAINER_NAME_LEN + 1)}sBBHH")  # 86 bytes
BLOBHEADER = struct.Struct("<BBHI")  # bType, bVersion, reserved, aiKeyAlg
RSAPUBKEY = struct.Struct("<III")  # magic, bitlen, pubexp
BCRYPT_ECCKEY_BLOB = struct.Struct("<II")  # dwMagic, cbKey
PIN_INFO = struct.Struct("<9I")  # version, type, purpose, change and unblock PIN_SETs, cache policy (3), flags
CARD_CAPABILITIES = struct.Struct("<III")  # dwVersion, fCertificateCompression, fKeyGen
CARD_FREE_SPACE_INFO = struct.Struct("<IIII")  # version, bytes, containers available, max containers
CARD_KEY_SIZES = struct.Struct("<IIIII")  # version, minimum, default, maximum, incremental bit length
CARD_FILE_INFO = struct.Struct("<III")  # version, cbFileSize, AccessCondition


class CacheFile(NamedTuple):
    """CARD_CACHE_FILE_FORMAT: the freshness counters a CSP compares with its cached copies."""

    version: int
    pins: int
    containers: int
    files: int

    def pack(self) -> bytes:
        return CARD_CACHE_FILE.pack(self.version, self.pins & 0xFF, self.containers & 0xFFFF, self.files & 0xFFFF)

    @classmethod
    def unpack(cls, raw: bytes) -> CacheFile:
        return cls(*CARD_CACHE_FILE.unpack(raw))


class ContainerMapRecord(NamedTuple):
    """CONTAINER_MAP_RECORD: one record of mscp/cmapfile (its position is the container index)."""

    guid: str
    flags: int
    sig_key_bits: int
    keyex_key_bits: int

    def pack(self) -> bytes:
        name = self.guid.encode("utf-16-le")
        if len(name) > 2 * MAX_CONTAINER_NAME_LEN:
            raise ValueError("a container name has at most 39 characters")
        return CONTAINER_MAP_RECORD.pack(name, self.flags, 0, self.sig_key_bits, self.keyex_key_bits)

    @classmethod
    def unpack(cls, raw: bytes) -> ContainerMapRecord:
        name, flags, _reserved, sig, keyex = CONTAINER_MAP_RECORD.unpack(raw)
        text = name.decode("utf-16-le", errors="replace").split("\0", 1)[0]
        return cls(text, flags, sig, keyex)


def pack_cmapfile(records: list[ContainerMapRecord]) -> bytes:
    return b"".join(r.pack() for r in records)


def unpack_cmapfile(raw: bytes) -> list[ContainerMapRecord]:
    size = CONTAINER_MAP_RECORD.size
    if len(raw) % size:
        raise ValueError(f"cmapfile is a whole number of {size}-byte records")
    return [ContainerMapRecord.unpack(raw[i : i + size]) for i in range(0, len(raw), size)]


class ContainerInfo(NamedTuple):
    """CONTAINER_INFO's content: its version and the two public-key blobs (b"" where the container has none)."""

    version: int
    sig_public_key: bytes
    keyex_public_key: bytes


def rsa_public_blob(modulus: int, exponent: int, bits: int, alg_id: int) -> bytes:
    """PUBLICKEYBLOB: BLOBHEADER, RSAPUBKEY, then the modulus little-endian in bits/8 bytes."""
    return (
        BLOBHEADER.pack(PUBLICKEYBLOB, CUR_BLOB_VERSION, 0, alg_id)
        + RSAPUBKEY.pack(RSA1_MAGIC, bits, exponent)
        + modulus.to_bytes((bits + 7) // 8, "little")
    )


def parse_rsa_public_blob(blob: bytes) -> tuple[int, int, int, int]:
    """(aiKeyAlg, bit length, modulus, exponent) of a PUBLICKEYBLOB."""
    kind, version, _reserved, alg = BLOBHEADER.unpack_from(blob, 0)
    magic, bits, exponent = RSAPUBKEY.unpack_from(blob, BLOBHEADER.size)
    if kind != PUBLICKEYBLOB or version != CUR_BLOB_VERSION or magic != RSA1_MAGIC:
        raise ValueError("not an RSA PUBLICKEYBLOB")
    start = BLOBHEADER.size + RSAPUBKEY.size
    modulus = blob[start : start + (bits + 7) // 8]
    return alg, bits, int.from_bytes(modulus, "little"), exponent


class RsaPrivateFields(NamedTuple):
    bits: int
    e: int
    n: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int
    d: int


def parse_rsa_private_blob(blob: bytes) -> RsaPrivateFields:
    """PRIVATEKEYBLOB (BLOBHEADER, RSAPUBKEY "RSA2", then modulus, prime1, prime2, exponent1, exponent2,
    coefficient, privateExponent, each little-endian) as its integers."""
    if len(blob) < BLOBHEADER.size + RSAPUBKEY.size:
        raise ValueError("PRIVATEKEYBLOB too short")
    kind, version, _reserved, _alg = BLOBHEADER.unpack_from(blob, 0)
    magic, bits, exponent = RSAPUBKEY.unpack_from(blob, BLOBHEADER.size)
    if kind != PRIVATEKEYBLOB or version != CUR_BLOB_VERSION or magic != RSA2_MAGIC or bits % 16:
        raise ValueError("not an RSA PRIVATEKEYBLOB")
    full, half = bits // 8, bits // 16
    sizes = (full, half, half, half, half, half, full)
    at = BLOBHEADER.size + RSAPUBKEY.size
    if len(blob) != at + sum(sizes):
        raise ValueError("PRIVATEKEYBLOB length does not fit its bit length")
    values = []
    for size in sizes:
        values.append(int.from_bytes(blob[at : at + size], "little"))
        at += size
    n, p, q, dp, dq, qinv, d = values
    return RsaPrivateFields(bits, exponent, n, p, q, dp, dq, qinv, d)


def private_blob_length(head: bytes, rsa: bool) -> int:
    """The whole length of an import blob from its first 20 bytes (an RSA PRIVATEKEYBLOB's headers) or 8 bytes
    (a BCRYPT_ECCKEY_BLOB): CardCreateContainer passes the blob without its length."""
    if rsa:
        bits = RSAPUBKEY.unpack_from(head, BLOBHEADER.size)[1]
        return BLOBHEADER.size + RSAPUBKEY.size + 2 * (bits // 8) + 5 * (bits // 16)
    return BCRYPT_ECCKEY_BLOB.size + 3 * BCRYPT_ECCKEY_BLOB.unpack_from(head, 0)[1]


def rsa_private_blob(f: RsaPrivateFields, alg_id: int) -> bytes:
    """The PRIVATEKEYBLOB of these integers (what a CSP hands CardCreateContainer to import a key)."""
    full, half = f.bits // 8, f.bits // 16
    parts = [(f.n, full), (f.p, half), (f.q, half), (f.dp, half), (f.dq, half), (f.qinv, half), (f.d, full)]
    return (
        BLOBHEADER.pack(PRIVATEKEYBLOB, CUR_BLOB_VERSION, 0, alg_id)
        + RSAPUBKEY.pack(RSA2_MAGIC, f.bits, f.e)
        + b"".join(v.to_bytes(size, "little") for v, size in parts)
    )


def ecc_public_blob(magic: int, x: int, y: int, key_bytes: int) -> bytes:
    """BCRYPT_ECCKEY_BLOB, then X and Y big-endian in cbKey bytes each."""
    return BCRYPT_ECCKEY_BLOB.pack(magic, key_bytes) + x.to_bytes(key_bytes, "big") + y.to_bytes(key_bytes, "big")


def parse_ecc_blob(blob: bytes, private: bool = False) -> tuple[int, bytes, bytes, bytes]:
    """(dwMagic, X, Y, d or b"") of a BCRYPT_ECCKEY_BLOB (public) or its private form."""
    if len(blob) < BCRYPT_ECCKEY_BLOB.size:
        raise ValueError("ECC key blob too short")
    magic, size = BCRYPT_ECCKEY_BLOB.unpack_from(blob, 0)
    parts = 3 if private else 2
    if len(blob) != BCRYPT_ECCKEY_BLOB.size + parts * size:
        raise ValueError("ECC key blob length does not fit cbKey")
    body = blob[BCRYPT_ECCKEY_BLOB.size :]
    return magic, body[:size], body[size : 2 * size], body[2 * size :] if private else b""


def pin_set(*roles: int) -> int:
    """CREATE_PIN_SET for each role, together."""
    out = 0
    for role in roles:
        out |= 1 << role
    return out


def pin_info(pin_type: int, purpose: int, change: int, unblock: int, flags: int = 0) -> bytes:
    """PIN_INFO (version 6) with a normal PIN cache policy."""
    return PIN_INFO.pack(
        PIN_INFO_CURRENT_VERSION,
        pin_type,
        purpose,
        change,
        unblock,
        PIN_CACHE_POLICY_CURRENT_VERSION,
        PIN_CACHE_NORMAL,
        0,
        flags,
    )


def card_capabilities(certificate_compression: bool, key_gen: bool) -> bytes:
    return CARD_CAPABILITIES.pack(CARD_CAPABILITIES_CURRENT_VERSION, int(certificate_compression), int(key_gen))


def free_space_info(bytes_available: int, containers_available: int, max_containers: int) -> bytes:
    return CARD_FREE_SPACE_INFO.pack(
        CARD_FREE_SPACE_INFO_CURRENT_VERSION, bytes_available, containers_available, max_containers
    )


def key_sizes(minimum: int, default: int, maximum: int, increment: int) -> bytes:
    return CARD_KEY_SIZES.pack(CARD_KEY_SIZES_CURRENT_VERSION, minimum, default, maximum, increment)


def file_info(size: int, access: int) -> bytes:
    return CARD_FILE_INFO.pack(CARD_FILE_INFO_CURRENT_VERSION, size, access)
