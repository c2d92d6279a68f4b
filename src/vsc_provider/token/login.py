"""PIN checks: the card's data key wrapped under a PIN (and the device key, and for a server-checked card a
server-held layer), unwrapped by a PIN try counted in the store so that processes guessing at once share one
counter, with the policy's lockout and waiting periods."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import keywrap
from vsc_provider.token.card import Card
from vsc_provider.token.store import Store


class PinBlocked(CKRError):
    """CKR_PIN_LOCKED raised by the wrong try that blocked the PIN (the audit log records the block)."""


def aad(serial: str, role: str) -> bytes:
    return f"vsc-card:{serial}:{role}".encode()


def wrap(
    device_key: bytes,
    data_key: bytes,
    kdf_input: bytes,
    salt: bytes,
    kdf: keywrap.KdfParams,
    serial: str,
    role: str,
    server_secret: bytes | None = None,
) -> bytes:
    """Wrap the data key under a PIN (as its policy's kdf_input gives it) and the device key."""
    kek = keywrap.derive(kdf_input, salt, kdf)
    layers = [kek, server_secret, device_key] if server_secret else [kek, device_key]
    return keywrap.wrap_layers(data_key, layers, aad(serial, role))


def wrapped_fields(
    device_key: bytes, card: Card, role: str, data_key: bytes, pin: bytes, server_secret: bytes | None = None
) -> dict[str, Any]:
    """A role's new salt and wrapped data key, as store fields, for a PIN on an existing card."""
    salt = os.urandom(16)
    kdf = keywrap.KdfParams(**card.record.kdf)
    secret_input = card.policy.pin.kdf_input(pin)
    wrapped = wrap(device_key, data_key, secret_input, salt, kdf, card.serial, role, server_secret)
    return {f"{role}_salt": salt, f"{role}_wrapped": wrapped}


def unlock(
    store: Store,
    device_key: bytes,
    card: Card,
    so: bool,
    pin: bytes,
    server_secret: bytes | None,
    reload: Callable[[], object],
) -> bytes:
    """Check a PIN against the store's counters and return the card's data key (`reload` runs once the try
    is settled, before a refusal is raised).

    The try is counted before the (slow) check, in its own transaction; a try inside a waiting period is
    refused without being checked or counted. A PIN of a shape the policy never allows is refused before
    the KDF and not counted."""
    role = "so" if so else "user"
    policy = card.policy.pin
    malformed = not policy.may_be(pin, so=so)
    now = time.time()
    with store.transaction() as db:
        rec = store.card(db, card.slot_id)
        if rec is None:
            raise CKRError(C.CKR_TOKEN_NOT_PRESENT, "the card was deleted")
        wrapped, salt = (rec.so_wrapped, rec.so_salt) if so else (rec.user_wrapped, rec.user_salt)
        failures = rec.so_failures if so else rec.user_failures
        blocked_until = rec.so_blocked_until if so else rec.user_blocked_until
        if wrapped is None or salt is None:
            raise CKRError(C.CKR_USER_PIN_NOT_INITIALIZED, "the user PIN is not set")
        # The outer layer needs only the device key: a store copied to another machine fails here,
        # before any PIN try is counted.
        inner = keywrap.unseal(device_key, wrapped, aad(rec.serial, role))
        if inner is None:
            raise CKRError(C.CKR_DEVICE_ERROR, "this card store belongs to another device (device key mismatch)")
        if failures >= policy.max_tries:
            raise CKRError(C.CKR_PIN_LOCKED, f"{role} PIN blocked after {failures} wrong tries")
        if now < blocked_until:
            raise CKRError(
                C.CKR_FUNCTION_FAILED, f"{role} PIN tries refused for {blocked_until - now:.1f} more seconds"
            )
        if malformed:
            raise CKRError(C.CKR_PIN_INCORRECT, f"wrong {role} PIN (not a PIN this card's policy allows)")
        store.update_card(db, card.slot_id, **{f"{role}_failures": failures + 1})
    card.replace_record(rec)
    if server_secret is not None:
        inner = keywrap.unseal(server_secret, inner, aad(rec.serial, role)) or b""
    kek = keywrap.derive(policy.kdf_input(pin), salt, keywrap.KdfParams(**rec.kdf))
    data_key = keywrap.unseal(kek, inner, aad(rec.serial, role))
    with store.transaction() as db:
        current = store.card(db, card.slot_id)
        if current is None:
            raise CKRError(C.CKR_TOKEN_NOT_PRESENT, "the card was deleted")
        counted = current.so_failures if so else current.user_failures
        if data_key is not None:
            store.update_card(db, card.slot_id, **{f"{role}_failures": 0, f"{role}_blocked_until": 0.0})
        else:
            delay = policy.delay_after(counted)
            until = time.time() + delay if delay else 0.0  # the period starts when the failure is known
            store.update_card(db, card.slot_id, **{f"{role}_blocked_until": until})
    reload()
    if data_key is None:
        # This try's own number decides the answer, so concurrent tries get consistent answers.
        this_try = failures + 1
        if this_try >= policy.max_tries:
            raise PinBlocked(C.CKR_PIN_LOCKED, f"{role} PIN blocked after {this_try} wrong tries")
        raise CKRError(C.CKR_PIN_INCORRECT, f"wrong {role} PIN ({this_try} of {policy.max_tries} tries used)")
    return data_key
