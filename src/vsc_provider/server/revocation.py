"""Revocation of card certificates: a CRL and OCSP answers signed by the server's CA, covering the
certificates of deleted and migrated devices and of keys replaced by a renewal, from the moment the
server retires them.

Both are built with `cryptography`. A signed CRL is kept until a key is retired (the database's revocation
generation, which every instance reads, moves on) or until a day before its nextUpdate: a GET between those
reads one row.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from vsc_provider.server.ca import Authority
from vsc_provider.server.db import Database

CRL_DAYS = 2  # nextUpdate; the CRL is rebuilt at least daily
OCSP_VALID = dt.timedelta(hours=1)

# why a certificate was revoked, from what retired its key
REASONS = {
    "deleted": x509.ReasonFlags.cessation_of_operation,
    "migrated": x509.ReasonFlags.superseded,
    "active": x509.ReasonFlags.superseded,  # replaced by a renewal on a device still in use
}


def _when(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


class Revocation:
    def __init__(self, db: Database, authority: Authority) -> None:
        self.db, self.authority = db, authority
        self._lock = threading.Lock()
        self._crl: tuple[int, dt.datetime, bytes] | None = None  # (generation, signed at, DER)
        self._hashes: dict[str, tuple[bytes, bytes]] = {}  # OCSP hash name -> (issuer name hash, key hash)

    def crl(self) -> bytes:
        """The current CRL (DER)."""
        generation = self.db.revocation_generation()  # read before the rows: they are at least this new
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            if self._crl is not None and self._crl[0] == generation and now - self._crl[1] < dt.timedelta(days=1):
                return self._crl[2]
            revoked = self.db.revoked()
            authority = self.authority
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(authority.cert.subject)
                .last_update(now - dt.timedelta(minutes=5))
                .next_update(now + dt.timedelta(days=CRL_DAYS))
                .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False
                )
            )
            for serial, retired, state in revoked:
                entry = (
                    x509.RevokedCertificateBuilder()
                    .serial_number(int(serial, 16))
                    .revocation_date(_when(retired))
                    .add_extension(x509.CRLReason(REASONS.get(state, x509.ReasonFlags.unspecified)), critical=False)
                    .build()
                )
                builder = builder.add_revoked_certificate(entry)
            der = builder.sign(authority.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
            self._crl = (generation, now, der)
            return der

    def ocsp(self, request_der: bytes) -> bytes:
        """The OCSP answer (DER) to a request (DER): good, revoked or unknown, signed by the CA; a malformed
        request gets the protocol's MALFORMED_REQUEST answer."""
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
                serialization.Encoding.DER
            )
        authority = self.authority
        state = self.db.certificate_state(format(request.serial_number, "x"))
        ours = self._issuer_matches(request)
        now = dt.datetime.now(dt.UTC)
        if not ours or state is None:
            status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
        elif state[0]:
            status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
        else:
            status = ocsp.OCSPCertStatus.REVOKED
            revoked_at, reason = _when(state[1]), REASONS.get(state[2], x509.ReasonFlags.unspecified)
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                request.issuer_name_hash,
                request.issuer_key_hash,
                request.serial_number,
                request.hash_algorithm,
                status,
                now,
                now + OCSP_VALID,
                revoked_at,
                reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, authority.cert)
            .certificates([authority.cert])
        )
        nonce = _nonce(request)
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return builder.sign(authority.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def _issuer_matches(self, request: Any) -> bool:  # an ocsp.OCSPRequest
        name_hash, key_hash = self._issuer_hashes(request.hash_algorithm)
        return name_hash == request.issuer_name_hash and key_hash == request.issuer_key_hash

    def _issuer_hashes(self, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
        """The CA's issuerNameHash and issuerKeyHash under an OCSP request's hash (made once per hash)."""
        if algorithm.name not in self._hashes:
            cert = self.authority.cert
            name_hash = _digest(algorithm, cert.subject.public_bytes())
            self._hashes[algorithm.name] = (name_hash, _digest(algorithm, _subject_public_key_bits(cert)))
        return self._hashes[algorithm.name]


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def _subject_public_key_bits(cert: x509.Certificate) -> bytes:
    """The BIT STRING contents of the certificate's subjectPublicKey (what OCSP's issuerKeyHash hashes)."""
    from asn1crypto import keys

    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bytes(keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])  # first byte: unused bits


def _nonce(request: Any) -> bytes | None:  # an ocsp.OCSPRequest
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None
