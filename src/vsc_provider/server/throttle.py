"""Wrong server-checked PINs (and OTP codes, otp_verify.py): each try is counted before its proof is checked,
waits grow after the third wrong one (the token's PinPolicy formula, so card and server throttle alike), and
the tenth blocks the PIN (or the OTP seed) until the administrator unblocks it."""

from __future__ import annotations

import os
import time

from vsc_provider.server.db import Database
from vsc_provider.server.errors import ProtocolError
from vsc_provider.token.pin import PinPolicy


def policy() -> PinPolicy:
    """The server's PIN policy: the token's tries and waits, but VSC_SERVER_PIN_DELAY (seconds, default 1) is
    the first wait; tests shorten it."""
    return PinPolicy(delay_base=float(os.environ.get("VSC_SERVER_PIN_DELAY", "1.0")))


def _blocked(what: str = "pin") -> ProtocolError:
    name = "PIN" if what == "pin" else "OTP seed"
    return ProtocolError(423, f"{what}_blocked", f"the {name} is blocked: ask the administrator to unblock it")


def check_held(pol: PinPolicy, failures: int, blocked_until: float, now: float, what: str = "pin") -> None:
    """Refuse a try while blocked (423 <what>_blocked) or in a waiting period (429 <what>_wait, Retry-After)."""
    if failures >= pol.max_tries:
        raise _blocked(what)
    if now < blocked_until:
        name = "PINs" if what == "pin" else "codes"
        raise ProtocolError(429, f"{what}_wait", f"too many wrong {name}: wait", retry_after=blocked_until - now)


class PinTry:
    """One counted try of a device's PIN: refused up front while blocked or waiting, then settled as right
    (the count starts again) or wrong (a wait, or the block)."""

    def __init__(self, db: Database, device_id: str) -> None:
        self.db, self.device_id, self.policy, self.started = db, device_id, policy(), time.time()
        failures, blocked_until = db.pin_try(device_id, self.policy.max_tries, self.started)
        check_held(self.policy, failures, blocked_until, self.started)
        self.counted = failures + 1

    def right(self) -> None:
        self.db.set_device(self.device_id, pin_failures=0, pin_blocked_until=0.0)

    def wrong(self) -> ProtocolError:
        """Start the wait this try earned; the refusal to raise."""
        self.db.set_device(self.device_id, pin_blocked_until=self.started + self.policy.delay_after(self.counted))
        if self.counted >= self.policy.max_tries:
            return _blocked()
        return ProtocolError(403, "pin_incorrect", "wrong PIN", tries_left=self.policy.max_tries - self.counted)
