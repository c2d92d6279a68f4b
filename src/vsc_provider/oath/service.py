"""OTP accounts on a named card, for the CLI and the Python API: add, list, code, delete."""

from __future__ import annotations

from typing import Any

from vsc_provider import api
from vsc_provider.oath.accounts import Account
from vsc_provider.token import otp_keys, service


def add(card_ref: str, accounts: list[Account], pin: str, label: str | None = None) -> list[dict[str, Any]]:
    """Store the accounts on the card, all or none (one store transaction): a name the card has (or one given
    twice), or any account the card refuses, stores none of them."""
    card = api.find_card(card_ref)
    engine = api.engine()
    with api.session(card, pin):
        new = [otp_keys.NewKey(acc.spec, acc.secret, acc.issuer, acc.account, label or "") for acc in accounts]
        return [otp_keys.describe(obj) for obj in otp_keys.add_all(engine, card, new)]


def listing(card_ref: str) -> list[dict[str, Any]]:
    """The card's OTP accounts (names and parameters: no PIN needed, no secret shown)."""
    card = api.find_card(card_ref)
    api.engine().poll()
    return [otp_keys.describe(o) for o in otp_keys.keys(card)]


def code(card_ref: str, name: str, pin: str, at: float | None = None) -> dict[str, Any]:
    """The account's code and the seconds it stays valid (TOTP); a HOTP code uses and advances the counter."""
    card = api.find_card(card_ref)
    engine = api.engine()
    with api.session(card, pin):
        obj = otp_keys.find(card, name)
        got = otp_keys.code(engine, card, obj, at=at)
        out: dict[str, Any] = {"name": otp_keys.display_name(obj), "code": got.code, "valid_for": got.valid_for}
        if got.valid_for is None:
            out["counter"] = got.moving_factor
        return out


def delete(card_ref: str, name: str, pin: str) -> str:
    card = api.find_card(card_ref)
    engine = api.engine()
    with api.session(card, pin):
        obj = otp_keys.find(card, name)
        shown = otp_keys.display_name(obj)
        service.destroy(engine, card, obj)
        return shown
