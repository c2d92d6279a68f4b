"""The server's TLS key: made on first start, issued by the server's own CA, and rotated in two steps.

`vsc server rotate-tls` makes the next key (tls-next.key / tls-next.pem) and the server announces its pin
(signed by the protocol key) to every card that contacts it; `--switch` makes it the key the server
presents (after a restart) and keeps the previous one as tls-previous.*. Cards anchor on the server's CA as
well as on the pins they know, so a card offline across a rotation still connects.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vsc_provider.cert_builder import certificate_builder
from vsc_provider.provisioning import wire

TLS_DAYS = 730


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


def switch(data: Path) -> str:
    """The announced key becomes the one presented (at the next start); the current one is kept as
    tls-previous.*. The new pin; ValueError when nothing was announced."""
    if not (data / "tls-next.pem").exists():
        raise ValueError("no next TLS key was announced: run `vsc server rotate-tls` first")
    for suffix in (".key", ".pem"):
        os.replace(data / f"tls{suffix}", data / f"tls-previous{suffix}")
        os.replace(data / f"tls-next{suffix}", data / f"tls{suffix}")
    return pin_of(data / "tls.pem")
