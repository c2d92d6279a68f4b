"""The admin role's challenge/response (CardGetChallenge, CardAuthenticateChallenge, and the admin key's use in
CardUnblockPin and CardChangeAuthenticator): a per-card 24-byte 3DES key, the response being the challenge
encrypted with it (DES-EDE3, one ECB block), as Windows' card administration tools compute it.

Storage, in the store's meta table under the card's serial (JSON), sealed like the card's other secrets:
the key itself under the device key (a card must be able to check a response without any PIN, as a real card
does), and the card's data key wrapped under a key derived from the admin key and then the device key (so a
proved admin can set a new user PIN). Its wrong-try counter is there too, with the card's PIN policy's limit.
The SO proves the PIN to set the first key; a card re-initialised since (a new data key) has no admin key.
"""

from __future__ import annotations

import hmac
import os

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver.context import CardContext
from vsc_provider.token.admin_secret import AdminSecret

ADMIN_KEY_SIZE = 24
CHALLENGE_SIZE = 8


SECRET = AdminSecret("minidriver-admin", "vsc-minidriver", b"vsc-minidriver admin key")


def _response(admin_key: bytes, challenge: bytes) -> bytes:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    encryptor = Cipher(TripleDES(admin_key), modes.ECB()).encryptor()  # noqa: S305 - one block, as specified
    return encryptor.update(challenge) + encryptor.finalize()


def is_set(ctx: CardContext) -> bool:
    return SECRET.read(ctx.engine, ctx.card) is not None


def set_admin_key(ctx: CardContext, so_pin: bytes, new_key: bytes) -> None:
    """The card's admin key, set with the SO PIN's authority (its try counted like an SO login)."""
    if len(new_key) != ADMIN_KEY_SIZE:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"an admin key has {ADMIN_KEY_SIZE} bytes")
    card = ctx.fresh()
    try:
        data_key = ctx.engine.verify_pin(card, True, so_pin)
    except CKRError as exc:
        so_left = max(0, card.policy.pin.max_tries - ctx.fresh().record.so_failures)
        raise E.from_ckr(exc, so_left) from None
    _store(ctx, new_key, data_key)


def _store(ctx: CardContext, new_key: bytes, data_key: bytes) -> None:
    SECRET.write(ctx.engine, ctx.card, SECRET.new_entry(ctx.engine.device_key, ctx.card, new_key, data_key, failures=0))
    ctx.engine.audit.event(ctx.slot_id, "pin-change-admin-key")  # the admin's credential, as a PIN change


def get_challenge(ctx: CardContext) -> bytes:
    """CardGetChallenge: 8 random bytes, good for one response."""
    if not is_set(ctx):
        raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, "this card has no admin key (set it with the SO PIN)")
    ctx.challenge = os.urandom(CHALLENGE_SIZE)
    return ctx.challenge


def _check(ctx: CardContext, response: bytes) -> tuple[bytes, bytes]:
    """Check a response to the last challenge, counted and recorded in the audit log like an SO login
    (login-admin-challenge with its result; block-admin-challenge for the try that blocks); (admin key, data key)
    when right."""
    challenge, ctx.challenge = ctx.challenge, None
    card = ctx.card
    limit = card.policy.pin.max_tries
    device_key = ctx.engine.device_key

    def matches(admin_key: bytes) -> bool:
        assert challenge is not None
        return hmac.compare_digest(_response(admin_key, challenge), response)

    entry, blocked, admin_key, right = SECRET.prove(ctx.engine, card, limit, None if challenge is None else matches)
    if entry is None:
        raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, "this card has no admin key")
    if not blocked and challenge is None:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "ask for a challenge first")
    # Recorded once prove's transaction is over: the audit log writes in a transaction of its own.
    if blocked:
        _record(ctx, C.CKR_PIN_LOCKED)
        raise E.MinidriverError(E.SCARD_W_CHV_BLOCKED, "the admin key is blocked", 0)
    if admin_key is None:
        _record(ctx, C.CKR_FUNCTION_FAILED)
        raise E.MinidriverError(E.SCARD_F_INTERNAL_ERROR, "the admin key does not open (another device's store?)")
    if not right:
        left = max(0, limit - entry["failures"])
        _record(ctx, C.CKR_PIN_INCORRECT if left else C.CKR_PIN_LOCKED)
        if not left:
            ctx.engine.audit.event(ctx.slot_id, "block-admin-challenge")
        code = E.SCARD_W_CHV_BLOCKED if left == 0 else E.SCARD_W_WRONG_CHV
        raise E.MinidriverError(code, "wrong response to the admin challenge", left)
    data_key = SECRET.data_key(device_key, card, entry, admin_key)
    if data_key is None:
        _record(ctx, C.CKR_FUNCTION_FAILED)
        raise E.MinidriverError(E.SCARD_F_INTERNAL_ERROR, "the admin key's copy of the data key does not open")
    _record(ctx, C.CKR_OK)
    return admin_key, data_key


def _record(ctx: CardContext, rv: int) -> None:
    ctx.engine.audit.event(ctx.slot_id, "login-admin-challenge", rv)


def authenticate_challenge(ctx: CardContext, response: bytes) -> int:
    """CardAuthenticateChallenge: the admin role for this context; returns the tries left."""
    _check(ctx, response)
    ctx.admin = True
    return ctx.card.policy.pin.max_tries


def unblock_with_response(ctx: CardContext, response: bytes, new_pin: bytes) -> None:
    """CardUnblockPin with CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE: a new user PIN (its block cleared)."""
    _, data_key = _check(ctx, response)
    card = ctx.fresh()
    saved = card.data_key
    card.data_key = data_key
    try:
        ctx.engine.set_user_pin(card, new_pin, reset=True)
    except CKRError as exc:
        raise E.from_ckr(exc) from None
    finally:
        card.data_key = saved if (card.user or card.so) else None


def change_with_response(ctx: CardContext, response: bytes, new_key: bytes) -> None:
    """CardChangeAuthenticator for "admin" with CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE: a new admin key."""
    if len(new_key) != ADMIN_KEY_SIZE:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"an admin key has {ADMIN_KEY_SIZE} bytes")
    _, data_key = _check(ctx, response)
    _store(ctx, new_key, data_key)
