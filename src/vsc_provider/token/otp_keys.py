"""A card's OTP keys: storing one, finding one by name, and its codes, with HOTP counters advanced in the store.

A HOTP code is taken in one write transaction of the store (BEGIN IMMEDIATE): read the committed counter,
write it plus one, compute the code for the counter read. Two processes asking at once are serialised by
SQLite's write lock, so they never get the same code; a code whose transaction rolled back was never given.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import audit, otp, sealing
from vsc_provider.token.card import Card
from vsc_provider.token.engine import Engine
from vsc_provider.token.objects import TokenObject


def keys(card: Card) -> list[TokenObject]:
    """The card's OTP keys, in the order they were stored."""
    return [o for o in list(card.objects.values()) if o.klass == C.CKO_OTP_KEY]


def display_name(obj: TokenObject) -> str:
    """`issuer:account` as in an otpauth label (the account alone when there is no issuer)."""
    issuer, account, label = otp.names(obj.attrs)
    return account_name(issuer, account) or label  # a PKCS#11 program may give a label only


def find(card: Card, name: str) -> TokenObject:
    """The OTP key named `issuer:account`, its label, or its account alone when only one key has it."""
    found = keys(card)
    for pick in (
        lambda o: display_name(o) == name,
        lambda o: otp.names(o.attrs)[2] == name,
        lambda o: otp.names(o.attrs)[1] == name,
    ):
        hits = [o for o in found if pick(o)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise CKRError(C.CKR_ARGUMENTS_BAD, f"several OTP accounts match {name!r}: name it issuer:account")
    raise CKRError(C.CKR_KEY_HANDLE_INVALID, f"no OTP account {name!r} on card {card.label!r}")


def account_name(issuer: str, account: str) -> str:
    """An account's name on the card: `issuer:account` as in an otpauth label, or the account alone."""
    return f"{issuer}:{account}" if issuer else account


def refuse_taken(card: Card, names: list[str]) -> None:
    """Refuse names the card already has, or that come twice in `names` (before anything is stored)."""
    _refuse(names, {display_name(o) for o in keys(card)})


def _refuse(names: list[str], taken: set[str]) -> None:
    for i, name in enumerate(names):
        if name in taken:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"the card already has an OTP account {name!r}")
        if name in names[:i]:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"the OTP account {name!r} is given twice")


class NewKey(NamedTuple):
    """One OTP key to store: what it computes, its secret and its names."""

    spec: otp.OtpSpec
    secret: bytes
    issuer: str
    account: str
    label: str = ""


def add(
    engine: Engine, card: Card, spec: otp.OtpSpec, secret: bytes, issuer: str, account: str, label: str = ""
) -> TokenObject:
    """Store an OTP key (the user logged in: its secret is sealed under the card's data key)."""
    return add_all(engine, card, [NewKey(spec, secret, issuer, account, label)])[0]


def add_all(engine: Engine, card: Card, new: list[NewKey]) -> list[TokenObject]:
    """Store OTP keys all or none, in one store transaction: any refused (a bad spec, an empty secret or
    name, a name the card has or that comes twice, one another process stored meanwhile) stores none."""
    if not card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "storing an OTP secret needs the user to log in")
    names = []
    for key in new:
        if not key.secret:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "the OTP secret is empty")
        if not key.account:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "the OTP account name is empty")
        names.append(account_name(key.issuer, key.account))
    engine.poll()
    refuse_taken(card, names)
    items: list[tuple[dict[int, bytes], bytes | None]] = [
        (otp.key_attrs(key.spec, key.issuer, key.account, key.label or name, os.urandom(8)), key.secret)
        for key, name in zip(new, names, strict=True)
    ]
    return engine.add_objects(card, items, True, 0, check=still_free_check(names))


def still_free_check(names: list[str]) -> Callable[[list[dict[int, bytes]]], None]:
    """A check for Engine.add_objects: inside the write, refuse names the card's committed OTP keys have
    (stored by another process since this one looked)."""

    def still_free(committed: list[dict[int, bytes]]) -> None:
        otp_names = (otp.names(a) for a in committed if A.get_ulong(a, C.CKA_CLASS) == C.CKO_OTP_KEY)
        _refuse(names, {account_name(issuer, account) or label for issuer, account, label in otp_names})

    return still_free


def _secret(engine: Engine, card: Card, obj: TokenObject) -> bytes:
    if not card.user or card.data_key is None:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in to use an OTP key")
    return bytes(sealing.crypto_key(engine.device_key, card, obj))  # unsealed once per login, as keys are


def code(engine: Engine, card: Card, obj: TokenObject, at: float | None = None, counter: int | None = None) -> otp.Code:
    """The key's current code: TOTP at `at` (now by default); HOTP at the stored counter, which moves on by
    one, or at a given `counter` (nothing stored changes: a look-up, as PKCS#11's CK_OTP_COUNTER allows)."""
    spec = otp.spec_of(obj.attrs)
    mech = C.CKM_VSC_TOTP if spec.kind == "totp" else C.CKM_HOTP
    try:
        secret = _secret(engine, card, obj)
        if spec.kind == "totp":
            got = otp.totp(secret, time.time() if at is None else at, spec)
        elif counter is not None:
            got = otp.Code(otp.hotp(secret, counter, spec.digits, spec.algorithm), counter, None)
        else:
            got = _next_hotp(engine, card, obj, secret)
    except CKRError as exc:
        engine.key_used(card, obj, audit.OTP_CODE, mech, exc.rv)
        raise
    engine.key_used(card, obj, audit.OTP_CODE, mech)
    return got


def _next_hotp(engine: Engine, card: Card, obj: TokenObject, secret: bytes) -> otp.Code:
    with engine.lock:
        with engine.store.transaction() as db:
            attrs = engine.store.object_attrs(db, obj.handle)
            if attrs is None:
                raise CKRError(C.CKR_KEY_HANDLE_INVALID, "the OTP key was deleted")
            spec = otp.spec_of(attrs)
            if spec.counter >= otp.MAX_COUNTER:
                raise CKRError(C.CKR_FUNCTION_FAILED, "the HOTP counter is at its end")
            attrs[C.CKA_OTP_COUNTER] = otp.counter_bytes(spec.counter + 1)
            engine.store.update_object(db, obj.handle, attrs)
            value = otp.hotp(secret, spec.counter, spec.digits, spec.algorithm)
        obj.attrs = attrs
        return otp.Code(value, spec.counter, None)


def describe(obj: TokenObject) -> dict[str, object]:
    """What `vsc otp list` shows of a key: names and parameters, never the secret."""
    spec = otp.spec_of(obj.attrs)
    issuer, account, label = otp.names(obj.attrs)
    out: dict[str, object] = {
        "name": display_name(obj),
        "issuer": issuer,
        "account": account,
        "label": label,
        "type": spec.kind,
        "algorithm": spec.algorithm,
        "digits": spec.digits,
        "id": obj.attrs.get(C.CKA_ID, b"").hex(),
    }
    if spec.kind == "totp":
        out["period"] = spec.period
        if spec.t0:
            out["t0"] = spec.t0
    else:
        out["counter"] = spec.counter
    unique = A.decode(C.CKA_UNIQUE_ID, obj.attrs.get(C.CKA_UNIQUE_ID, b""))
    out["unique_id"] = unique
    return out
