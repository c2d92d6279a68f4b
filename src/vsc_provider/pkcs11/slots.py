"""Slots and tokens: one slot per card, C_GetSlotList/Info, C_GetTokenInfo, mechanisms, InitToken/InitPIN/SetPIN
and C_WaitForSlotEvent.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.pkcs11.state import LIB
from vsc_provider.token import access
from vsc_provider.token.engine import Card

MANUFACTURER = "vsc-provider"
VERSION = (0, 1)


class SlotInfo(NamedTuple):
    description: str
    manufacturer: str
    flags: int
    hardware_version: tuple[int, int]
    firmware_version: tuple[int, int]


class TokenInfo(NamedTuple):
    label: bytes
    manufacturer: str
    model: str
    serial: str
    flags: int
    max_sessions: int
    sessions: int
    max_rw_sessions: int
    rw_sessions: int
    max_pin_len: int
    min_pin_len: int
    hardware_version: tuple[int, int]
    firmware_version: tuple[int, int]


def get_slot_list(token_present: bool) -> list[int]:
    engine = LIB.require()
    engine.refresh()
    return sorted(engine.cards)


def get_slot_info(slot_id: int) -> SlotInfo:
    card = LIB.require().card(slot_id)
    return SlotInfo(
        f"vsc-provider virtual card {card.serial}",
        MANUFACTURER,
        C.CKF_TOKEN_PRESENT | C.CKF_REMOVABLE_DEVICE,
        VERSION,
        VERSION,
    )


def token_flags(card: Card) -> int:
    rec = card.record
    policy = card.policy.pin
    flags = C.CKF_RNG | C.CKF_LOGIN_REQUIRED | C.CKF_TOKEN_INITIALIZED
    if rec.user_wrapped is not None:
        flags |= C.CKF_USER_PIN_INITIALIZED
    user = (C.CKF_USER_PIN_LOCKED, C.CKF_USER_PIN_FINAL_TRY, C.CKF_USER_PIN_COUNT_LOW)
    so = (C.CKF_SO_PIN_LOCKED, C.CKF_SO_PIN_FINAL_TRY, C.CKF_SO_PIN_COUNT_LOW)
    flags |= _pin_count_flags(rec.user_failures, policy.max_tries, *user)
    flags |= _pin_count_flags(rec.so_failures, policy.max_tries, *so)
    return flags


def _pin_count_flags(failures: int, max_tries: int, locked: int, final_try: int, count_low: int) -> int:
    """One PIN's try-counter flags: locked, on its final try (and low), or low after any wrong try."""
    if failures >= max_tries:
        return locked
    if failures == max_tries - 1:
        return final_try | count_low
    return count_low if failures > 0 else 0


# Hosts poll C_GetTokenInfo (NSS does, for every slot): other processes' changes are taken in through the
# store's change signal (a memory read), and the answer is rebuilt only when the card or its session counts
# changed. The cache holds the card record itself (not its id(), which a new record can reuse once the old one is
# freed) and compares by identity: the engine replaces the record whenever the card changes.
_token_info: dict[int, tuple[object, int, int, TokenInfo]] = {}


def get_token_info(slot_id: int) -> TokenInfo:
    engine = LIB.require()
    engine.poll()
    card = engine.card(slot_id)
    count = rw = 0
    for s in LIB.sessions.values():  # a plain loop: hosts call this often, and it beats building a list
        if s.card is card:
            count += 1
            rw += s.rw
    cached = _token_info.get(slot_id)
    if cached is not None and cached[0] is card.record and cached[1] == count and cached[2] == rw:
        return cached[3]
    info = TokenInfo(
        label=card.label.encode(),
        manufacturer=MANUFACTURER,
        model="virtual card",
        serial=card.serial,
        flags=token_flags(card),
        max_sessions=C.CK_EFFECTIVELY_INFINITE,
        sessions=count,
        max_rw_sessions=C.CK_EFFECTIVELY_INFINITE,
        rw_sessions=rw,
        max_pin_len=card.policy.pin.max_length,
        min_pin_len=card.policy.pin.min_length,
        hardware_version=VERSION,
        firmware_version=VERSION,
    )
    _token_info[slot_id] = (card.record, count, rw, info)
    return info


_MECHANISM_LISTS: dict[bool, list[int]] = {}  # by CardPolicy.legacy: built once


def get_mechanism_list(slot_id: int) -> list[int]:
    """The card's mechanisms: a compatible card adds DSA and Diffie-Hellman to the strict list."""
    policy = LIB.require().card(slot_id).policy
    found = _MECHANISM_LISTS.get(policy.legacy)
    if found is None:
        found = _MECHANISM_LISTS[policy.legacy] = sorted(policy.mechanisms)
    return found


def get_mechanism_info(slot_id: int, mech_type: int) -> tuple[int, int, int]:
    """The mechanism's key sizes as this card's policy allows them (RSA from 1024 bits on compatible cards)."""
    card = LIB.require().card(slot_id)
    info = card.policy.mechanisms.get(mech_type)
    if info is None:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech_type:x} is not supported")
    return card.policy.mechanism_info(info)


def init_token(slot_id: int, so_pin: bytes | None, label: bytes) -> None:
    """Re-initialise a card; it keeps its policy. Every slot holds a card (cards are made by `vsc card create`,
    strict unless told otherwise), so there is no empty token for C_InitToken to set up with a policy."""
    engine = LIB.require()
    card = engine.card(slot_id)
    if so_pin is None:
        raise CKRError(C.CKR_ARGUMENTS_BAD, "no protected authentication path: an SO PIN is needed")
    if LIB.card_sessions(card):
        raise CKRError(C.CKR_SESSION_EXISTS, "close every session before C_InitToken")
    try:
        # The standard pads the label with blanks; many hosts (PyKCS11) pass a C string: stop at its NUL.
        text = label.split(b"\x00", 1)[0].decode().rstrip(" ") or card.label
    except UnicodeDecodeError as exc:
        raise CKRError(C.CKR_ARGUMENTS_BAD, "label is not UTF-8") from exc
    engine.reinitialize(card, so_pin, text)


def init_pin(h: int, pin: bytes | None) -> None:
    s = LIB.session(h)
    if pin is None:
        raise CKRError(C.CKR_ARGUMENTS_BAD, "a PIN is needed")
    if not s.rw:
        raise CKRError(C.CKR_SESSION_READ_ONLY)
    if not s.card.so:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "C_InitPIN needs the SO to log in")
    LIB.require().set_user_pin(s.card, pin)


def set_pin(h: int, old: bytes | None, new: bytes | None) -> None:
    s = LIB.session(h)
    if old is None or new is None:
        raise CKRError(C.CKR_ARGUMENTS_BAD, "old and new PINs are needed")
    if not s.rw:
        raise CKRError(C.CKR_SESSION_READ_ONLY)
    access.change_pin(LIB.require(), s.card, old, new)


def wait_for_slot_event(flags: int) -> int:
    """Report a card that appeared or left since the last call; block (polling the store) unless told not to."""
    engine = LIB.require()
    deadline_step = 0.25
    while True:
        with LIB.lock:
            engine.refresh()
            current = frozenset(engine.cards)
            changed = sorted(current ^ LIB.seen_slots)
            if changed:
                # One event per call: the other changed slots stay pending for the next calls.
                slot = changed[0]
                LIB.seen_slots = LIB.seen_slots ^ {slot}
                return slot
        if flags & C.CKF_DONT_BLOCK:
            raise CKRError(C.CKR_NO_EVENT)
        if LIB.finalized.wait(deadline_step) or LIB.engine is not engine:
            raise CKRError(C.CKR_CRYPTOKI_NOT_INITIALIZED, "C_Finalize ended the wait")
        time.sleep(0)
