"""What the token needs from a card's identity server, as an interface the token defines and provisioning
implements: the online PIN check (a server-held layer of the data key) and the server's renewal flag.

Whoever starts an engine installs the implementation (`Engine.online`): the PKCS#11 layer at C_Initialize,
so the `vsc` CLI, the Python API and the module in any host process all get it. The token never imports
provisioning.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from vsc_provider.token.store import CardRecord


class PinAnswer(NamedTuple):
    """A PIN the server accepted: its layer of the card's data key, and whether it asks for new keys."""

    secret: bytes
    renew: bool


class OnlinePinCheck(Protocol):
    """The server side of a server-checked PIN (the card's binding says `pin_check: server`).

    Both calls raise CKRError with the PKCS#11 meaning of the server's answer (CKR_PIN_INCORRECT,
    CKR_PIN_LOCKED, CKR_DEVICE_ERROR when the server cannot be reached)."""

    def check(self, record: CardRecord, pin: bytes, device_key: bytes) -> PinAnswer:
        """Prove the PIN to the card's server (never sending it) and get the server's key layer."""
        ...

    def change(self, record: CardRecord, old_pin: bytes, new_pin: bytes, device_key: bytes) -> bytes:
        """Change the PIN on the server (proved by the old one); the server's key layer for the new PIN.
        The server accepts both PINs until a `check` with the new one confirms the change."""
        ...
