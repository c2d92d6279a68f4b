"""GENERAL AUTHENTICATE and GENERATE ASYMMETRIC KEY PAIR: the slots' private operations through the card
service (a raw RSA block, an ECDSA signature of a hash, ECDH), the management key's challenge and response,
and key pairs made on the card as PKCS#11 key pairs with the slot's CKA_ID."""

from __future__ import annotations

import hmac
import os
from typing import Any

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.piv import apdu as P
from vsc_provider.piv import objects as O
from vsc_provider.piv import tlv
from vsc_provider.piv.session import PivSession
from vsc_provider.token import service

MANAGEMENT_KEY_REF = 0x9B


def _template(cmd: P.Command, tag: int) -> dict[int, bytes]:
    try:
        outer = tlv.as_dict(cmd.data)
        if tag not in outer:
            raise P.ApduError(P.SW_WRONG_DATA, f"no {tag:02X} template")
        return tlv.as_dict(outer[tag])
    except tlv.TlvError as exc:
        raise P.ApduError(P.SW_WRONG_DATA, str(exc)) from None


def public_key(session: PivSession, slot: int) -> Any:
    """The `cryptography` public key of a slot (from its public-key object, else its certificate), or None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    card = session.fresh()
    key_id = session.slot_ids[slot]
    for obj in service.with_key_id(card, key_id, C.CKO_PUBLIC_KEY):
        info = obj.attrs.get(C.CKA_PUBLIC_KEY_INFO)
        if info:
            return serialization.load_der_public_key(info)
    for obj in service.with_key_id(card, key_id, C.CKO_CERTIFICATE):
        value = obj.attrs.get(C.CKA_VALUE)
        if value:
            return x509.load_der_x509_certificate(value).public_key()
    return None


def algorithm_of(public: Any) -> int | None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public, rsa.RSAPublicKey):
        return {2048: O.ALG_RSA_2048, 3072: O.ALG_RSA_3072}.get(public.key_size)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {"secp256r1": O.ALG_P256, "secp384r1": O.ALG_P384}.get(public.curve.name)
    return None


def _ckr(exc: CKRError) -> P.ApduError:
    if exc.rv in (C.CKR_USER_NOT_LOGGED_IN, C.CKR_PIN_INCORRECT, C.CKR_PIN_LOCKED):
        return P.ApduError(P.SW_SECURITY, str(exc))
    if exc.rv == C.CKR_KEY_HANDLE_INVALID:
        return P.ApduError(P.SW_REF_NOT_FOUND, str(exc))
    return P.ApduError(P.SW_CONDITIONS if exc.rv == C.CKR_KEY_FUNCTION_NOT_PERMITTED else P.SW_WRONG_DATA, str(exc))


def general_authenticate(session: PivSession, cmd: P.Command) -> bytes:
    if cmd.p2 == MANAGEMENT_KEY_REF:
        return _management(session, cmd)
    if cmd.p2 not in session.slot_ids:
        raise P.ApduError(P.SW_REF_NOT_FOUND, f"no key slot {cmd.p2:02X}")
    fields = _template(cmd, 0x7C)
    public = public_key(session, cmd.p2)
    if public is None:
        raise P.ApduError(P.SW_REF_NOT_FOUND, f"slot {cmd.p2:02X} has no key")
    if algorithm_of(public) != cmd.p1:
        raise P.ApduError(P.SW_WRONG_P1P2, f"slot {cmd.p2:02X} holds no key of algorithm {cmd.p1:02X}")
    confirm, session.pin_just_verified = session.pin_just_verified, None
    key_id = session.slot_ids[cmd.p2]
    card = session.fresh()
    try:
        if 0x85 in fields and fields.get(0x82) == b"":  # ECDH with the peer's point
            result = service.ecdh_secret(session.engine, card, key_id, fields[0x85])
        elif 0x81 in fields and fields.get(0x82) == b"":
            result = _private_operation(session, key_id, public, fields[0x81], confirm)
        else:
            raise P.ApduError(P.SW_WRONG_DATA, "GENERAL AUTHENTICATE wants 82 empty with 81 or 85")
    except CKRError as exc:
        if exc.rv == C.CKR_KEY_HANDLE_INVALID and not card.user:  # private keys are hidden until VERIFY
            raise P.ApduError(P.SW_SECURITY, "verify the PIN first") from None
        raise _ckr(exc) from None
    return tlv.tlv(0x7C, tlv.tlv(0x82, result))


def _private_operation(session: PivSession, key_id: bytes, public: Any, data: bytes, confirm: bytes | None) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    card = session.card
    if isinstance(public, rsa.RSAPublicKey):
        if len(data) != public.key_size // 8:
            raise P.ApduError(P.SW_WRONG_DATA, "an RSA block has the modulus' length")
        keys = service.with_key_id(card, key_id, C.CKO_PRIVATE_KEY)
        mech = Mechanism(C.CKM_RSA_X_509)
        if keys and not keys[0].bool(C.CKA_SIGN) and keys[0].bool(C.CKA_DECRYPT):
            return service.decrypt(session.engine, card, key_id, mech, data)
        return service.sign(session.engine, card, key_id, mech, data, confirm)
    raw = service.sign(session.engine, card, key_id, Mechanism(C.CKM_ECDSA), data, confirm)
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def _management(session: PivSession, cmd: P.Command) -> bytes:
    """The management key's challenge-response: 80 asks for a witness (the card's random block encrypted),
    80 with 81 returns it decrypted and challenges the card (mutual), 81 empty asks for a challenge and 82
    answers it (external authentication)."""
    from vsc_provider.piv import management_key as M

    card = session.fresh()
    try:
        key = M.load(session.engine, card)
    except M.ManagementKeyError as exc:
        raise P.ApduError(P.SW_UNKNOWN, str(exc)) from None
    if key is None:
        raise P.ApduError(P.SW_REF_NOT_FOUND, "this card has no management key (vsc pcsc serve sets one)")
    if cmd.p1 != key.algorithm and not (cmd.p1 == 0x00 and key.algorithm == O.ALG_3DES):
        raise P.ApduError(P.SW_WRONG_P1P2, f"the management key's algorithm is {key.algorithm:02X}")
    fields = _template(cmd, 0x7C)
    witness, challenge = session.witness, session.challenge
    session.witness = session.challenge = None
    n = key.block_size
    if fields.get(0x80) == b"" and len(fields) == 1:
        session.admin = None
        session.witness = os.urandom(n)
        return tlv.tlv(0x7C, tlv.tlv(0x80, key.encrypt_block(session.witness)))
    if fields.get(0x81) == b"" and len(fields) == 1:
        session.admin = None
        session.challenge = os.urandom(n)
        return tlv.tlv(0x7C, tlv.tlv(0x81, session.challenge))
    if 0x80 in fields and 0x81 in fields:
        if witness is None or not hmac.compare_digest(fields[0x80], witness):
            raise P.ApduError(P.SW_SECURITY, "wrong witness")
        if len(fields[0x81]) != n:
            raise P.ApduError(P.SW_WRONG_DATA, f"a challenge has {n} bytes")
        session.admin = key
        return tlv.tlv(0x7C, tlv.tlv(0x82, key.encrypt_block(fields[0x81])))
    if 0x82 in fields and len(fields) == 1:
        if challenge is None or not hmac.compare_digest(fields[0x82], key.encrypt_block(challenge)):
            raise P.ApduError(P.SW_SECURITY, "wrong response")
        session.admin = key
        return b""
    raise P.ApduError(P.SW_WRONG_DATA, "not a management-key authentication step")


def generate(session: PivSession, cmd: P.Command) -> bytes:
    """A new key pair in a slot (replacing the slot's keys; its certificate stays until PUT DATA replaces
    it, as on a real card): the public key comes back as 7F49."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if cmd.p1 != 0x00 or cmd.p2 not in session.slot_ids:
        raise P.ApduError(P.SW_WRONG_P1P2, f"no key slot {cmd.p2:02X}")
    alg = _template(cmd, 0xAC).get(0x80, b"")
    kind = O.KEY_KINDS.get(alg[0]) if len(alg) == 1 else None
    if kind is None:
        raise P.ApduError(P.SW_WRONG_DATA, "algorithm 07, 05, 11 or 14")
    key_id = session.slot_ids[cmd.p2]
    with session.as_administrator() as card:
        try:
            for klass in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY):
                service.destroy_key_id(session.engine, card, key_id, klass)
            pub_obj, _ = service.generate(session.engine, card, kind, key_id, f"PIV {cmd.p2:02X}")
        except CKRError as exc:
            raise _ckr(exc) from None
    public = serialization.load_der_public_key(pub_obj.attrs[C.CKA_PUBLIC_KEY_INFO])
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        body = tlv.tlv(0x81, numbers.n.to_bytes(public.key_size // 8, "big")) + tlv.tlv(
            0x82, numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        )
    else:
        point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        body = tlv.tlv(0x86, point)
    return tlv.tlv(0x7F49, body)
