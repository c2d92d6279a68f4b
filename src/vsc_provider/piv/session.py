"""One card seen through the PIV card edge: the card of the store, the slot mapping, and the security state a
PIV card keeps between commands (the management key proved, a pending witness or challenge). The PIN's state
is the engine's login (shared with whatever else this process does with the card)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vsc_provider.piv import management_key as M
from vsc_provider.piv.apdu import SW_SECURITY, ApduError
from vsc_provider.token.engine import Card, Engine


@dataclass
class PivSession:
    engine: Engine
    slot_id: int
    slot_ids: dict[int, bytes]
    admin: M.ManagementKey | None = None  # the management key, once proved
    witness: bytes | None = None
    challenge: bytes | None = None
    pin_just_verified: bytes | None = None  # for one signature by a key that wants its PIN each time

    @property
    def card(self) -> Card:
        return self.engine.card(self.slot_id)

    def fresh(self) -> Card:
        """The card after whatever another process (a PKCS#11 host, `vsc`) committed."""
        self.engine.poll()
        return self.card

    def reset(self) -> None:
        """Power off or reset: the PIN and the management key are no longer proved."""
        self.admin = None
        self.witness = self.challenge = None
        self.pin_just_verified = None
        self.engine.logout(self.card)

    @contextmanager
    def as_administrator(self) -> Iterator[Card]:
        """The card with its data key from the proved management key, for storing keys and certificates
        (the user's login state is as before afterwards)."""
        if self.admin is None:
            raise ApduError(SW_SECURITY, "authenticate with the management key first")
        card = self.fresh()
        if card.user:
            yield card
            return
        try:
            key = M.data_key(self.engine, card, self.admin)
        except M.ManagementKeyError as exc:
            raise ApduError(SW_SECURITY, str(exc)) from None
        card.data_key, card.user = key, True
        try:
            yield card
        finally:
            self.engine.logout(card)
