"""GET DATA and PUT DATA: the data objects of objects.py read from the card, and certificates written to it
(a certificate object written through PIV is a PKCS#11 certificate with the slot's CKA_ID)."""

from __future__ import annotations

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.piv import apdu as P
from vsc_provider.piv import objects as O
from vsc_provider.piv import tlv
from vsc_provider.piv.session import PivSession
from vsc_provider.token import service


def _object_tag(data: bytes) -> tuple[int, bytes]:
    """The 5C tag list's one tag, and what follows it."""
    try:
        items = tlv.parse(data)
    except tlv.TlvError as exc:
        raise P.ApduError(P.SW_WRONG_DATA, str(exc)) from None
    if not items or items[0][0] != 0x5C or not 1 <= len(items[0][1]) <= 3:
        raise P.ApduError(P.SW_WRONG_DATA, "a tag list 5C with one tag")
    rest = b"".join(tlv.tlv(t, v) for t, v in items[1:])
    return int.from_bytes(items[0][1], "big"), rest


def get_data(session: PivSession, cmd: P.Command) -> bytes:
    if (cmd.p1, cmd.p2) != (0x3F, 0xFF):
        raise P.ApduError(P.SW_WRONG_P1P2)
    tag, _ = _object_tag(cmd.data)
    card = session.fresh()
    if tag == O.TAG_DISCOVERY:
        return O.discovery()
    if tag == O.TAG_CHUID:
        return tlv.tlv(0x53, O.chuid(card.serial))
    if tag == O.TAG_CCC:
        return tlv.tlv(0x53, O.ccc(card.serial))
    if tag == O.TAG_KEY_HISTORY:
        return tlv.tlv(0x53, O.key_history())
    slot = O.SLOT_OF_CERT_TAG.get(tag)
    if slot is not None and slot in session.slot_ids:
        for obj in service.with_key_id(card, session.slot_ids[slot], C.CKO_CERTIFICATE):
            value = obj.attrs.get(C.CKA_VALUE)
            if value:
                return tlv.tlv(0x53, O.certificate_object(value))
    raise P.ApduError(P.SW_NOT_FOUND, f"no data object {tag:06X}")


def put_data(session: PivSession, cmd: P.Command) -> bytes:
    """A certificate object (an empty one removes the slot's certificate); other objects are fixed."""
    if (cmd.p1, cmd.p2) != (0x3F, 0xFF):
        raise P.ApduError(P.SW_WRONG_P1P2)
    tag, rest = _object_tag(cmd.data)
    slot = O.SLOT_OF_CERT_TAG.get(tag)
    if slot is None:
        raise P.ApduError(P.SW_FUNC_NOT_SUPPORTED, f"data object {tag:06X} is not written here")
    try:
        outer = tlv.as_dict(rest)
        content = tlv.as_dict(outer[0x53]) if 0x53 in outer else None
    except tlv.TlvError as exc:
        raise P.ApduError(P.SW_WRONG_DATA, str(exc)) from None
    if content is None:
        raise P.ApduError(P.SW_WRONG_DATA, "no 53 data")
    der = content.get(0x70, b"")
    if content.get(0x71, b"\x00")[:1] not in (b"", b"\x00"):
        raise P.ApduError(P.SW_WRONG_DATA, "compressed certificates are not stored")
    if der:
        from cryptography import x509

        try:
            x509.load_der_x509_certificate(der)
        except ValueError:
            raise P.ApduError(P.SW_WRONG_DATA, "70 is not a DER certificate") from None
    key_id = session.slot_ids[slot]
    with session.as_administrator() as card:
        try:
            service.destroy_key_id(session.engine, card, key_id, C.CKO_CERTIFICATE)
            if der:
                service.store_certificate(session.engine, card, der, key_id, f"PIV {slot:02X} certificate")
        except CKRError as exc:
            raise P.ApduError(P.SW_WRONG_DATA, str(exc)) from None
    return b""
