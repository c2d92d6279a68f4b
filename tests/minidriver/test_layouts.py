"""The specification's structures byte for byte: sizes, field offsets and values as cardmod.h, wincrypt.h and
bcrypt.h lay them out (little-endian DWORDs and WORDs, UTF-16 container names, big-endian ECC coordinates)."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vsc_provider.minidriver import layouts as L


def test_card_cache_file_is_six_bytes_version_pins_containers_files() -> None:
    raw = L.CacheFile(1, 0x12, 0x3456, 0x789A).pack()
    assert raw == bytes([0x01, 0x12, 0x56, 0x34, 0x9A, 0x78])
    assert L.CacheFile.unpack(raw) == (1, 0x12, 0x3456, 0x789A)


def test_container_map_record_is_86_bytes_with_the_guid_in_utf16() -> None:
    guid = "{0A1B2C3D-0000-4000-8000-00000000ABCD}"
    raw = L.ContainerMapRecord(
        guid, L.CONTAINER_MAP_VALID_CONTAINER | L.CONTAINER_MAP_DEFAULT_CONTAINER, 0, 2048
    ).pack()
    assert len(raw) == 86
    assert raw[: 2 * len(guid)] == guid.encode("utf-16-le") and raw[2 * len(guid) : 80] == bytes(80 - 2 * len(guid))
    assert raw[80] == 3 and raw[81] == 0  # bFlags, bReserved
    assert raw[82:84] == b"\x00\x00" and raw[84:86] == (2048).to_bytes(2, "little")  # wSig..., wKeyExchange...
    assert L.unpack_cmapfile(raw + raw) == [L.ContainerMapRecord.unpack(raw)] * 2
    with pytest.raises(ValueError):
        L.unpack_cmapfile(raw[:85])
    with pytest.raises(ValueError):
        L.ContainerMapRecord("x" * 40, 1, 0, 0).pack()  # MAX_CONTAINER_NAME_LEN is 39


def test_pin_info_is_version_6_with_its_cache_policy() -> None:
    raw = L.pin_info(L.ALPHANUMERIC_PIN_TYPE, L.AUTHENTICATION_PIN, L.pin_set(1), L.pin_set(2))
    assert len(raw) == 36
    assert struct.unpack("<9I", raw) == (6, 0, 0, 0b010, 0b100, 6, 0, 0, 0)


def test_fixed_structures() -> None:
    assert L.card_capabilities(False, True) == struct.pack("<III", 1, 0, 1)
    assert L.free_space_info(0xFFFFFFFF, 254, 255) == bytes.fromhex("01000000fffffffffe000000ff000000")
    assert L.key_sizes(2048, 2048, 4096, 1024) == struct.pack("<5I", 1, 2048, 2048, 4096, 1024)
    assert L.file_info(86, L.EVERYONE_READ_USER_WRITE_AC) == struct.pack("<III", 1, 86, 1)


def test_rsa_public_key_blob_is_blobheader_rsapubkey_and_a_little_endian_modulus() -> None:
    key = rsa.generate_private_key(65537, 2048)
    n = key.public_key().public_numbers().n
    blob = L.rsa_public_blob(n, 65537, 2048, L.CALG_RSA_KEYX)
    assert blob[:8] == bytes([0x06, 0x02, 0, 0]) + (0xA400).to_bytes(4, "little")  # PUBLICKEYBLOB, v2, CALG_RSA_KEYX
    assert blob[8:12] == b"RSA1" and struct.unpack("<II", blob[12:20]) == (2048, 65537)
    assert blob[20:] == n.to_bytes(256, "little") and len(blob) == 276
    assert L.parse_rsa_public_blob(blob) == (L.CALG_RSA_KEYX, 2048, n, 65537)


def test_rsa_private_key_blob_round_trip() -> None:
    key = rsa.generate_private_key(65537, 2048)
    p = key.private_numbers()
    fields = L.RsaPrivateFields(2048, 65537, p.public_numbers.n, p.p, p.q, p.dmp1, p.dmq1, p.iqmp, p.d)
    blob = L.rsa_private_blob(fields, L.CALG_RSA_KEYX)
    assert blob[0] == 0x07 and blob[8:12] == b"RSA2" and len(blob) == 20 + 256 * 2 + 128 * 5
    assert L.parse_rsa_private_blob(blob) == fields
    with pytest.raises(ValueError):
        L.parse_rsa_private_blob(blob[:-1])


def test_ecc_blobs_name_their_use_and_curve_and_keep_coordinates_big_endian() -> None:
    pub = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    blob = L.ecc_public_blob(L.ECDSA_PUBLIC_MAGIC[384], pub.x, pub.y, 48)
    assert blob[:4] == b"ECS3" and struct.unpack("<I", blob[4:8]) == (48,) and len(blob) == 8 + 96
    assert blob[8:56] == pub.x.to_bytes(48, "big") and blob[56:] == pub.y.to_bytes(48, "big")
    assert L.ecc_public_blob(L.ECDH_PUBLIC_MAGIC[256], 1, 2, 32)[:4] == b"ECK1"
    assert L.ECDH_PRIVATE_MAGIC[256].to_bytes(4, "little") == b"ECK2"
    assert L.parse_ecc_blob(blob)[:3] == (L.ECDSA_PUBLIC_MAGIC[384], blob[8:56], blob[56:])
    with pytest.raises(ValueError):
        L.parse_ecc_blob(blob[:-1])
