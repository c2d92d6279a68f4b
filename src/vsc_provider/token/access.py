"""Login state and PINs for the card service: log in and out of a card, change the user PIN, and the SO's
reset of it, each under the card's PIN policy, wrong-try counters and waiting periods (the engine's PIN check).

The same rules as PKCS#11's C_Login, C_Logout, C_SetPIN and C_InitPIN, without sessions: login state belongs
to the card within this process (its engine), as the standard's "application" holds it.
"""

from __future__ import annotations

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.engine import Card, Engine


def login(engine: Engine, card: Card, pin: bytes, so: bool = False) -> None:
    """Log the user (or the SO) in with a PIN; refused while anyone is logged in to the card here."""
    if card.user or card.so:
        if card.so == so and card.user == (not so):
            raise CKRError(C.CKR_USER_ALREADY_LOGGED_IN)
        raise CKRError(C.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    engine.login(card, so, pin)


def logout(engine: Engine, card: Card) -> None:
    """Forget the card's data key and loaded keys in this process."""
    engine.logout(card)


def change_pin(engine: Engine, card: Card, old: bytes, new: bytes, so: bool | None = None) -> None:
    """A new PIN proved by the old one (its try counted like a login's): the SO's while the SO is logged in
    (or given so=True), else the user's, which on a server-checked card changes on its server too (C_SetPIN's
    rules)."""
    so = card.so if so is None else so
    card.policy.pin.check(new, so=so)
    data_key = engine.verify_pin(card, so, old)
    saved = card.data_key
    card.data_key = data_key
    try:
        if so:
            engine.set_so_pin(card, new)
        else:
            engine.set_user_pin(card, new, old_pin=old)
    finally:
        card.data_key = saved if (card.user or card.so) else None


def reset_pin(engine: Engine, card: Card, so_pin: bytes, new: bytes) -> None:
    """The SO sets a new user PIN (which also unblocks a card blocked by wrong PINs): logs the SO in for the
    change and out again."""
    login(engine, card, so_pin, so=True)
    try:
        engine.set_user_pin(card, new)
    finally:
        logout(engine, card)
