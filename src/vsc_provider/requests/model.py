"""What the device-side pieces of the requests feature share: a pending request as the user sees it, the
source the approval page and the CLI read requests from, and the policy hook's answer.

docs/protocol.md ("Requests") describes the messages these come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

DECISIONS = ("accept", "reject", "ask")


class RequestError(Exception):
    """A request cannot be shown, approved or rejected; the message is one line for the user."""


class FingerprintUnavailable(RequestError):
    """A fingerprint cannot approve here (not enabled for the card, no fprintd or enrolled finger, too many
    no-matches, no finger in time): the PIN is asked instead."""


@dataclass(frozen=True)
class MetadataItem:
    type: Literal["text", "pdf", "image", "raw"]
    label: str
    data: bytes  # UTF-8 for text; the file's bytes for pdf and image; the bytes themselves for raw


@dataclass(frozen=True)
class PendingRequest:
    """A request the server signed, verified by the device, not yet answered."""

    id: str
    card: str  # the card's serial
    card_label: str
    kind: Literal["auth", "sign"]
    rp: str  # the relying party's name, as the server registered it
    alg: str  # RS256 RS512 PS256 ES256 ES384
    format: Literal["jws", "cms"]
    metadata: tuple[MetadataItem, ...]
    expires: float  # UNIX time
    display_hash: str  # b64u SHA-256 of the signed request's payload: everything shown
    branding: dict[str, Any] = field(default_factory=dict)  # {"name", "logo" (data: URI), "colour" (#rrggbb)}
    document: dict[str, Any] = field(default_factory=dict)  # the whole verified request payload


class RequestSource(Protocol):
    """Where the approval page and `vsc requests` get requests from and send answers to."""

    def pending(self) -> list[PendingRequest]: ...

    def approve(self, request_id: str, pin: str) -> None:
        """Sign with the card's key after checking the PIN the card's way; RequestError when refused."""

    def reject(self, request_id: str) -> None: ...


@runtime_checkable
class FingerprintSource(Protocol):
    """A source that can also approve after a fingerprint match (requests/fingerprint.py)."""

    def fingerprint_ready(self, request: PendingRequest) -> bool:
        """Whether the request's card can be approved with a fingerprint now (no reader is claimed)."""

    def approve_with_fingerprint(self, request_id: str) -> None:
        """Approve after fprintd reports a match; RequestError on a no-match, FingerprintUnavailable when a
        fingerprint cannot decide (the PIN is asked instead)."""


@dataclass(frozen=True)
class Decision:
    """A policy hook's answer: `ask` leaves it to the user; `reject` refuses at once; `accept` approves
    without asking, with a PIN the implementer's policy supplies (unattended machines)."""

    action: Literal["accept", "reject", "ask"]
    pin: str | None = None
    reason: str = ""


class Policy(Protocol):
    def __call__(self, request: PendingRequest) -> Decision: ...
