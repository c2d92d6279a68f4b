"""POST /v1/otp/verify: a relying party (with its API key) asks whether a code of a card's OATH seed is right.

TOTP: the steps within the seed's window either side of now; each step is accepted once (a code of the last
step accepted or an older one is refused as replayed). HOTP: the counters from the next one expected through
the look-ahead window; a match moves the counter past it. A match further on (within the resync range) is
remembered, and the very next code must be the one after it: then the counter moves past both (RFC 4226
section 7.4). Wrong codes are throttled like server-checked PINs (throttle.py: the same growing waits, the
block at the tenth that the administrator's unblock clears), decided and stored in one transaction under the
device row's lock, so concurrent verifications in any number of instances cannot both use one code.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.hotp import HOTP
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from vsc_provider.server.db_otp import OtpSeed
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.relying_parties import RelyingParty
from vsc_provider.server.request_input import bad
from vsc_provider.server.state import IdentityServer
from vsc_provider.server.throttle import check_held, policy
from vsc_provider.token.pin import PinPolicy

log = logging.getLogger("vsc.server")

FIELDS = ("user", "device", "code")
MAX_BODY = 4096


def _hash(name: str) -> hashes.HashAlgorithm:
    # HMAC-SHA-1 is RFC 4226's and what most authenticators compute; HMAC does not rely on SHA-1's collisions
    by_name: dict[str, hashes.HashAlgorithm] = {
        "SHA1": hashes.SHA1(),  # noqa: S303
        "SHA256": hashes.SHA256(),
        "SHA512": hashes.SHA512(),
    }
    return by_name[name]


def _matcher(seed: OtpSeed, code: str) -> Callable[[int], bool]:
    """Whether `code` is the seed's code at a HOTP counter or TOTP step (compared in constant time)."""
    given = code.encode()
    if len(given) != seed.digits:
        return lambda _: False
    if seed.kind == "totp":
        totp = TOTP(seed.seed, seed.digits, _hash(seed.algorithm), seed.period)  # type: ignore[arg-type]
        return lambda step: hmac.compare_digest(totp.generate(step * seed.period), given)
    hotp = HOTP(seed.seed, seed.digits, _hash(seed.algorithm))  # type: ignore[arg-type]
    return lambda counter: hmac.compare_digest(hotp.generate(counter), given)


def match(seed: OtpSeed, code: str, now: float) -> tuple[str, int, dict[str, Any]]:
    """("valid" | "resync" | "replayed" | "wrong", the counter or step matched (-1: none), the state to store
    besides the throttle)."""
    at = _matcher(seed, code)
    if seed.kind == "totp":
        current = int(now) // seed.period
        for step in sorted(range(current - seed.steps, current + seed.steps + 1), key=lambda s: abs(s - current)):
            if step >= 0 and at(step):
                if step <= seed.last_step:
                    return "replayed", step, {}
                return "valid", step, {"last_step": step}
        return "wrong", -1, {}
    changes: dict[str, Any] = {}
    if seed.resync_at is not None:
        changes["resync_at"] = None  # a resynchronisation's second code is the very next one, or none
        if at(seed.resync_at + 1):
            return "valid", seed.resync_at + 1, {**changes, "counter": seed.resync_at + 2}
    window_end = seed.counter + seed.steps + 1
    for counter in range(seed.counter, window_end):
        if at(counter):
            return "valid", counter, {**changes, "counter": counter + 1}
    for counter in range(window_end, window_end + seed.resync):
        if at(counter):
            return "resync", counter, {"resync_at": counter}
    return "wrong", -1, changes


def decide(seed: OtpSeed, code: str, pol: PinPolicy) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answer for `code` and the state to store: refused (raised) while the seed is blocked or waiting;
    a valid code clears the wrong-code count; a resync's first code leaves it; any other counts as wrong."""
    now = time.time()
    check_held(pol, seed.failures, seed.blocked_until, now, "otp")
    outcome, at, changes = match(seed, code, now)
    answer: dict[str, Any] = {"valid": outcome == "valid", "device": seed.device, "type": seed.kind}
    if outcome == "valid":
        answer["step" if seed.kind == "totp" else "counter"] = at
        changes.update(failures=0, blocked_until=0.0)
        return answer, changes
    answer["reason"] = outcome
    counted = seed.failures
    if outcome != "resync":
        counted += 1
        delay = pol.delay_after(counted)
        changes.update(failures=counted, blocked_until=now + delay)
        if delay > 0 and counted < pol.max_tries:
            answer["retry_after"] = delay
    answer["tries_left"] = pol.max_tries - counted
    return answer, changes


def _input(body: Any) -> tuple[str | None, str | None, str]:
    if not isinstance(body, dict):
        raise ProtocolError(400, "malformed", 'expected {"user" or "device": ..., "code": "123456"}')
    for name in body:
        if name not in FIELDS:
            raise bad(str(name)[:64], f"unknown field (fields: {', '.join(FIELDS)})")
    user, device, code = body.get("user"), body.get("device"), body.get("code")
    if (user is None) == (device is None):
        raise bad("user", "name exactly one of user and device")
    for name, value in (("user", user), ("device", device)):
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable()):
            raise bad(name, "1 to 64 printable characters")
    if not isinstance(code, str) or not 6 <= len(code) <= 8 or not (code.isascii() and code.isdigit()):
        raise bad("code", "6 to 8 decimal digits")
    return user, device, code


def _device_of(srv: IdentityServer, user: str | None, device: str | None) -> str:
    """The device whose seed to check: the named one, or the user's one active device holding a seed."""
    if device is not None:
        return device
    assert user is not None
    found = srv.db.otp_devices(user)
    if not found:
        raise ProtocolError(404, "no_otp", f"user {user} has no active device with an OTP seed on this server")
    if len(found) > 1:
        raise ProtocolError(409, "several_devices", f"user {user} has {len(found)} devices with OTP seeds: name one")
    return found[0]


def verify(srv: IdentityServer, rp: RelyingParty, body: Any) -> dict[str, Any]:
    user, device, code = _input(body)
    device_id = _device_of(srv, user, device)
    pol = policy()
    done = srv.db.otp_verify(device_id, lambda seed: decide(seed, code, pol))
    if done is None:  # unknown, not active (deleted, migrated) or without a seed
        raise ProtocolError(404, "no_otp", f"device {device_id} has no active OTP seed on this server")
    owner, answer = done
    log.info("OTP code for device %s by %s: %s", device_id, rp.name, "valid" if answer["valid"] else answer["reason"])
    return {**answer, "user": owner}
