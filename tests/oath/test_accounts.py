"""otpauth:// links and Google Authenticator migration payloads (built here with protobuf) parsed to accounts."""

from __future__ import annotations

import base64
import os
from urllib.parse import quote

import pytest

from vsc_provider.oath import accounts as A
from vsc_provider.oath import migration_pb2
from vsc_provider.token import otp

Payload = migration_pb2.MigrationPayload
SECRET = b"12345678901234567890"
B32 = base64.b32encode(SECRET).decode().rstrip("=")


def migration_link(params: list[dict], batch: tuple[int, int, int] = (0, 1, 7)) -> str:
    payload = Payload(version=1, batch_index=batch[0], batch_size=batch[1], batch_id=batch[2])
    for p in params:
        payload.otp_parameters.add(**p)
    data = base64.b64encode(payload.SerializeToString()).decode()
    return "otpauth-migration://offline?data=" + quote(data, safe="")


def test_a_full_totp_link() -> None:
    link = (
        f"otpauth://totp/ACME%20Co:john.doe@email.com?secret={B32}&issuer=ACME%20Co&algorithm=SHA512&digits=8&period=60"
    )
    acc = A.parse_otpauth(link)
    assert acc == A.Account("ACME Co", "john.doe@email.com", SECRET, otp.OtpSpec("totp", "SHA512", 8, 60))
    assert acc.name == "ACME Co:john.doe@email.com"


def test_a_hotp_link_and_defaults() -> None:
    acc = A.parse_otpauth(f"otpauth://hotp/alice?secret={B32.lower()}&counter=42")
    assert acc == A.Account("", "alice", SECRET, otp.OtpSpec("hotp", counter=42))
    assert A.parse_otpauth(f"otpauth://totp/Example:bob?secret={B32}").spec == otp.OtpSpec("totp")


@pytest.mark.parametrize(
    ("link", "field"),
    [
        (f"http://totp/x?secret={B32}", "scheme"),
        (f"otpauth://motp/x?secret={B32}", "type"),
        ("otpauth://totp/x?secret=", "secret"),
        ("otpauth://totp/x", "secret"),
        ("otpauth://totp/x?secret=not*base32!", "secret"),
        (f"otpauth://totp/x?secret={B32}&algorithm=MD5", "algorithm"),
        (f"otpauth://totp/x?secret={B32}&digits=5", "digits"),
        (f"otpauth://totp/x?secret={B32}&digits=six", "digits"),
        (f"otpauth://totp/x?secret={B32}&period=0", "period"),
        (f"otpauth://totp/x?secret={B32}&period=-30", "period"),
        (f"otpauth://hotp/x?secret={B32}", "counter"),
        (f"otpauth://hotp/x?secret={B32}&counter=18446744073709551616", "counter"),
        (f"otpauth://totp/?secret={B32}", "label"),
        (f"otpauth://totp/A:x?secret={B32}&issuer=B", "issuer"),
        (f"otpauth://totp/x?secret={B32}&secret={B32}", "secret"),
    ],
)
def test_bad_links_name_the_field(link: str, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^otpauth URI: {field}: ") as err:
        A.parse_otpauth(link)
    assert "\n" not in str(err.value)


ALGORITHMS = {Payload.ALGORITHM_SHA1: "SHA1", Payload.ALGORITHM_SHA256: "SHA256", Payload.ALGORITHM_SHA512: "SHA512"}
DIGITS = {Payload.DIGIT_COUNT_SIX: 6, Payload.DIGIT_COUNT_EIGHT: 8}


def test_migration_payload_with_every_algorithm_digit_count_and_type() -> None:
    params, expected = [], []
    for alg, alg_name in ALGORITHMS.items():
        for digits, n in DIGITS.items():
            for kind, kind_name in ((Payload.OTP_TYPE_TOTP, "totp"), (Payload.OTP_TYPE_HOTP, "hotp")):
                secret = os.urandom(20)
                name = f"{kind_name}-{alg_name}-{n}@example.com"
                counter = 9 if kind_name == "hotp" else 0
                params.append(
                    {
                        "secret": secret,
                        "name": f"Issuer {alg_name}:{name}",
                        "issuer": f"Issuer {alg_name}",
                        "algorithm": alg,
                        "digits": digits,
                        "type": kind,
                        "counter": counter,
                    }
                )
                expected.append(
                    A.Account(f"Issuer {alg_name}", name, secret, otp.OtpSpec(kind_name, alg_name, n, counter=counter))
                )
    batch = A.parse_migration(migration_link(params, (1, 3, 99)))
    assert batch.accounts == expected
    assert (batch.batch_id, batch.position, batch.size) == (99, 1, 3)


def test_migration_defaults_and_names_without_issuer() -> None:
    link = migration_link([{"secret": SECRET, "name": "Corp:carol", "type": Payload.OTP_TYPE_TOTP}])
    assert A.parse_migration(link).accounts == [A.Account("Corp", "carol", SECRET, otp.OtpSpec("totp"))]


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("otpauth-migration://offline", "data: missing"),
        ("otpauth-migration://offline?data=%%%", "data: not base64"),
        ("otpauth-migration://offline?data=" + base64.b64encode(b"\xff\xff\xff").decode(), "not a migration payload"),
        (migration_link([{"secret": SECRET, "name": "m", "type": 2, "algorithm": Payload.ALGORITHM_MD5}]), "MD5"),
        (migration_link([{"secret": SECRET, "name": "t", "type": 0}]), "type"),
        (migration_link([{"name": "s", "type": 2}]), "secret: missing"),
        (migration_link([{"secret": SECRET, "name": "d", "type": 2, "digits": 7}]), "digits"),
    ],
)
def test_bad_migration_links(link: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        A.parse_migration(link)
    assert "\n" not in str(err.value)
