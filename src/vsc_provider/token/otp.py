"""One-time passwords (HOTP, RFC 4226; TOTP, RFC 6238): what an OTP key is as card attributes, and the codes.

An OTP key is a CKO_OTP_KEY object: CKK_HOTP for a counter-based key (its counter in CKA_OTP_COUNTER, 8 bytes
big-endian as PKCS#11 says), CKK_VSC_TOTP for a time-based one (CKA_OTP_TIME_INTERVAL, CKA_VSC_OTP_T0). The
HMAC hash is CKA_VSC_OTP_HASH, the digits CKA_OTP_LENGTH, the issuer CKA_OTP_SERVICE_IDENTIFIER, the account
CKA_OTP_USER_IDENTIFIER and the user's own name for it CKA_LABEL. The secret is key material, sealed like a
private key's; the codes come from `cryptography`'s HOTP.
"""

from __future__ import annotations

from typing import NamedTuple

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError

HASHES = {"SHA1": C.CKM_SHA_1, "SHA256": C.CKM_SHA256, "SHA512": C.CKM_SHA512}
HASH_NAMES = {mech: name for name, mech in HASHES.items()}
DIGITS = range(6, 9)
MAX_PERIOD = 86400 * 366
MAX_COUNTER = 2**64 - 1


class OtpSpec(NamedTuple):
    """What an OTP key computes: the kind ("hotp" or "totp"), hash name, digits, and per kind the counter
    (HOTP: the next one to use) or the period and T0 in seconds (TOTP)."""

    kind: str
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30
    t0: int = 0
    counter: int = 0

    def check(self) -> OtpSpec:
        """The spec itself, or CKR_ATTRIBUTE_VALUE_INVALID naming what is out of range."""
        if self.kind not in ("hotp", "totp"):
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"OTP type is hotp or totp, not {self.kind!r}")
        if self.algorithm not in HASHES:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"OTP algorithm is one of {', '.join(HASHES)}")
        if self.digits not in DIGITS:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "OTP codes have 6 to 8 digits")
        if not 0 < self.period <= MAX_PERIOD:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "the TOTP period is 1 second to a year")
        if not 0 <= self.t0 < 2**63:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "TOTP T0 is a Unix time, 0 or later")
        if not 0 <= self.counter <= MAX_COUNTER:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "the HOTP counter is 0 to 2^64-1")
        return self


class Code(NamedTuple):
    """One code, the counter (HOTP) or time step (TOTP) it was computed for, and for TOTP the seconds it
    stays valid (None for HOTP: valid until used)."""

    code: str
    moving_factor: int
    valid_for: int | None


def hotp(secret: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1") -> str:
    """The HOTP value of a counter (RFC 4226; SHA-256/512 as RFC 6238 allows)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.twofactor.hotp import HOTP

    if not secret:
        raise CKRError(C.CKR_KEY_SIZE_RANGE, "an OTP secret has at least one byte")
    # HMAC-SHA-1 is what RFC 4226 defines and most services still use; HMAC does not rely on SHA-1's collisions.
    by_name = {"SHA1": hashes.SHA1(), "SHA256": hashes.SHA256(), "SHA512": hashes.SHA512()}  # noqa: S303
    hash_alg: hashes.HashAlgorithm = by_name[algorithm]
    return HOTP(secret, digits, hash_alg, enforce_key_length=False).generate(counter).decode()  # type: ignore[arg-type]


def time_step(at: float, period: int, t0: int = 0) -> tuple[int, int]:
    """TOTP's counter at Unix time `at`, and the seconds until it moves on."""
    elapsed = int(at) - t0
    if elapsed < 0:
        raise CKRError(C.CKR_ARGUMENTS_BAD, "the time is before the key's T0")
    return elapsed // period, period - elapsed % period


def totp(secret: bytes, at: float, spec: OtpSpec) -> Code:
    step, left = time_step(at, spec.period, spec.t0)
    return Code(hotp(secret, step, spec.digits, spec.algorithm), step, left)


def counter_bytes(counter: int) -> bytes:
    return counter.to_bytes(8, "big")


def key_attrs(spec: OtpSpec, issuer: str, account: str, label: str, key_id: bytes) -> dict[int, bytes]:
    """A new OTP key's attributes. Its names are public (listed without the PIN, like certificates); its
    secret is not an attribute: it is sealed under the card's data key whatever CKA_PRIVATE says."""
    spec.check()
    values: dict[int, A.Value] = {
        C.CKA_CLASS: C.CKO_OTP_KEY,
        C.CKA_KEY_TYPE: C.CKK_HOTP if spec.kind == "hotp" else C.CKK_VSC_TOTP,
        C.CKA_TOKEN: True,
        C.CKA_PRIVATE: False,
        C.CKA_LABEL: label,
        C.CKA_ID: key_id,
        C.CKA_SIGN: True,
        C.CKA_VERIFY: False,
        C.CKA_SENSITIVE: True,
        C.CKA_ALWAYS_SENSITIVE: True,
        C.CKA_EXTRACTABLE: False,
        C.CKA_NEVER_EXTRACTABLE: True,
        C.CKA_LOCAL: False,
        C.CKA_MODIFIABLE: False,  # only the HOTP counter moves, in the store's own transaction
        C.CKA_COPYABLE: False,  # a copy would fork a HOTP counter
        C.CKA_DESTROYABLE: True,
        C.CKA_ALLOWED_MECHANISMS: [C.CKM_HOTP if spec.kind == "hotp" else C.CKM_VSC_TOTP],
        C.CKA_OTP_FORMAT: C.CK_OTP_FORMAT_DECIMAL,
        C.CKA_OTP_LENGTH: spec.digits,
        C.CKA_OTP_USER_FRIENDLY_MODE: True,
        C.CKA_OTP_PIN_REQUIREMENT: C.CK_OTP_PARAM_IGNORED,
        C.CKA_OTP_CHALLENGE_REQUIREMENT: C.CK_OTP_PARAM_IGNORED,
        C.CKA_OTP_SERVICE_IDENTIFIER: issuer,
        C.CKA_OTP_USER_IDENTIFIER: account,
        C.CKA_VSC_OTP_HASH: HASHES[spec.algorithm],
    }
    if spec.kind == "hotp":
        values[C.CKA_OTP_COUNTER] = counter_bytes(spec.counter)
        values[C.CKA_OTP_COUNTER_REQUIREMENT] = C.CK_OTP_PARAM_OPTIONAL
        values[C.CKA_OTP_TIME_REQUIREMENT] = C.CK_OTP_PARAM_IGNORED
    else:
        values[C.CKA_OTP_TIME_INTERVAL] = spec.period
        values[C.CKA_VSC_OTP_T0] = spec.t0
        values[C.CKA_OTP_TIME_REQUIREMENT] = C.CK_OTP_PARAM_OPTIONAL
        values[C.CKA_OTP_COUNTER_REQUIREMENT] = C.CK_OTP_PARAM_IGNORED
    return A.make(values)


def spec_of(attrs: dict[int, bytes]) -> OtpSpec:
    """An OTP key's spec from its attributes (CKR_KEY_TYPE_INCONSISTENT for anything else)."""
    if A.get_ulong(attrs, C.CKA_CLASS) != C.CKO_OTP_KEY:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "not an OTP key")
    key_type = A.get_ulong(attrs, C.CKA_KEY_TYPE)
    algorithm = HASH_NAMES.get(A.get_ulong(attrs, C.CKA_VSC_OTP_HASH, C.CKM_SHA_1) or 0)
    if key_type not in (C.CKK_HOTP, C.CKK_VSC_TOTP) or algorithm is None:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "an OTP key of a kind this token does not compute")
    digits = A.get_ulong(attrs, C.CKA_OTP_LENGTH, 6) or 6
    if key_type == C.CKK_HOTP:
        return OtpSpec("hotp", algorithm, digits, counter=int.from_bytes(attrs.get(C.CKA_OTP_COUNTER, b""), "big"))
    period = A.get_ulong(attrs, C.CKA_OTP_TIME_INTERVAL, 30) or 30
    return OtpSpec("totp", algorithm, digits, period=period, t0=A.get_ulong(attrs, C.CKA_VSC_OTP_T0, 0) or 0)


def names(attrs: dict[int, bytes]) -> tuple[str, str, str]:
    """An OTP key's issuer, account and label."""
    return (
        str(A.decode(C.CKA_OTP_SERVICE_IDENTIFIER, attrs.get(C.CKA_OTP_SERVICE_IDENTIFIER, b""))),
        str(A.decode(C.CKA_OTP_USER_IDENTIFIER, attrs.get(C.CKA_OTP_USER_IDENTIFIER, b""))),
        str(A.decode(C.CKA_LABEL, attrs.get(C.CKA_LABEL, b""))),
    )
