"""PIN roles: the user (the card's user PIN) and the admin (its SO PIN, or a response to a challenge by the
card's 3DES admin key: admin_key.py), with the card's own PIN policy, try counters and block, shared with
PKCS#11 and `vsc` through the store.

The user role is the engine's login (what C_Login gives, for this process). The admin role is held by the
context: the SO PIN is checked and counted like an SO login, and each admin action (unblocking or setting
the user PIN, changing the SO PIN) proves it again, as the card's data key is never kept for the admin.
"""

from __future__ import annotations

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.minidriver import admin_key
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver.context import CardContext
from vsc_provider.token import access

ROLE_EVERYONE = 0
ROLE_USER = 1
ROLE_ADMIN = 2
USER_NAMES = {"anonymous": ROLE_EVERYONE, "user": ROLE_USER, "admin": ROLE_ADMIN}  # wszCARD_USER_*
CARD_AUTHENTICATE_GENERATE_SESSION_PIN = 0x10000000
CARD_AUTHENTICATE_SESSION_PIN = 0x20000000
CARD_PIN_SILENT_CONTEXT = 0x00000040
CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE = 1
CARD_AUTHENTICATE_PIN_PIN = 2
PIN_CHANGE_FLAG_UNBLOCK = 0x01
PIN_CHANGE_FLAG_CHANGEPIN = 0x02


def attempts_remaining(ctx: CardContext, role: int) -> int:
    """Tries left before the role's PIN blocks, from the store's shared counter."""
    card = ctx.fresh()
    failures = card.record.so_failures if role == ROLE_ADMIN else card.record.user_failures
    return max(0, card.policy.pin.max_tries - failures)


def _role(pin_id: int) -> int:
    if pin_id not in (ROLE_USER, ROLE_ADMIN):
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"no PIN {pin_id} on this card")
    return pin_id


def _refused(ctx: CardContext, role: int, exc: CKRError) -> E.MinidriverError:
    return E.from_ckr(exc, attempts_remaining(ctx, role))


def authenticate_ex(ctx: CardContext, pin_id: int, flags: int, pin: bytes) -> int:
    """CardAuthenticateEx; returns the tries left (the full count after a right PIN). A wrong PIN answers
    SCARD_W_WRONG_CHV, the try that blocks and every try after it SCARD_W_CHV_BLOCKED, both with the tries
    left in MinidriverError.attempts_remaining. Session PINs are not issued (the flag is refused)."""
    role = _role(pin_id)
    if flags & (CARD_AUTHENTICATE_GENERATE_SESSION_PIN | CARD_AUTHENTICATE_SESSION_PIN):
        raise E.MinidriverError(E.SCARD_E_UNSUPPORTED_FEATURE, "session PINs are not supported")
    if flags & ~CARD_PIN_SILENT_CONTEXT:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"dwFlags 0x{flags:x}")
    card = ctx.fresh()
    try:
        if role == ROLE_ADMIN:
            ctx.engine.verify_pin(card, True, pin)
            ctx.admin = True
        elif card.user:
            ctx.engine.verify_pin(card, False, pin)  # again: a CSP re-proves the PIN at will
        else:
            if card.so:
                access.logout(ctx.engine, card)
            access.login(ctx.engine, card, pin)
    except CKRError as exc:
        raise _refused(ctx, role, exc) from None
    return attempts_remaining(ctx, role)


def authenticate_pin(ctx: CardContext, user_id: str, pin: bytes) -> int:
    """CardAuthenticatePin (by user name: "user" or "admin")."""
    return authenticate_ex(ctx, USER_NAMES.get(user_id, -1), 0, pin)


def deauthenticate_ex(ctx: CardContext, pin_set: int, flags: int = 0) -> None:
    """CardDeauthenticateEx: drop the roles of this PIN_SET (the user's login goes for the whole process)."""
    if flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "dwFlags must be 0")
    if pin_set & (1 << ROLE_ADMIN):
        ctx.admin = False
    if pin_set & (1 << ROLE_USER):
        access.logout(ctx.engine, ctx.card)
        ctx.agreements.clear()


def deauthenticate(ctx: CardContext, user_id: str, flags: int = 0) -> None:
    """CardDeauthenticate (by user name)."""
    role = USER_NAMES.get(user_id, -1)
    deauthenticate_ex(ctx, 1 << _role(role), flags)


def authenticated_roles(ctx: CardContext) -> int:
    """CP_CARD_AUTHENTICATED_STATE: the PIN_SET of roles authenticated now."""
    card = ctx.fresh()
    return (1 << ROLE_USER if card.user else 0) | (1 << ROLE_ADMIN if ctx.admin else 0)


def _set_user_pin(ctx: CardContext, so_pin: bytes, new_pin: bytes) -> None:
    card = ctx.fresh()
    if card.user or card.so:
        access.logout(ctx.engine, card)
    try:
        access.reset_pin(ctx.engine, ctx.card, so_pin, new_pin)
    except CKRError as exc:
        if exc.rv in (C.CKR_PIN_INCORRECT, C.CKR_PIN_LOCKED, C.CKR_FUNCTION_FAILED):
            raise _refused(ctx, ROLE_ADMIN, exc) from None
        raise E.from_ckr(exc) from None


def change_authenticator_ex(
    ctx: CardContext,
    flags: int,
    authenticating_pin_id: int,
    authenticating_pin: bytes,
    target_pin_id: int,
    target_data: bytes,
    retry_count: int = 0,
) -> int:
    """CardChangeAuthenticatorEx: PIN_CHANGE_FLAG_CHANGEPIN changes a role's PIN proved by itself;
    PIN_CHANGE_FLAG_UNBLOCK sets (and so unblocks) the user PIN proved by the admin PIN. A retry count other
    than 0 is refused: the card's policy fixes it. Returns the authenticating role's tries left."""
    if retry_count:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "the card's PIN policy fixes the retry count")
    source, target = _role(authenticating_pin_id), _role(target_pin_id)
    if flags == PIN_CHANGE_FLAG_UNBLOCK:
        if source != ROLE_ADMIN or target != ROLE_USER:
            raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "the admin PIN unblocks the user PIN")
        _set_user_pin(ctx, authenticating_pin, target_data)
        return attempts_remaining(ctx, ROLE_ADMIN)
    if flags != PIN_CHANGE_FLAG_CHANGEPIN or source != target:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"dwFlags 0x{flags:x} for PIN {source} -> {target}")
    card = ctx.fresh()
    try:
        access.change_pin(ctx.engine, card, authenticating_pin, target_data, so=source == ROLE_ADMIN)
    except CKRError as exc:
        if exc.rv in (C.CKR_PIN_INCORRECT, C.CKR_PIN_LOCKED, C.CKR_FUNCTION_FAILED):
            raise _refused(ctx, source, exc) from None
        raise E.from_ckr(exc) from None
    return attempts_remaining(ctx, source)


def change_authenticator(
    ctx: CardContext, user_id: str, current: bytes, new: bytes, retry_count: int = 0, flags: int = 0
) -> int:
    """CardChangeAuthenticator (by user name, PIN proved by itself)."""
    role = USER_NAMES.get(user_id, -1)
    if flags == CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE and role == ROLE_ADMIN:
        if retry_count:
            raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "the card's PIN policy fixes the retry count")
        admin_key.change_with_response(ctx, current, new)
        return ctx.card.policy.pin.max_tries
    if flags not in (0, CARD_AUTHENTICATE_PIN_PIN):
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"dwFlags 0x{flags:x}")
    return change_authenticator_ex(ctx, PIN_CHANGE_FLAG_CHANGEPIN, role, current, role, new, retry_count)


def unblock_pin(
    ctx: CardContext,
    user_id: str,
    auth_data: bytes,
    new_pin: bytes,
    retry_count: int = 0,
    flags: int = CARD_AUTHENTICATE_PIN_PIN,
) -> None:
    """CardUnblockPin: the admin PIN (CARD_AUTHENTICATE_PIN_PIN) sets a new user PIN, which clears its block."""
    if USER_NAMES.get(user_id) != ROLE_USER:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "only the user PIN is unblocked")
    if retry_count:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "the card's PIN policy fixes the retry count")
    if flags == CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE:
        admin_key.unblock_with_response(ctx, auth_data, new_pin)
        return
    if flags != CARD_AUTHENTICATE_PIN_PIN:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, f"dwFlags 0x{flags:x}")
    _set_user_pin(ctx, auth_data, new_pin)


def get_challenge(ctx: CardContext) -> bytes:
    """CardGetChallenge (the admin key's challenge; admin_key.py)."""
    return admin_key.get_challenge(ctx)


def get_challenge_ex(ctx: CardContext, pin_id: int, flags: int = 0) -> bytes:
    """CardGetChallengeEx: only the admin role answers challenges."""
    if pin_id != ROLE_ADMIN or flags:
        raise E.MinidriverError(E.SCARD_E_INVALID_PARAMETER, "only the admin role answers challenges")
    return admin_key.get_challenge(ctx)


def authenticate_challenge(ctx: CardContext, response: bytes) -> int:
    """CardAuthenticateChallenge: the admin role by the admin key; returns the tries left."""
    return admin_key.authenticate_challenge(ctx, response)
