"""VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER: the PIV PIN (key reference 80) is the card's user PIN,
the PUK (81) its SO PIN, each sent padded with FF to 8 bytes, under the card's PIN policy and its shared
wrong-try counters (a right PIN logs the user in for this process, as C_Login does)."""

from __future__ import annotations

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.piv import apdu as P
from vsc_provider.piv.session import PivSession
from vsc_provider.token import access

PIN_REF = 0x80
PUK_REF = 0x81
PIN_FIELD = 8


def unpad(field: bytes) -> bytes:
    """A PIN from its 8-byte field: the bytes before the FF padding."""
    if len(field) != PIN_FIELD:
        raise P.ApduError(P.SW_WRONG_DATA, "a PIN field has 8 bytes")
    pin = field.rstrip(b"\xff")
    if not pin or b"\xff" in pin:
        raise P.ApduError(P.SW_WRONG_DATA, "a PIN is 1 to 8 bytes padded with FF")
    return pin


def tries_left(session: PivSession, so: bool) -> int:
    card = session.fresh()
    failures = card.record.so_failures if so else card.record.user_failures
    return max(0, card.policy.pin.max_tries - failures)


def refused(session: PivSession, so: bool, exc: CKRError) -> P.ApduError:
    """The status word for a PIN the card refused: 63Cx with the tries left, 6983 once blocked."""
    if exc.rv == C.CKR_FUNCTION_FAILED:  # a waiting period after wrong tries: nothing was counted
        return P.ApduError(P.SW_CONDITIONS, str(exc))
    if exc.rv not in (C.CKR_PIN_INCORRECT, C.CKR_PIN_LOCKED):
        return P.ApduError(P.SW_WRONG_DATA, str(exc))
    left = tries_left(session, so)
    return P.ApduError(P.SW_BLOCKED if left == 0 else P.sw_tries(left), str(exc))


def verify(session: PivSession, cmd: P.Command) -> bytes:
    if cmd.p2 != PIN_REF:
        raise P.ApduError(P.SW_REF_NOT_FOUND, f"key reference {cmd.p2:02X} is not verified here")
    card = session.fresh()
    if cmd.p1 == 0xFF:  # reset the PIN's security status
        if cmd.data:
            raise P.ApduError(P.SW_WRONG_LENGTH, "P1 FF takes no data")
        session.pin_just_verified = None
        access.logout(session.engine, card)
        return b""
    if cmd.p1 != 0x00:
        raise P.ApduError(P.SW_WRONG_P1P2)
    if not cmd.data:  # the status: verified, or the tries left
        if card.user:
            return b""
        left = tries_left(session, False)
        raise P.ApduError(P.SW_BLOCKED if left == 0 else P.sw_tries(left))
    pin = unpad(cmd.data)
    try:
        if card.user:
            session.engine.verify_pin(card, False, pin)
        else:
            if card.so:
                access.logout(session.engine, card)
            access.login(session.engine, card, pin)
    except CKRError as exc:
        session.pin_just_verified = None
        raise refused(session, False, exc) from None
    session.pin_just_verified = pin
    return b""


def change_reference_data(session: PivSession, cmd: P.Command) -> bytes:
    if cmd.p1 != 0x00 or cmd.p2 not in (PIN_REF, PUK_REF):
        raise P.ApduError(P.SW_REF_NOT_FOUND if cmd.p1 == 0 else P.SW_WRONG_P1P2)
    if len(cmd.data) != 2 * PIN_FIELD:
        raise P.ApduError(P.SW_WRONG_LENGTH, "old and new reference data, 8 bytes each")
    so = cmd.p2 == PUK_REF
    old, new = unpad(cmd.data[:PIN_FIELD]), unpad(cmd.data[PIN_FIELD:])
    card = session.fresh()
    try:
        access.change_pin(session.engine, card, old, new, so=so)
    except CKRError as exc:
        if exc.rv in (C.CKR_PIN_LEN_RANGE, C.CKR_PIN_INVALID):
            raise P.ApduError(P.SW_WRONG_DATA, str(exc)) from None
        raise refused(session, so, exc) from None
    return b""


def reset_retry_counter(session: PivSession, cmd: P.Command) -> bytes:
    """The PUK (the SO PIN) sets a new PIN, which clears its block."""
    if cmd.p1 != 0x00 or cmd.p2 != PIN_REF:
        raise P.ApduError(P.SW_REF_NOT_FOUND if cmd.p1 == 0 else P.SW_WRONG_P1P2)
    if len(cmd.data) != 2 * PIN_FIELD:
        raise P.ApduError(P.SW_WRONG_LENGTH, "the PUK and the new PIN, 8 bytes each")
    puk, new = unpad(cmd.data[:PIN_FIELD]), unpad(cmd.data[PIN_FIELD:])
    card = session.fresh()
    if card.user or card.so:
        access.logout(session.engine, card)
    try:
        card.policy.pin.check(new)
        access.reset_pin(session.engine, card, puk, new)
    except CKRError as exc:
        if exc.rv in (C.CKR_PIN_LEN_RANGE, C.CKR_PIN_INVALID):
            raise P.ApduError(P.SW_WRONG_DATA, str(exc)) from None
        raise refused(session, True, exc) from None
    return b""
