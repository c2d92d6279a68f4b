"""OTP accounts as people bring them: `otpauth://totp|hotp/...` links (the "Key Uri Format" authenticator apps
share) and Google Authenticator's `otpauth-migration://offline?data=...` exports. Bad input is a ValueError
whose one line names the field."""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from vsc_provider.ck.errors import CKRError
from vsc_provider.token import otp


class Account(NamedTuple):
    """One account to store: its names, secret and what it computes."""

    issuer: str
    account: str
    secret: bytes
    spec: otp.OtpSpec

    @property
    def name(self) -> str:
        return f"{self.issuer}:{self.account}" if self.issuer else self.account


def _bad(field: str, why: str) -> ValueError:
    return ValueError(f"otpauth URI: {field}: {why}")


def _base32(text: str) -> bytes:
    cleaned = text.replace(" ", "").replace("-", "").upper()
    if not cleaned:
        raise _bad("secret", "missing")
    try:
        return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise _bad("secret", "not base32") from None


def _number(params: dict[str, str], field: str, default: int | None) -> int:
    raw = params.get(field)
    if raw is None:
        if default is None:
            raise _bad(field, "missing")
        return default
    if not raw.isdigit():
        raise _bad(field, f"not a whole number: {raw!r}")
    return int(raw)


def parse_otpauth(link: str) -> Account:
    """An `otpauth://totp/ISSUER:ACCOUNT?secret=...` or `otpauth://hotp/...&counter=N` link."""
    parts = urlsplit(link.strip())
    if parts.scheme.lower() != "otpauth":
        raise _bad("scheme", f"otpauth:// expected, not {parts.scheme + '://' if parts.scheme else link[:20]!r}")
    kind = parts.netloc.lower()
    if kind not in ("totp", "hotp"):
        raise _bad("type", f"totp or hotp, not {parts.netloc!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    for field, values in query.items():
        if len(values) > 1:
            raise _bad(field, "given more than once")
    params = {k.lower(): v[0] for k, v in query.items()}
    label = unquote(parts.path.lstrip("/"))
    issuer_in_label, sep, account = label.partition(":")
    if not sep:
        issuer_in_label, account = "", label
    account = account.strip()
    issuer = params.get("issuer", issuer_in_label).strip()
    if issuer_in_label and "issuer" in params and issuer != issuer_in_label.strip():
        raise _bad("issuer", f"the label says {issuer_in_label!r}, the issuer parameter {issuer!r}")
    if not account:
        raise _bad("label", "no account name")
    algorithm = params.get("algorithm", "SHA1").upper().replace("-", "")
    if algorithm not in otp.HASHES:
        raise _bad("algorithm", f"one of {', '.join(otp.HASHES)}, not {params['algorithm']!r}")
    digits = _number(params, "digits", 6)
    if digits not in otp.DIGITS:
        raise _bad("digits", f"6, 7 or 8, not {digits}")
    period = _number(params, "period", 30)
    if not 0 < period <= otp.MAX_PERIOD:
        raise _bad("period", f"1 second to a year, not {period}")
    counter = _number(params, "counter", None if kind == "hotp" else 0)
    if counter > otp.MAX_COUNTER:
        raise _bad("counter", "beyond 2^64-1")
    secret = _base32(params.get("secret", ""))
    spec = otp.OtpSpec(kind, algorithm, digits, period, 0, counter if kind == "hotp" else 0)
    return Account(issuer, account, secret, _checked(spec))


def _checked(spec: otp.OtpSpec) -> otp.OtpSpec:
    try:
        return spec.check()
    except CKRError as exc:
        raise ValueError(f"otpauth URI: {exc.reason}") from None


# Google Authenticator's enums (see migration.proto): what each value means here.
_MIGRATION_ALGORITHMS = {0: "SHA1", 1: "SHA1", 2: "SHA256", 3: "SHA512"}
_MIGRATION_DIGITS = {0: 6, 1: 6, 2: 8}
_MIGRATION_TYPES = {1: "hotp", 2: "totp"}


class Batch(NamedTuple):
    """One export link's accounts and its place in the export (Google splits big exports over several QR codes)."""

    accounts: list[Account]
    batch_id: int
    position: int  # 0-based
    size: int


def parse_migration(link: str) -> Batch:
    """An `otpauth-migration://offline?data=BASE64` link: its protobuf payload's accounts."""
    from vsc_provider.oath import migration_pb2

    parts = urlsplit(link.strip())
    if parts.scheme.lower() != "otpauth-migration" or parts.netloc.lower() != "offline":
        raise ValueError("migration link: otpauth-migration://offline?data=... expected")
    values = parse_qs(parts.query).get("data")
    if not values or len(values) != 1:
        raise ValueError("migration link: data: missing")
    try:
        raw = base64.b64decode(values[0].replace(" ", "+") + "=" * (-len(values[0]) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("migration link: data: not base64") from None
    payload = migration_pb2.MigrationPayload()  # type: ignore[attr-defined]
    try:
        payload.ParseFromString(raw)
    except Exception:  # protobuf's DecodeError, and whatever a malformed payload raises
        raise ValueError("migration link: data: not a migration payload") from None
    accounts = []
    for n, p in enumerate(payload.otp_parameters, 1):
        where = f"migration link: account {n} ({p.name or 'unnamed'})"
        kind = _MIGRATION_TYPES.get(p.type)
        if kind is None:
            raise ValueError(f"{where}: type: hotp or totp, not {p.type}")
        algorithm = _MIGRATION_ALGORITHMS.get(p.algorithm)
        if algorithm is None:
            raise ValueError(f"{where}: algorithm: MD5 and unknown hashes are not supported")
        digits = _MIGRATION_DIGITS.get(p.digits)
        if digits is None:
            raise ValueError(f"{where}: digits: six or eight, not code {p.digits}")
        if not p.secret:
            raise ValueError(f"{where}: secret: missing")
        issuer = p.issuer.strip()
        account = p.name.strip()
        if issuer and account.startswith(issuer + ":"):
            account = account[len(issuer) + 1 :].strip()
        elif not issuer and ":" in account:
            issuer, account = (s.strip() for s in account.split(":", 1))
        if not account:
            raise ValueError(f"{where}: name: missing")
        counter = p.counter if kind == "hotp" else 0
        if counter < 0:
            raise ValueError(f"{where}: counter: negative")
        spec = otp.OtpSpec(kind, algorithm, digits, 30, 0, counter)
        accounts.append(Account(issuer, account, bytes(p.secret), _checked(spec)))
    return Batch(accounts, payload.batch_id, payload.batch_index, max(payload.batch_size, 1))


def parse_any(link: str) -> list[Account]:
    """Accounts from either kind of link."""
    if link.strip().lower().startswith("otpauth-migration:"):
        return parse_migration(link).accounts
    return [parse_otpauth(link)]
