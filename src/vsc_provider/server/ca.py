"""The server's own CA and TLS certificate (created on first start) and certificate issuance from CSRs."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from vsc_provider.cert_builder import certificate_builder
from vsc_provider.server import tls

CERT_DAYS = 365


def cert_days() -> int:
    """How long card certificates last: VSC_SERVER_CERT_DAYS, default CERT_DAYS."""
    return int(os.environ.get("VSC_SERVER_CERT_DAYS", str(CERT_DAYS)))


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
            name = _name(f"vsc identity CA {secrets.token_hex(4)}")
            signed = (
                certificate_builder(name, name, key.public_key(), 3650)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            tls.write_private(ca_key_path, _pem_key(key))
            ca_cert_path.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        if not tls_key_path.exists():
            tls.write_leaf(data, "tls", ca_key, ca_cert, hosts)
        return cls(ca_key, ca_cert, tls_cert_path, tls_key_path, tls.pin_of(tls_cert_path))

    def issue(
        self, public_key: Any, user: str, usage: str, days: int | None = None, server_url: str = ""
    ) -> x509.Certificate:
        """A certificate for a device key: the subject is the server's user name, usage from the profile; with
        the server's URL, where its CRL and OCSP answers are (so relying parties can check revocation)."""
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
            certificate_builder(_name(user), self.cert.subject, public_key, cert_days() if days is None else days)
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
