"""Card policies: `strict` (the product's security model, the default) and `compatible` (for test rigs).

A card's policy is chosen when the card is created and never changes: C_InitToken keeps it, and no command
sets it. It is stored in the card's `policy` record (JSON, beside the PIN parameters); a record without a
name, as every store written before policies existed has, is strict. The engine enforces it for every front
end (PKCS#11, the CLI and Python API, provisioning).

- strict: PINs of digits (6+, SO 8+) without runs or repeats, growing waiting periods after wrong tries,
  blocked at the 10th; RSA keys of 2048 bits or more; P-256/384/521, Ed25519 and Ed448; every private and secret
  key is CKA_PRIVATE, so nothing that holds key material is usable without the user's PIN.
- compatible: what test rigs written for SoftHSM expect: PINs of 4 to 255 bytes of any kind, no waiting
  periods (still blocked at the 10th wrong try), RSA from 1024 bits, every curve `cryptography` offers, and
  private or secret keys with CKA_PRIVATE false usable without login, and DSA and PKCS #3 Diffie-Hellman
  (mechanisms.LEGACY_MECHANISMS), which strict cards neither list nor accept. Such keys are sealed under the card's
  public-object key (see Engine.public_object_key), so they are encrypted at rest all the same.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import ec_params
from vsc_provider.token import mechanisms as M
from vsc_provider.token import objects as O
from vsc_provider.token.curves import EC_CURVES, EDWARDS_OIDS, P256, P384, P521, curve_bits
from vsc_provider.token.pin import PinPolicy

STRICT = "strict"
COMPATIBLE = "compatible"
NAMES = (STRICT, COMPATIBLE)

STRICT_CURVES = frozenset({P256, P384, P521, *EDWARDS_OIDS})
ALL_CURVES = frozenset({*EC_CURVES, *EDWARDS_OIDS})
STRICT_RSA_MIN = 2048

COMPATIBLE_PIN = PinPolicy(min_length=4, max_length=255, so_min_length=4, digits_only=False, delays=False)


_WITH_LEGACY = {**M.MECHANISMS, **M.LEGACY_MECHANISMS}


class CardPolicy(NamedTuple):
    name: str = STRICT
    pin: PinPolicy = PinPolicy()
    rsa_min_bits: int = STRICT_RSA_MIN
    curves: frozenset[str] = STRICT_CURVES
    public_keys: bool = False  # private and secret keys may have CKA_PRIVATE false (usable without login)
    # The PKCS#11 3.0 profile object (public certificates token), which tells NSS that certificates are
    # readable without login. Rigs written for SoftHSM expect a new token to hold no object at all.
    profile: bool = True
    # C_Logout without a login answers CKR_OK, as SoftHSM does (PyKCS11's tests log out unconditionally);
    # strict cards answer CKR_USER_NOT_LOGGED_IN as the standard lists.
    lenient_logout: bool = False
    legacy: bool = False  # DSA and DH (mechanisms.LEGACY_MECHANISMS) offered

    @property
    def mechanisms(self) -> dict[int, tuple[int, int, int]]:
        """The mechanism table of a card with this policy (the strict table, plus DSA and DH if legacy)."""
        return _WITH_LEGACY if self.legacy else M.MECHANISMS

    def check_mechanism(self, mech_type: int) -> None:
        """CKR_MECHANISM_INVALID for a mechanism this card does not offer."""
        if mech_type not in M.MECHANISMS and not (self.legacy and mech_type in M.LEGACY_MECHANISMS):
            raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech_type:x} is not supported on {self.name} cards")

    @classmethod
    def named(cls, name: str, pin: PinPolicy | None = None) -> CardPolicy:
        """The policy called `name`; `pin` tunes a strict card's PIN rules (tests shorten the delays)."""
        if name == STRICT:
            return cls(STRICT, pin or PinPolicy())
        if name == COMPATIBLE:
            return cls(
                COMPATIBLE,
                COMPATIBLE_PIN,
                1024,
                ALL_CURVES,
                public_keys=True,
                profile=False,
                lenient_logout=True,
                legacy=True,
            )
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"unknown card policy {name!r} (strict or compatible)")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.pin.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CardPolicy:
        """The stored PIN parameters as they were at creation; the key rules come with the name."""
        name = data.get("name", STRICT)
        named = cls.named(name if name in NAMES else STRICT)
        return named._replace(pin=PinPolicy.from_json({**named.pin.to_json(), **data}))

    def private_flag(self, requested: bool) -> bool:
        """CKA_PRIVATE of a new private or secret key: always true on strict cards."""
        return requested or not self.public_keys

    def check_curve(self, oid: str) -> None:
        if oid not in self.curves:
            raise CKRError(C.CKR_CURVE_NOT_SUPPORTED, f"curve {oid} is not allowed on {self.name} cards")

    def settle(self, attrs: dict[int, bytes]) -> dict[int, bytes]:
        """A new object's attributes under this policy: keys forced private on strict cards, key sizes and
        curves checked (CKR_ATTRIBUTE_VALUE_INVALID, CKR_CURVE_NOT_SUPPORTED). Returns a new dict."""
        out = dict(attrs)
        klass = A.get_ulong(out, C.CKA_CLASS)
        if A.get_ulong(out, C.CKA_KEY_TYPE) in O.DSA_DH_KEY_TYPES and not self.legacy:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"DSA and DH keys are not allowed on {self.name} cards")
        if klass not in (C.CKO_PRIVATE_KEY, C.CKO_SECRET_KEY, C.CKO_PUBLIC_KEY):
            return out
        if klass != C.CKO_PUBLIC_KEY and self.private_flag(A.get_bool(out, C.CKA_PRIVATE, True)):
            out[C.CKA_PRIVATE] = A.TRUE
        key_type = A.get_ulong(out, C.CKA_KEY_TYPE)
        if key_type in (C.CKK_EC, C.CKK_EC_EDWARDS) and C.CKA_EC_PARAMS in out:
            self.check_curve(ec_params.curve_from_params(out[C.CKA_EC_PARAMS]))
        if key_type == C.CKK_RSA and klass == C.CKO_PRIVATE_KEY:
            modulus = int.from_bytes(out.get(C.CKA_MODULUS, b""), "big")
            if (A.get_ulong(out, C.CKA_MODULUS_BITS) or modulus.bit_length()) < self.rsa_min_bits:
                minimum = f"{self.rsa_min_bits} bits or more on {self.name} cards"
                raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"RSA keys have {minimum}")
        return out

    def mechanism_info(self, info: tuple[int, int, int]) -> tuple[int, int, int]:
        """C_GetMechanismInfo on this card: the strict table with this policy's smallest RSA and EC keys."""
        low, high, flags = info
        if low == STRICT_RSA_MIN:  # the RSA mechanisms are those whose strict minimum is the RSA minimum
            return self.rsa_min_bits, high, flags
        if flags & C.CKF_EC_F_P:
            return min(curve_bits(oid) for oid in self.curves if oid not in EDWARDS_OIDS), high, flags
        return info
