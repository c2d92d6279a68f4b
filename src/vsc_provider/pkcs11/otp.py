"""C_SignInit/C_Sign with CKM_HOTP (PKCS#11's OATH HOTP) and CKM_VSC_TOTP (this token's TOTP) on OTP keys.

The mechanism parameter is an optional CK_OTP_PARAMS: CK_OTP_TIME (YYYYMMDDhhmmss, UTC) for a TOTP code at
another time, CK_OTP_COUNTER (8 bytes big-endian) for a HOTP code at a given counter (a look-up: the stored
counter does not move), CK_OTP_OUTPUT_LENGTH (6 to 8), CK_OTP_OUTPUT_FORMAT (decimal only), CK_OTP_FLAGS
(CKF_NEXT_OTP for TOTP's next time step). C_Sign takes no data and answers, as the standard defines, a
CK_OTP_SIGNATURE_INFO laid out in the caller's buffer: the structure, its CK_OTP_PARAM array, then the
values, every pointer pointing into that same buffer. The params are CK_OTP_VALUE (the digits, UTF-8) and
CK_OTP_COUNTER (HOTP: the counter used) or CK_OTP_TIME (TOTP: the time used).
"""

from __future__ import annotations

import calendar
import struct
import time
from typing import Any, NamedTuple

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism, OtpParams
from vsc_provider.pkcs11.state import LIB, Operation, Session, operation_key
from vsc_provider.token import audit, otp, otp_keys
from vsc_provider.token.card import Card
from vsc_provider.token.objects import TokenObject

MECHANISMS = {C.CKM_HOTP: C.CKK_HOTP, C.CKM_VSC_TOTP: C.CKK_VSC_TOTP}

_HEADER = struct.Struct("@PL")  # CK_OTP_SIGNATURE_INFO: pParams, ulCount
_PARAM = struct.Struct("@LPL")  # CK_OTP_PARAM: type, pValue, ulValueLen
_TIME_LEN = 14  # YYYYMMDDhhmmss
_INVALID = C.CKR_MECHANISM_PARAM_INVALID


class OtpSignature(bytes):
    """The CK_OTP_SIGNATURE_INFO as laid out at address 0 (so its length is right); `at(base)` lays it out
    for the caller's buffer at `base`. The glue calls `at` with the real address before copying."""

    params: tuple[tuple[int, bytes], ...]

    def __new__(cls, params: tuple[tuple[int, bytes], ...]) -> OtpSignature:
        self = super().__new__(cls, _layout(params, 0))
        self.params = params
        return self

    def at(self, base: int) -> bytes:
        return _layout(self.params, base)


def _layout(params: tuple[tuple[int, bytes], ...], base: int) -> bytes:
    array = base + _HEADER.size
    value_at = array + _PARAM.size * len(params)
    head = [_HEADER.pack(array, len(params))]
    values = []
    for kind, value in params:
        head.append(_PARAM.pack(kind, value_at, len(value)))
        values.append(value)
        value_at += len(value)
    return b"".join(head + values)


def signature_length(digits: int) -> int:
    """The size of a CK_OTP_SIGNATURE_INFO with the code and its counter (8 bytes) or time (14)."""
    return _HEADER.size + 2 * _PARAM.size + digits + max(8, _TIME_LEN)


class OtpRequest(NamedTuple):
    """What the caller's CK_OTP_PARAMS asked for."""

    at: float | None = None
    counter: int | None = None
    digits: int | None = None
    next_otp: bool = False


def _ulong(value: bytes, what: str) -> int:
    if len(value) != A.ULONG_SIZE:
        raise CKRError(_INVALID, f"{what} is a CK_ULONG")
    return int(A.ULONG.unpack(value)[0])


def _utc(value: bytes) -> float:
    try:
        text = value.decode("ascii")
        if len(text) != _TIME_LEN or not text.isdigit():
            raise ValueError(text)
        return float(calendar.timegm(time.strptime(text, "%Y%m%d%H%M%S")))
    except (UnicodeDecodeError, ValueError):
        raise CKRError(_INVALID, "CK_OTP_TIME is a UTC time YYYYMMDDhhmmss") from None


def request(mech: Mechanism, key_type: int) -> OtpRequest:
    """The caller's CK_OTP_PARAMS checked against what this key can do (CKR_MECHANISM_PARAM_INVALID else)."""
    param = mech.param
    if param is None:
        return OtpRequest()
    if not isinstance(param, OtpParams):
        raise CKRError(_INVALID, "OTP mechanisms take a CK_OTP_PARAMS")
    at = counter = digits = None
    next_otp = False
    hotp = key_type == C.CKK_HOTP
    for kind, value in param.params:
        if kind == C.CK_OTP_TIME:
            at = None if hotp else _utc(value)
        elif kind == C.CK_OTP_COUNTER:
            if not hotp:
                continue  # a TOTP key ignores a counter (CKA_OTP_COUNTER_REQUIREMENT: ignored)
            if len(value) != 8:
                raise CKRError(_INVALID, "CK_OTP_COUNTER has 8 bytes, big-endian")
            counter = int.from_bytes(value, "big")
        elif kind == C.CK_OTP_OUTPUT_LENGTH:
            digits = _ulong(value, "CK_OTP_OUTPUT_LENGTH")
            if digits not in otp.DIGITS:
                raise CKRError(_INVALID, "OTP codes have 6 to 8 digits")
        elif kind == C.CK_OTP_OUTPUT_FORMAT:
            if _ulong(value, "CK_OTP_OUTPUT_FORMAT") != C.CK_OTP_FORMAT_DECIMAL:
                raise CKRError(_INVALID, "this token's OTP codes are decimal")
        elif kind == C.CK_OTP_FLAGS:
            flags = _ulong(value, "CK_OTP_FLAGS")
            if flags & C.CKF_NEXT_OTP and hotp:
                raise CKRError(_INVALID, "CKF_NEXT_OTP: a HOTP code is the counter's; ask again for the next")
            if flags & (C.CKF_EXCLUDE_COUNTER if hotp else C.CKF_EXCLUDE_TIME):
                raise CKRError(_INVALID, "the code cannot leave out its counter or time")
            next_otp = bool(flags & C.CKF_NEXT_OTP)
        elif kind not in (C.CK_OTP_PIN, C.CK_OTP_CHALLENGE):  # both ignored by these keys
            raise CKRError(_INVALID, f"unknown CK_OTP_PARAM type 0x{kind:x}")
    return OtpRequest(at, counter, digits, next_otp)


class OtpSigner:
    """One C_Sign's code for an OTP key: the worker an Operation holds (no data, no parts)."""

    def __init__(self, card: Card, obj: TokenObject, spec: otp.OtpSpec, req: OtpRequest) -> None:
        self.card = card
        self.obj = obj
        self.spec = spec
        self.req = req
        self.length = signature_length(req.digits or spec.digits)

    def sign(self, data: bytes) -> bytes:
        if data:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "OTP mechanisms sign no data (NULL, 0)")
        engine = LIB.require()
        if self.spec.kind == "totp":
            at = time.time() if self.req.at is None else self.req.at
            if self.req.next_otp:
                at += self.spec.period
            spec = self.spec if self.req.digits is None else self.spec._replace(digits=self.req.digits)
            try:
                secret = bytes(engine.crypto_key(self.card, self.obj))
                code = otp.totp(secret, at, spec)
            except CKRError as exc:
                engine.key_used(self.card, self.obj, audit.OTP_CODE, C.CKM_VSC_TOTP, exc.rv)
                raise
            engine.key_used(self.card, self.obj, audit.OTP_CODE, C.CKM_VSC_TOTP)
            when = time.strftime("%Y%m%d%H%M%S", time.gmtime(int(at))).encode()
            return OtpSignature(((C.CK_OTP_VALUE, code.code.encode()), (C.CK_OTP_TIME, when)))
        got = otp_keys.code(engine, self.card, self.obj, counter=self.req.counter)
        value = got.code
        if self.req.digits is not None and self.req.digits != self.spec.digits:
            secret = bytes(engine.crypto_key(self.card, self.obj))
            value = otp.hotp(secret, got.moving_factor, self.req.digits, self.spec.algorithm)
        counter = otp.counter_bytes(got.moving_factor)
        return OtpSignature(((C.CK_OTP_VALUE, value.encode()), (C.CK_OTP_COUNTER, counter)))

    # C_SignUpdate/C_SignFinal: no parts to feed; C_SignFinal alone gives the code.
    def fresh(self) -> OtpSigner:
        return self

    def update(self, data: bytes) -> None:
        if data:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "OTP mechanisms sign no data")

    def final(self) -> bytes:
        return self.sign(b"")


def sign_init(s: Session, mech: Mechanism, key: int) -> None:
    obj = operation_key(s, "sign", mech.type, key, (C.CKO_OTP_KEY,), C.CKA_SIGN, "an OTP code")
    if obj.key_type != MECHANISMS[mech.type]:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "CKM_HOTP takes a HOTP key, CKM_VSC_TOTP a TOTP key")
    card = s.card
    if not card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "an OTP key's secret needs the user to log in")
    spec = otp.spec_of(obj.attrs)
    signer = OtpSigner(card, obj, spec, request(mech, obj.key_type or 0))
    s.sign = Operation(signer, obj, False, signer.length)


# What a C_CreateObject template may say of an OTP key besides what object_from_template reads: attributes
# that describe the key without changing how it is kept (anything else must agree with what the token sets).
# CKA_PRIVATE true hides the names until login (the secret is sealed under the data key either way).
_DESCRIPTIVE = frozenset(
    {
        C.CKA_START_DATE,
        C.CKA_END_DATE,
        C.CKA_OTP_SERVICE_LOGO,
        C.CKA_OTP_SERVICE_LOGO_TYPE,
        C.CKA_VALUE_LEN,
        C.CKA_PRIVATE,
        C.CKA_VERIFY,
    }
)


def object_from_template(template: dict[int, bytes]) -> tuple[dict[int, bytes], bytes]:
    """C_CreateObject of a CKO_OTP_KEY (the standard's HOTP template, or a CKK_VSC_TOTP key): its attributes
    and secret. The key is a token object, sensitive and never extractable whatever the template says."""
    from vsc_provider.pkcs11 import templates as T

    key_type = T.ulong(template, C.CKA_KEY_TYPE)
    if key_type not in (C.CKK_HOTP, C.CKK_VSC_TOTP):
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "OTP keys are of type CKK_HOTP or CKK_VSC_TOTP")
    if not T.flag(template, C.CKA_TOKEN, False):
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "OTP keys are token objects (their counter lives in the store)")
    value = T.require(template, C.CKA_VALUE)
    if not 0 < len(value) <= 128:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "OTP secrets have 1 to 128 bytes")
    if T.ulong(template, C.CKA_VALUE_LEN) not in (None, len(value)):
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN differs from the value's length")
    if T.ulong(template, C.CKA_OTP_FORMAT) not in (None, C.CK_OTP_FORMAT_DECIMAL):
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "this token's OTP codes are decimal")
    algorithm = otp.HASH_NAMES.get(T.ulong(template, C.CKA_VSC_OTP_HASH) or C.CKM_SHA_1)
    if algorithm is None:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_VSC_OTP_HASH is CKM_SHA_1, CKM_SHA256 or CKM_SHA512")
    counter = template.get(C.CKA_OTP_COUNTER, b"")
    if counter and len(counter) != 8:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_OTP_COUNTER has 8 bytes, big-endian")
    spec = otp.OtpSpec(
        "hotp" if key_type == C.CKK_HOTP else "totp",
        algorithm,
        T.ulong(template, C.CKA_OTP_LENGTH) or 6,
        T.ulong(template, C.CKA_OTP_TIME_INTERVAL) or 30,
        T.ulong(template, C.CKA_VSC_OTP_T0) or 0,
        int.from_bytes(counter, "big"),
    )
    built = otp.key_attrs(
        spec,
        T.text(template, C.CKA_OTP_SERVICE_IDENTIFIER),
        T.text(template, C.CKA_OTP_USER_IDENTIFIER),
        T.text(template, C.CKA_LABEL),
        template.get(C.CKA_ID, b""),
    )
    for attr, raw in template.items():
        if attr in _DESCRIPTIVE:
            built[attr] = raw
        elif attr != C.CKA_VALUE and built.get(attr) != raw:
            raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, f"attribute 0x{attr:x} cannot be set so on an OTP key")
    return built, value


def relocate(out: Any, base: int) -> bytes:
    """What the glue copies to the caller's buffer at `base`: an OTP answer laid out there, else `out`."""
    return out.at(base) if isinstance(out, OtpSignature) else out
