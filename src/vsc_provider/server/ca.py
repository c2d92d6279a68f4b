"""The server's own CA and TLS certificate (created on first start) and certificate issuance from CSRs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from vsc_provider.provisioning import wire

CERT_DAYS = 365


def cert_days() -> int:
    """How long card certificates last: VSC_SERVER_CERT_DAYS, default CERT_DAYS."""
    return int(os.environ.get("VSC_SERVER_CERT_DAYS", str(CERT_DAYS)))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vsc-provider"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


@dataclass
class Authority:
    """The CA key and certificate, and the TLS key pair the server presents."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    tls_cert_path: Path
    tls_key_path: Path
    tls_pin: str

    @classmethod
    def load_or_create(cls, data: Path, hosts: list[str]) -> Authority:
        ca_key_path, ca_cert_path = data / "ca.key", data / "ca.pem"
        tls_key_path, tls_cert_path = data / "tls.key", data / "tls.pem"
        if not ca_key_path.exists():
            key = rsa.generate_private_key(65537, 3072)
            now = dt.datetime.now(dt.UTC)
            name = _name(f"vsc identity CA {secrets.token_hex(4)}")
            signed = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            _write_private(ca_key_path, _pem_key(key))
            ca_cert_path.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        if not tls_key_path.exists():
            tls_key = ec.generate_private_key(ec.SECP256R1())
            sans: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    sans.append(x509.DNSName(host))
            now = dt.datetime.now(dt.UTC)
            tls = (
                x509.CertificateBuilder()
                .subject_name(_name(hosts[0]))
                .issuer_name(ca_cert.subject)
                .public_key(tls_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CERT_DAYS * 2))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            _write_private(tls_key_path, _pem_key(tls_key))
            tls_cert_path.write_bytes(tls.public_bytes(serialization.Encoding.PEM) + ca_cert_path.read_bytes())
        tls_cert = x509.load_pem_x509_certificate(tls_cert_path.read_bytes())
        spki = tls_cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(ca_key, ca_cert, tls_cert_path, tls_key_path, wire.spki_pin(spki))

    def issue(
        self, public_key: Any, user: str, usage: str, days: int | None = None, server_url: str = ""
    ) -> x509.Certificate:
        """A certificate for a device key: the subject is the server's user name, usage from the profile; with
        the server's URL, where its CRL and OCSP answers are (so relying parties can check revocation)."""
        now = dt.datetime.now(dt.UTC)
        if usage == "auth":
            ku = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
            eku = [ExtendedKeyUsageOID.CLIENT_AUTH]
        elif usage == "sign":
            ku = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
            eku = [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CODE_SIGNING]
        else:
            encipher = isinstance(public_key, rsa.RSAPublicKey)
            ku = x509.KeyUsage(False, False, encipher, False, not encipher, False, False, False, False)
            eku = [ExtendedKeyUsageOID.EMAIL_PROTECTION]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(user))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=cert_days() if days is None else days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(ku, critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if server_url:
            crl = x509.UniformResourceIdentifier(f"{server_url}/v1/crl")
            builder = builder.add_extension(
                x509.CRLDistributionPoints([x509.DistributionPoint([crl], None, None, None)]), critical=False
            ).add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(f"{server_url}/v1/ocsp")
                        )
                    ]
                ),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256())
