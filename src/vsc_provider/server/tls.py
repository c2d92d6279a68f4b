"""The server's TLS key: made on first start, issued by the server's own CA, and rotated in two steps.

`vsc server rotate-tls` makes the next key (tls-next.key / tls-next.pem) and the server announces its pin
(signed by the protocol key) to every card that contacts it; `--switch` makes it the key the server
presents (after a restart) and keeps the previous one as tls-previous.* for a grace period (GRACE_DAYS):
until then it is announced beside the current one (instances not restarted yet still present it), from then
on as retired, so a card that has heard of the switch refuses it even though the CA issued it; its files are
removed at the first start or rotation after the grace period. tls-rotation.json records when each retired
key stops being accepted. Cards anchor on the server's CA as well as on the pins they know, so a card
offline across a rotation still connects.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vsc_provider.cert_builder import certificate_builder
from vsc_provider.provisioning import wire

log = logging.getLogger("vsc.server")

TLS_DAYS = 730
GRACE_DAYS = 30  # after a switch, how long the previous key is still accepted by cards that heard of it
MAX_GRACE_DAYS = 3650  # `rotate-tls --switch --grace-days` refuses more (and anything not a finite number)
ROTATION = "tls-rotation.json"  # {"retire": {pin: epoch seconds from which cards refuse that key}}
_LATEST = 10**11  # a retire time past this (the year 5138) is not one a switch wrote
_warned: set[str] = set()  # the unusable records already logged, so that each is logged once


def write_private(path: Path, data: bytes) -> None:
    """A key file: the owner's alone from its creation."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_leaf(data: Path, stem: str, ca_key: Any, ca_cert: x509.Certificate, hosts: list[str]) -> None:
    """A new TLS key and its certificate (for `hosts`, issued by the CA) as STEM.key and STEM.pem (leaf + CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    organisation = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vsc-provider")
    name = x509.Name([organisation, x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    cert = (
        certificate_builder(name, ca_cert.subject, key.public_key(), TLS_DAYS)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(data / f"{stem}.key", pkcs8)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    (data / f"{stem}.pem").write_bytes(chain)


def pin_of(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return wire.spki_pin(spki)


def next_pin(data: Path) -> str | None:
    path = data / "tls-next.pem"
    return pin_of(path) if path.exists() else None


def hosts_of(cert_path: Path) -> list[str]:
    """The names and addresses the current TLS certificate is for (the next one gets the same)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name.value) for name in sans]


def announce(data: Path, ca_key: Any, ca_cert: x509.Certificate) -> str:
    """Make the next TLS key (once; again returns the same); its pin."""
    if not (data / "tls-next.pem").exists():
        write_leaf(data, "tls-next", ca_key, ca_cert, hosts_of(data / "tls.pem"))
    return pin_of(data / "tls-next.pem")


def retired(data: Path) -> dict[str, float]:
    """Each previous key's pin and the time from which cards refuse it (the end of its grace period). A record
    that is not one a switch writes (edited by hand, cut short) is logged once and read as none: no key in
    its grace period, and /v1/server still answers."""
    path = data / ROTATION
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        retire = json.loads(text)["retire"]
        if not isinstance(retire, dict):
            raise TypeError("retire is not an object")
        times = {str(pin): float(until) for pin, until in retire.items()}
        if not all(math.isfinite(until) and 0 <= until <= _LATEST for until in times.values()):
            raise ValueError("a retire time is not a time")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        if text not in _warned:
            _warned.add(text)
            log.warning("%s is not usable, read as no previous key in its grace period: %s", path, exc)
        return {}
    return times


def grace_days_problem(days: float) -> str | None:
    """Why `days` is not a grace period a switch accepts, or None."""
    if not (math.isfinite(days) and 0 <= days <= MAX_GRACE_DAYS):
        return f"a grace period is a number of days from 0 to {MAX_GRACE_DAYS}"
    return None


def switch(data: Path, grace_days: float = GRACE_DAYS) -> str:
    """The announced key becomes the one presented (at the next start); the current one is kept as
    tls-previous.* and accepted for GRACE_DAYS more. The new pin; ValueError when nothing was announced."""
    problem = grace_days_problem(grace_days)
    if problem:
        raise ValueError(problem)
    if not (data / "tls-next.pem").exists():
        raise ValueError("no next TLS key was announced: run `vsc server rotate-tls` first")
    for stem in ("tls-next", "tls"):  # checked before anything is written or moved
        problem = _pair_problem(data, stem)
        if problem:
            raise ValueError(problem)
    retire = {**retired(data), pin_of(data / "tls.pem"): time.time() + grace_days * 86400}
    fresh = data / f"{ROTATION}.new"
    fresh.write_text(json.dumps({"retire": retire}))
    os.replace(fresh, data / ROTATION)
    for suffix in (".key", ".pem"):
        os.replace(data / f"tls{suffix}", data / f"tls-previous{suffix}")
        os.replace(data / f"tls-next{suffix}", data / f"tls{suffix}")
    return pin_of(data / "tls.pem")


def _pair_problem(data: Path, stem: str) -> str | None:
    """Why STEM.key and STEM.pem are not a key and its certificate, or None."""
    key_path, cert_path = data / f"{stem}.key", data / f"{stem}.pem"
    for path in (key_path, cert_path):
        if not path.exists():
            return f"{path} is missing: nothing was switched"
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (ValueError, TypeError) as exc:
        return f"{stem}.key or {stem}.pem cannot be read ({exc}): nothing was switched"
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        return f"{key_path} is not the key of {cert_path}: nothing was switched"
    return None


def forget_previous(data: Path, now: float) -> None:
    """After its recorded grace period the previous key is of no more use: its files go."""
    previous = data / "tls-previous.pem"
    if previous.exists() and retired(data).get(pin_of(previous), now + 1) <= now:
        for suffix in (".key", ".pem"):
            (data / f"tls-previous{suffix}").unlink(missing_ok=True)
