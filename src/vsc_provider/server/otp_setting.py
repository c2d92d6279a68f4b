"""Which OATH seed a card gets at activation: a profile's `otp` setting, or the one an activation link was
made with (`vsc server activation create --otp totp`). Its type, hash, digits and period are what the card
computes; the window and resync are how far the server looks when it verifies a code (/v1/otp/verify)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("totp", "hotp")
# the seed has as many bytes as the hash's output (RFC 4226 asks for 16 at least and recommends 20)
SEED_BYTES = {"SHA1": 20, "SHA256": 32, "SHA512": 64}
DIGITS = (6, 7, 8)
PERIODS = (1, 3600)  # seconds
WINDOWS = {"totp": (0, 10), "hotp": (0, 1000)}
DEFAULT_WINDOW = {"totp": 1, "hotp": 10}
RESYNC = (0, 10000)
DEFAULT_RESYNC = 100
FIELDS = ("type", "algorithm", "digits", "period", "issuer", "window", "resync")


@dataclass(frozen=True)
class OtpSetting:
    """type "totp" or "hotp"; algorithm SHA1/SHA256/SHA512; digits 6-8; period (TOTP, seconds); issuer (None:
    the profile's branding name or the server's host name); window: TOTP steps accepted either side of now
    (default 1), HOTP counters looked ahead of the expected one (default 10); resync: HOTP counters beyond the
    window over which two consecutive codes resynchronise (RFC 4226 section 7.4; 0: never)."""

    type: str = "totp"
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30
    issuer: str | None = None
    window: int | None = None
    resync: int = DEFAULT_RESYNC

    @property
    def steps(self) -> int:
        return DEFAULT_WINDOW[self.type] if self.window is None else self.window

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "algorithm": self.algorithm, "digits": self.digits}
        if self.type == "totp":
            out["period"] = self.period
        else:
            out["resync"] = self.resync
        out["window"] = self.steps
        if self.issuer is not None:
            out["issuer"] = self.issuer
        return out

    @classmethod
    def parse(cls, value: Any) -> OtpSetting:
        """From JSON: "totp" / "hotp" alone, or an object of FIELDS; ValueError naming the field otherwise."""
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict):
            raise ValueError('otp is "totp", "hotp" or an object with type, algorithm, digits, period, issuer')
        unknown = [str(k)[:32] for k in value if k not in FIELDS]
        if unknown:
            raise ValueError(f"otp.{unknown[0]}: unknown (fields: {', '.join(FIELDS)})")
        kind = value.get("type", "totp")
        if kind not in KINDS:
            raise ValueError("otp.type: totp or hotp")
        algorithm = value.get("algorithm", "SHA1")
        if algorithm not in SEED_BYTES:
            raise ValueError(f"otp.algorithm: one of {', '.join(SEED_BYTES)}")
        digits = _whole(value, "digits", 6, DIGITS[0], DIGITS[-1])
        period = _whole(value, "period", 30, *PERIODS)
        window = _whole(value, "window", DEFAULT_WINDOW[kind], *WINDOWS[kind]) if "window" in value else None
        resync = _whole(value, "resync", DEFAULT_RESYNC, *RESYNC)
        issuer = value.get("issuer")
        if issuer is not None and (
            not isinstance(issuer, str) or not 1 <= len(issuer) <= 64 or not issuer.isprintable() or ":" in issuer
        ):
            raise ValueError("otp.issuer: 1 to 64 printable characters without ':'")
        return cls(kind, algorithm, digits, period, issuer, window, resync)


def _whole(value: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    got = value.get(name, default)
    if not isinstance(got, int) or isinstance(got, bool) or not low <= got <= high:
        raise ValueError(f"otp.{name}: a whole number from {low} to {high}")
    return got
