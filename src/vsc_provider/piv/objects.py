"""PIV data objects (SP 800-73-4, part 1, appendix A) made from the card: the card holder unique identifier,
the card capability container, the discovery object, key history, and the certificate objects of the four
key slots, which are the card's certificates with the slots' CKA_IDs."""

from __future__ import annotations

import uuid

from vsc_provider.piv.tlv import tlv

PIV_AID = bytes.fromhex("A000000308000010000100")
PIV_RID = PIV_AID[:5]

TAG_CHUID = 0x5FC102
TAG_CCC = 0x5FC107
TAG_DISCOVERY = 0x7E
TAG_KEY_HISTORY = 0x5FC10C
# the certificate object of each key slot
CERT_TAGS = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}
SLOT_OF_CERT_TAG = {tag: slot for slot, tag in CERT_TAGS.items()}
# slot -> CKA_ID: the IDs OpenSC's PIV driver gives these slots' objects
DEFAULT_SLOT_IDS = {0x9A: b"\x01", 0x9C: b"\x02", 0x9D: b"\x03", 0x9E: b"\x04"}

# algorithm identifiers (SP 800-78-4, table 6-2; 05 is RSA-3072 as SP 800-78-5 and YubiKeys use it)
ALG_3DES = 0x03
ALG_RSA_2048 = 0x07
ALG_RSA_3072 = 0x05
ALG_AES_128 = 0x08
ALG_AES_192 = 0x0A
ALG_AES_256 = 0x0C
ALG_P256 = 0x11
ALG_P384 = 0x14
KEY_KINDS = {ALG_RSA_2048: "rsa2048", ALG_RSA_3072: "rsa3072", ALG_P256: "p256", ALG_P384: "p384"}


def card_guid(serial: str) -> bytes:
    """A stable 16-byte GUID for the card (clients such as OpenSC take the card's identity from it)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"vsc-piv:{serial}").bytes


def application_template() -> bytes:
    """SELECT's answer: the application property template."""
    algorithms = b"".join(tlv(0x80, bytes([a])) for a in (ALG_RSA_2048, ALG_RSA_3072, ALG_P256, ALG_P384))
    return tlv(
        0x61,
        tlv(0x4F, PIV_AID[5:])
        + tlv(0x79, tlv(0x4F, PIV_RID))
        + tlv(0x50, b"vsc virtual PIV")
        + tlv(0xAC, algorithms + tlv(0x06, b"\x00")),
    )


def chuid(serial: str) -> bytes:
    """The CHUID's content: the FASC-N that non-federal cards carry (agency, system and credential all 9s; the
    card's identity is its GUID), the GUID, an expiry date and an empty signature (no issuer signs it)."""
    fascn = bytes.fromhex("D4E739DA739CED39CE739D836858210842108421C84210C3EB")
    return tlv(0x30, fascn) + tlv(0x34, card_guid(serial)) + tlv(0x35, b"20991231") + tlv(0x3E, b"") + tlv(0xFE, b"")


def ccc(serial: str) -> bytes:
    """The card capability container (a version-2.1 container naming PIV's data model)."""
    card_id = bytes.fromhex("A000000116FF02") + card_guid(serial)[:14]
    # F1/F2 container and grammar version 2.1, F4 PKCS#15 0, F5 data model 0x10 (PIV); the rest empty
    fields = {0xF0: card_id, 0xF1: b"\x21", 0xF2: b"\x21", 0xF4: b"\x00", 0xF5: b"\x10"}
    tags = (0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE)
    return b"".join(tlv(tag, fields.get(tag, b"")) for tag in tags)


def discovery() -> bytes:
    """The discovery object, whole (tag 7E): the AID, and the PIN usage policy: the PIV card application
    PIN only, no global PIN."""
    return tlv(TAG_DISCOVERY, tlv(0x4F, PIV_AID) + tlv(0x5F2F, b"\x40\x00"))


def key_history() -> bytes:
    """No retired keys: both counts zero."""
    return tlv(0xC1, b"\x00") + tlv(0xC2, b"\x00") + tlv(0xFE, b"")


def certificate_object(der: bytes) -> bytes:
    """A certificate object's content: the certificate, uncompressed (CertInfo 00), an empty error code."""
    return tlv(0x70, der) + tlv(0x71, b"\x00") + tlv(0xFE, b"")


def parse_slot_map(pairs: list[str]) -> dict[int, bytes]:
    """`9A=01` style options over the default mapping of slots to CKA_IDs (hex)."""
    mapping = dict(DEFAULT_SLOT_IDS)
    for pair in pairs:
        slot_text, sep, key_id = pair.partition("=")
        try:
            slot = int(slot_text, 16)
            value = bytes.fromhex(key_id)
        except ValueError:
            raise ValueError(f"{pair!r}: a slot is SLOT=HEXID, as 9A=01") from None
        if not sep or slot not in CERT_TAGS or not value:
            raise ValueError(f"{pair!r}: the slots are 9A, 9C, 9D and 9E, each with a hex CKA_ID")
        mapping[slot] = value
    return mapping
