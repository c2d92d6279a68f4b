"""The card service's side of fingerprint approval: a card's sealed PIN (token/sealed_pin.py) kept in its
engine's store under the card's device-key layer, and the count of fingerprint no-matches, for the front end
that approves requests (requests/fingerprint.py), which never reaches the store itself."""

from __future__ import annotations

from typing import Any

from vsc_provider.token import sealed_pin
from vsc_provider.token.engine import Card, Engine

MAX_FAILURES = sealed_pin.MAX_FAILURES
usable = sealed_pin.usable


def entry(engine: Engine, card: Card) -> dict[str, Any] | None:
    """The card's sealed PIN entry, or None when fingerprint approval is not enabled for it."""
    return sealed_pin.read(engine.store, card)


def enable(engine: Engine, card: Card, pin: bytes) -> None:
    """Seal PIN (the caller has checked it) under the card's device-key layer; the count starts at zero."""
    sealed_pin.enable(engine.store, card, engine.layer_key(card), pin)


def disable(engine: Engine, card: Card) -> bool:
    """Forget the sealed PIN; whether there was one."""
    return sealed_pin.disable(engine.store, card)


def unseal(engine: Engine, card: Card, found: dict[str, Any]) -> bytes | None:
    """The PIN of an entry; None when it does not open on this machine."""
    return sealed_pin.unseal(card, engine.layer_key(card), found)


def count_failure(engine: Engine, card: Card) -> int:
    """One more no-match; the count now."""
    return sealed_pin.count_failure(engine.store, card)


def reset_failures(engine: Engine, card: Card) -> None:
    """After an approval: the no-matches start again from zero."""
    sealed_pin.reset_failures(engine.store, card)
