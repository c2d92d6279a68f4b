"""PIN policy: what a PIN may look like, and how wrong tries turn into delays and a block."""

from __future__ import annotations

from itertools import pairwise
from typing import Any, NamedTuple

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError


class PinPolicy(NamedTuple):
    min_length: int = 6
    max_length: int = 32
    so_min_length: int = 8
    max_tries: int = 10
    delay_from_try: int = 3  # the first wrong try that starts a waiting period
    delay_base: float = 2.0  # seconds; doubles with each further wrong try
    delay_max: float = 3600.0
    digits_only: bool = True  # False: any bytes (compatible cards)
    delays: bool = True  # False: no waiting periods, only the block at max_tries (compatible cards)

    def to_json(self) -> dict[str, Any]:
        return dict(self._asdict())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PinPolicy:
        known = {k: v for k, v in data.items() if k in cls._fields}
        return cls(**known)

    def check(self, pin: bytes, *, so: bool = False) -> None:
        """Refuse a new PIN that breaks the policy (CKR_PIN_LEN_RANGE or CKR_PIN_INVALID, with the reason)."""
        minimum = self.so_min_length if so else self.min_length
        unit = "digits" if self.digits_only else "bytes"
        name = "an SO PIN" if so else "a PIN"
        if not minimum <= len(pin) <= self.max_length:
            raise CKRError(C.CKR_PIN_LEN_RANGE, f"{name} has {minimum} to {self.max_length} {unit}")
        problem = weakness(pin, name) if self.digits_only else ""
        if problem:
            raise CKRError(C.CKR_PIN_INVALID, problem)

    def may_be(self, pin: bytes, *, so: bool = False) -> bool:
        """Whether `pin` has a shape this policy lets a PIN have: one that has not cannot be the card's PIN,
        and is refused (CKR_PIN_INCORRECT) before the KDF and without counting a try."""
        minimum = self.so_min_length if so else self.min_length
        if not minimum <= len(pin) <= self.max_length:
            return False
        return pin.isdigit() if self.digits_only else True

    def kdf_input(self, pin: bytes) -> bytes:
        """What the KDF derives from. scrypt keys HMAC-SHA256 with it, which pads short keys with zeros, so
        "1234" and "1234\\0" would derive the same key: a PIN of any bytes goes in after its length. A
        digits-only PIN has no zero byte, so its own bytes fix its length and it goes in as it is (the
        derivation existing strict cards were made with)."""
        if self.digits_only:
            return pin
        return len(pin).to_bytes(2, "big") + pin

    def delay_after(self, failures: int) -> float:
        """Seconds to refuse tries after `failures` consecutive wrong PINs."""
        if not self.delays or failures < self.delay_from_try:
            return 0.0
        return float(min(self.delay_max, self.delay_base * 2 ** (failures - self.delay_from_try)))


def weakness(pin: bytes, name: str = "a PIN") -> str:
    """Why a PIN is too weak, or '' when it is acceptable (`name` says which PIN: "a PIN", "an SO PIN")."""
    if not pin.isdigit():
        return f"{name} has digits only"
    digits = [d - 48 for d in pin]
    if len(set(digits)) == 1:
        return f"{name} may not repeat one digit"
    steps = {(b - a) % 10 for a, b in pairwise(digits)}
    if steps in ({1}, {9}):  # 123456, 987654, and runs that wrap such as 890123
        return f"{name} may not be an ascending or descending run"
    return ""
