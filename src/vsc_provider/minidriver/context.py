"""CardAcquireContext / CardDeleteContext: a context is one card of the store seen through the card edge, with
what the specification keeps per context (the admin role's state, container names a CSP wrote to cmapfile
before creating the container, files created but not yet written, ECDH agreements)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from vsc_provider import config
from vsc_provider.ck.errors import CKRError
from vsc_provider.minidriver import errors as E
from vsc_provider.token.engine import Card, Engine

CARD_DATA_VERSION_FOUR = 4
CARD_DATA_VERSION_SEVEN = 7
CARD_DATA_CURRENT_VERSION = CARD_DATA_VERSION_SEVEN

_engines: dict[str, Engine] = {}


def default_engine() -> Engine:
    """This process's card-edge engine over the store at VSC_HOME, with server-checked PINs reaching their
    server as they do from PKCS#11 and the `vsc` command."""
    where = str(config.store_path())
    eng = _engines.get(where)
    if eng is None:
        eng = Engine()
        from vsc_provider.provisioning.online import ServerPinCheck

        eng.online = ServerPinCheck()
        eng.audit.front_end = "minidriver"
        _engines.clear()
        _engines[where] = eng
    return eng


@dataclass
class CardContext:
    """CARD_DATA's card-module side for one card."""

    engine: Engine
    slot_id: int
    version: int
    admin: bool = False
    pending_names: dict[int, str] = field(default_factory=dict)
    created_files: dict[tuple[str, str], int] = field(default_factory=dict)  # access conditions
    created_dirs: set[str] = field(default_factory=set)  # made by CardCreateDirectory, no file in them yet
    agreements: dict[int, bytes] = field(default_factory=dict)
    challenge: bytes | None = None  # the last admin challenge, good for one response

    @property
    def card(self) -> Card:
        try:
            return self.engine.card(self.slot_id)
        except CKRError as exc:
            raise E.from_ckr(exc) from None

    def fresh(self) -> Card:
        """The card after reading whatever another process (a PKCS#11 host, `vsc`) committed."""
        self.engine.poll()
        return self.card


def acquire_context(
    card_ref: str, version: int = CARD_DATA_CURRENT_VERSION, engine: Engine | None = None
) -> CardContext:
    """CardAcquireContext on the card with this serial or label. `version` is CARD_DATA's dwVersion: below 4 is
    ERROR_REVISION_MISMATCH, above 7 is answered as 7 (the context's version is the lower one)."""
    if version < CARD_DATA_VERSION_FOUR:
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_DATA version {version} is older than 4")
    eng = engine or default_engine()
    eng.refresh()
    matches = [c for c in eng.cards.values() if card_ref.lower() in (c.serial.lower(), c.label.lower())]
    if len(matches) != 1:
        reason = "no card" if not matches else "several cards"
        raise E.MinidriverError(E.SCARD_E_NO_SMARTCARD, f"{reason} named {card_ref!r} in {eng.store.path}")
    return CardContext(eng, matches[0].slot_id, min(version, CARD_DATA_CURRENT_VERSION))


CARD_ENV = "VSC_MINIDRIVER_CARD"


def acquire_for_caller(
    card_name: str, version: int = CARD_DATA_CURRENT_VERSION, engine: Engine | None = None
) -> CardContext:
    """CardAcquireContext from a C caller, which names no card of the store: the card whose label or serial
    VSC_MINIDRIVER_CARD gives; without it, the card whose label or serial is CARD_DATA's pwszCardName; else
    the store's only card (SCARD_E_NO_SMARTCARD when there are none or several)."""
    wanted = os.environ.get(CARD_ENV, "").strip()
    if wanted:
        return acquire_context(wanted, version, engine)
    if version < CARD_DATA_VERSION_FOUR:
        raise E.MinidriverError(E.ERROR_REVISION_MISMATCH, f"CARD_DATA version {version} is older than 4")
    eng = engine or default_engine()
    eng.refresh()
    named = card_name.strip().lower()
    cards = list(eng.cards.values())
    matches = [c for c in cards if named and named in (c.serial.lower(), c.label.lower())]
    if len(matches) != 1:
        matches = cards
    if len(matches) != 1:
        raise E.MinidriverError(
            E.SCARD_E_NO_SMARTCARD, f"{len(matches)} cards in {eng.store.path}: set {CARD_ENV} to a label or serial"
        )
    return CardContext(eng, matches[0].slot_id, min(version, CARD_DATA_CURRENT_VERSION))


def delete_context(ctx: CardContext) -> None:
    """CardDeleteContext: the context's secrets go (agreements, the admin role); the card's login state is the
    engine's, shared with other contexts of this process, and stays. The audit journal is folded now: a C
    caller may exit next without running Python's exit handlers (the journal would wait for the next fold)."""
    ctx.agreements.clear()
    ctx.admin = False
    ctx.challenge = None
    ctx.pending_names.clear()
    ctx.created_files.clear()
    ctx.created_dirs.clear()
    ctx.engine.audit.flush()
