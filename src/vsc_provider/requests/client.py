"""The card's requests as the device handles them: fetched from its server with the device key (no PIN),
verified, approved with the card's key after the PIN check the card's way, or rejected.

Each card is on its own: a card whose server cannot be reached, or whose requests do not verify, leaves the
others' requests as they are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vsc_provider import api
from vsc_provider import log as vlog
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.provisioning import client as provisioning
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.http import ServerError
from vsc_provider.requests import fingerprint, signing
from vsc_provider.requests.model import FingerprintUnavailable, PendingRequest, RequestError
from vsc_provider.requests.verify import RefusedRequest, UnknownKey, pending_request
from vsc_provider.token import service
from vsc_provider.token.engine import Card, Engine

log = vlog.get("vsc.requests")


class Gone(RequestError):
    """The request cannot be answered any more: expired, or decided, expired or cancelled on the server."""


class PinRefused(RequestError):
    """The card refused the PIN (wrong, or blocked)."""


def bound_cards(eng: Engine) -> list[Card]:
    """The cards with an active binding to an identity server."""
    eng.refresh()
    cards = sorted(eng.cards.values(), key=lambda c: c.slot_id)
    return [c for c in cards if (c.record.server or {}).get("state") == "active"]


def server_jwks(eng: Engine, card: Card, again: bool = False) -> dict[str, Any]:
    """The server's protocol key as the binding keeps it (every status call refreshes it), fetched from GET
    /v1/server when absent (or, with again, when a request names another key: the server may have changed
    its key)."""
    binding = provisioning.active_binding(card)
    if "server_jwks" in binding and not again:
        return dict(binding["server_jwks"])
    jwks = provisioning.learn_server(eng, card)
    if jwks is None:
        raise RequestError("the server did not name its protocol keys")
    return dict(jwks)


def verify(eng: Engine, card: Card, compact: str, now: float | None = None) -> PendingRequest:
    """One request JWS for this card, verified against its binding; RefusedRequest if it does not verify."""
    binding = provisioning.active_binding(card)
    try:
        return pending_request(compact, server_jwks(eng, card), binding, card.serial, card.label, now)
    except UnknownKey:
        jwks = server_jwks(eng, card, again=True)
        return pending_request(compact, jwks, binding, card.serial, card.label, now)


@dataclass
class Fetched:
    requests: list[PendingRequest]
    refused: list[RefusedRequest] = field(default_factory=list)
    relay: dict[str, Any] | None = None  # {"url", "topic"} when the server notifies through a push relay


def fetch(eng: Engine, card: Card) -> Fetched:
    """The card's pending requests from its server (POST /v1/requests with the device key)."""
    answer = provisioning.device_call(card, "/v1/requests", {}, eng)
    out = Fetched([], relay=answer.get("relay") if isinstance(answer.get("relay"), dict) else None)
    for compact in answer.get("requests", []):
        try:
            out.requests.append(verify(eng, card, compact))
        except RefusedRequest as exc:
            log.info("card %s: a request was refused: %s", card.serial, exc)
            out.refused.append(exc)
    return out


def _key_id(card: Card, request: PendingRequest) -> bytes:
    wanted = request.document.get("key")
    for entry in (card.record.server or {}).get("keys", []):
        if entry.get("id") == wanted:
            return bytes.fromhex(entry["key_id"])
    raise RequestError(f"request {request.id}: card {card.serial} has no key {wanted!r}")


def _certificate(card: Card, key_id: bytes) -> bytes:
    for obj in service.with_key_id(card, key_id, C.CKO_CERTIFICATE):
        return bytes(obj.attrs[C.CKA_VALUE])
    raise RequestError(f"card {card.serial} has no certificate for its key {key_id.hex()}")


def _pin_error(card: Card, exc: CKRError) -> RequestError:
    if exc.rv == C.CKR_PIN_INCORRECT:
        if exc.reason and "tries left" in exc.reason:
            return PinRefused(exc.reason)  # the server's count
        left = max(card.policy.pin.max_tries - card.record.user_failures, 0)
        return PinRefused(f"wrong PIN ({left} tries left)")
    if exc.rv == C.CKR_PIN_LOCKED:
        return PinRefused("the PIN is blocked")
    return RequestError(exc.reason or f"the card refused: 0x{exc.rv:x}")


def _answer(eng: Engine, card: Card, request: PendingRequest, payload: dict[str, Any]) -> None:
    body = {"id": request.id, "display_hash": request.display_hash, **payload}
    try:
        provisioning.device_call(card, "/v1/requests/answer", body, eng)
    except ServerError as exc:
        if exc.error == "not_pending":
            raise Gone(f"request {request.id} is no longer pending (answered, expired or cancelled)") from None
        raise RequestError(f"the server refused the answer to request {request.id}: {exc}") from None


def _check_fresh(request: PendingRequest, now: float) -> None:
    if request.expires <= now:
        raise Gone(f"request {request.id} expired")


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _login_lock(card: Card) -> threading.Lock:
    """Approvals of one card in this process take turns: its login state is the process's."""
    with _locks_guard:
        return _locks.setdefault(card.serial, threading.Lock())


def approve(eng: Engine, card: Card, request: PendingRequest, pin: str) -> None:
    """Check the PIN the card's way (a server-checked card asks its server), sign with the request's key (its
    PIN given again for a key that wants it for every signature), answer the server."""
    now = time.time()
    _check_fresh(request, now)
    key_id = _key_id(card, request)
    certificate = _certificate(card, key_id)

    def sign(mechanism: Mechanism, data: bytes) -> bytes:
        return service.sign(eng, card, key_id, mechanism, data, confirm_pin=pin.encode())

    try:
        with _login_lock(card), api.session(card, pin=pin):
            signature = signing.answer_signature(request, sign, certificate, now)
    except CKRError as exc:
        eng.refresh(force=True)
        raise _pin_error(card, exc) from None
    _answer(eng, card, request, {"decision": "approve", "signature": signature, "certificate": wire.b64u(certificate)})
    fingerprint.approved(eng, card)
    log.info("card %s: approved request %s of %s", card.serial, request.id, request.rp)
    provisioning.renew_if_requested(card.serial, pin)  # the PIN is at hand: a renewal the server asked for


def approve_with_fingerprint(eng: Engine, card: Card, request: PendingRequest) -> None:
    """Approve with the card's sealed PIN once fprintd reports a match (requests/fingerprint.py)."""
    _check_fresh(request, time.time())
    pin = fingerprint.pin_after_match(eng, card)
    try:
        approve(eng, card, request, pin)
    except PinRefused:
        fingerprint.pin_refused(eng, card)
        raise FingerprintUnavailable(
            "the card refused the sealed PIN (changed since?): fingerprint approval is disabled, type the PIN"
        ) from None


def fingerprint_ready(eng: Engine, card: Card) -> bool:
    return fingerprint.ready(eng, card)


def reject(eng: Engine, card: Card, request: PendingRequest) -> None:
    _check_fresh(request, time.time())
    _answer(eng, card, request, {"decision": "reject"})
    log.info("card %s: rejected request %s of %s", card.serial, request.id, request.rp)


class CardRequests:
    """A RequestSource over every bound card of this machine's store, asking each card's server."""

    def __init__(self, eng: Engine | None = None, on_error: Callable[[Card, Exception], None] | None = None) -> None:
        self.eng = eng or api.engine()
        self.on_error = on_error
        self.known: dict[str, PendingRequest] = {}
        self.refused: dict[str, RefusedRequest] = {}  # by request id, those whose server signature verified
        self.refused_count = 0

    def pending(self) -> list[PendingRequest]:
        found: dict[str, PendingRequest] = {}
        self.refused, self.refused_count = {}, 0
        for card in bound_cards(self.eng):
            try:
                fetched = fetch(self.eng, card)
                found.update((r.id, r) for r in fetched.requests)
                self.refused.update((r.request_id, r) for r in fetched.refused if r.request_id)
                self.refused_count += len(fetched.refused)
            except (ServerError, provisioning.CardWiped) as exc:
                log.warning("card %s: cannot fetch its requests: %s", card.serial, exc)
                if self.on_error is not None:
                    self.on_error(card, exc)
        self.known = found
        return sorted(found.values(), key=lambda r: r.expires)

    def find(self, request_id: str) -> PendingRequest:
        request = self.known.get(request_id)
        if request is None:
            self.pending()
            request = self.known.get(request_id)
        if request is None:
            if request_id in self.refused:
                raise RequestError(str(self.refused[request_id]))
            raise RequestError(f"no pending request {request_id}")
        return request

    def _card(self, request: PendingRequest) -> Card:
        try:
            return api.find_card(request.card)
        except CKRError:
            raise RequestError(f"card {request.card} is gone") from None

    def approve(self, request_id: str, pin: str) -> None:
        request = self.find(request_id)
        approve(self.eng, self._card(request), request, pin)
        self.known.pop(request_id, None)

    def fingerprint_ready(self, request: PendingRequest) -> bool:
        try:
            card = self._card(request)
        except RequestError:
            return False
        return fingerprint.ready(self.eng, card)

    def approve_with_fingerprint(self, request_id: str) -> None:
        request = self.find(request_id)
        approve_with_fingerprint(self.eng, self._card(request), request)
        self.known.pop(request_id, None)

    def reject(self, request_id: str) -> None:
        request = self.find(request_id)
        reject(self.eng, self._card(request), request)
        self.known.pop(request_id, None)
