"""The start every certificate this project makes has (the server's CA, its TLS certificate and the ones it
issues, and the self-signed certificates of certify.py): names, key, a random serial and the validity."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

# Valid from a little before now: a relying party whose clock is a few minutes behind still accepts it.
BACKDATE = dt.timedelta(minutes=5)


def certificate_builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, days: int, serial: int | None = None
) -> x509.CertificateBuilder:
    """SERIAL when given (a test that needs a given one), else a random serial."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
    )
