"""Fingerprint approval of requests: the card's PIN, sealed under its device-key layer (token/sealed_pin.py), is
unsealed only after fprintd reports that a finger enrolled for this user matches (requests/fprint.py), and the
request is then approved as with a typed PIN.

A no-match refuses the approval and is counted; after fingerprint_pin.MAX_FAILURES of them in a row only the PIN
approves, until an approval with the PIN. When the sealed PIN is refused by the card (the PIN was changed since),
the sealed copy is forgotten at once, so that it cannot use up the PIN's tries.
"""

from __future__ import annotations

from vsc_provider import log as vlog
from vsc_provider.requests.model import FingerprintUnavailable, RequestError
from vsc_provider.token import access, fingerprint_pin
from vsc_provider.token.engine import Card, Engine

log = vlog.get("vsc.requests")


def enabled(eng: Engine, card: Card) -> bool:
    return fingerprint_pin.entry(eng, card) is not None


def ready(eng: Engine, card: Card) -> bool:
    """Whether a fingerprint can approve for the card now: enabled, not locked by no-matches, and fprintd has a
    finger of this user enrolled."""
    from vsc_provider.requests import fprint  # jeepney loads only when a fingerprint is asked about

    return fingerprint_pin.usable(fingerprint_pin.entry(eng, card)) and fprint.ready()


def enable(eng: Engine, card: Card, pin: str) -> None:
    """Seal the PIN for fingerprint approval after checking it the card's way (a log-in, as an approval does);
    FingerprintUnavailable when fprintd has no finger of this user enrolled."""
    from vsc_provider.requests import fprint

    if not fprint.enrolled_fingers():
        raise FingerprintUnavailable("fprintd has no finger enrolled for this user: enrol one first (fprintd-enroll)")
    eng.poll()
    access.login(eng, card, pin.encode())
    try:
        fingerprint_pin.enable(eng, card, pin.encode())
    finally:
        access.logout(eng, card)
    log.info("card %s: fingerprint approval enabled", card.serial)


def disable(eng: Engine, card: Card) -> bool:
    was = fingerprint_pin.disable(eng, card)
    if was:
        log.info("card %s: fingerprint approval disabled", card.serial)
    return was


def pin_after_match(eng: Engine, card: Card) -> str:
    """The card's PIN, once fprintd reports a match. RequestError on a no-match (counted); FingerprintUnavailable
    when a fingerprint cannot approve for this card now."""
    entry = fingerprint_pin.entry(eng, card)
    if entry is None:
        raise FingerprintUnavailable(f"fingerprint approval is not enabled for card {card.label!r}")
    if not fingerprint_pin.usable(entry):
        raise FingerprintUnavailable(f"{fingerprint_pin.MAX_FAILURES} fingerprints did not match: approve with the PIN")
    from vsc_provider.requests import fprint

    if not fprint.verify():
        failures = fingerprint_pin.count_failure(eng, card)
        log.warning("card %s: a fingerprint did not match (%d in a row)", card.serial, failures)
        left = fingerprint_pin.MAX_FAILURES - failures
        if left <= 0:
            raise RequestError("the fingerprint did not match: approve with the PIN now")
        raise RequestError(f"the fingerprint did not match ({left} fingerprint tries left)")
    pin = fingerprint_pin.unseal(eng, card, entry)
    if pin is None:
        fingerprint_pin.disable(eng, card)
        raise FingerprintUnavailable("the sealed PIN does not open on this machine: enable fingerprint approval again")
    return pin.decode()


def pin_refused(eng: Engine, card: Card) -> None:
    """The card refused the sealed PIN (changed since): forget it."""
    fingerprint_pin.disable(eng, card)
    log.warning("card %s: the sealed PIN was refused; fingerprint approval is disabled", card.serial)


def approved(eng: Engine, card: Card) -> None:
    """An approval went through: the no-matches start from zero again."""
    entry = fingerprint_pin.entry(eng, card)
    if entry is not None and entry.get("failures"):
        fingerprint_pin.reset_failures(eng, card)
