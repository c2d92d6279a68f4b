"""The SQL of the certificates the server issued (part of the server's Database): stored with their serial
and notAfter when issued, retired with a bump of the revocation generation, read back for the CRL, OCSP and
the renewal check without parsing a certificate."""

from __future__ import annotations

import time
from typing import NamedTuple

from vsc_provider.server.db_backend import Backend, Tx


class NewKey(NamedTuple):
    """A key row to store: what the server certified (or generated and escrowed) for a device."""

    device: str
    key_id: str
    usage: str
    format: str
    spki: bytes
    cert: bytes | None
    escrow: bytes | None = None


def cert_serial(der: bytes | None) -> str | None:
    """A certificate's serial number as lower-case hex (what OCSP and the CRL name it by)."""
    if der is None:
        return None
    from cryptography import x509

    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def cert_not_after(der: bytes | None) -> float | None:
    """A certificate's notAfter as UNIX time."""
    if der is None:
        return None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


def fill_not_after(tx: Tx) -> None:
    """notAfter of the certificates stored before the column existed (run by the migration that adds it)."""
    rows = tx.execute("SELECT rowid, cert FROM keys WHERE cert IS NOT NULL AND not_after IS NULL").fetchall()
    for rowid, cert in rows:
        tx.execute("UPDATE keys SET not_after = ? WHERE rowid = ?", (cert_not_after(bytes(cert)), rowid))


class CertificateTables:
    """Issued keys and certificates; every retirement counts in `counters`' 'revocations' row, which the
    instances compare to know whether the CRL they signed is still current."""

    _b: Backend

    @staticmethod
    def _insert_key(tx: Tx, key: NewKey) -> None:
        tx.execute(
            "INSERT INTO keys(device, key_id, usage, format, spki, cert, escrow, created, serial, not_after)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, time.time(), cert_serial(key.cert), cert_not_after(key.cert)),
        )

    @staticmethod
    def _retire_keys(tx: Tx, device_id: str, keep_imported: bool = False) -> int:
        """Retire a device's active keys (all, or all but the imported ones); how many. The transaction then
        counts them with _count_revocations, as its last statement."""
        imported = " AND format != 'imported'" if keep_imported else ""
        retired = tx.execute(
            f"UPDATE keys SET active = 0, retired = ? WHERE device = ? AND active = 1{imported}",  # noqa: S608
            (time.time(), device_id),
        )
        return int(retired.rowcount)

    @staticmethod
    def _count_revocations(tx: Tx, retired: int) -> None:
        """Bump the revocation generation when keys were retired: last in its transaction, so that the
        counter's row lock is held only up to the commit and never while another device's row is awaited."""
        if retired:
            tx.execute(
                "INSERT INTO counters(name, value) VALUES ('revocations', 1)"
                " ON CONFLICT (name) DO UPDATE SET value = counters.value + 1"
            )

    def revocation_generation(self) -> int:
        """How many times keys were retired (a CRL signed at this value is current while it holds)."""
        with self._b.read() as db:
            row = db.execute("SELECT value FROM counters WHERE name = 'revocations'").fetchone()
        return 0 if row is None else int(row[0])

    def fill_serials(self) -> None:
        """Serial numbers for certificates stored before the column existed."""

        def fill(tx: Tx) -> None:
            rows = tx.execute("SELECT rowid, cert FROM keys WHERE cert IS NOT NULL AND serial IS NULL").fetchall()
            for rowid, cert in rows:
                tx.execute("UPDATE keys SET serial = ? WHERE rowid = ?", (cert_serial(bytes(cert)), rowid))

        self._b.write(fill)

    def revoked(self) -> list[tuple[str, float, str]]:
        """(serial hex, retired at, the device's state) of every certificate whose key is retired."""
        with self._b.read() as db:
            rows = db.execute(
                "SELECT k.serial, k.retired, d.state FROM keys k JOIN devices d ON d.id = k.device"
                " WHERE k.active = 0 AND k.serial IS NOT NULL ORDER BY k.rowid"
            ).fetchall()
        return [(str(r[0]), float(r[1] or 0.0), str(r[2])) for r in rows]

    def certificate_state(self, serial: str) -> tuple[bool, float, str] | None:
        """(still active, retired at, the device's state) of the certificate with this serial; None if unknown."""
        with self._b.read() as db:
            row = db.execute(
                "SELECT k.active, k.retired, d.state FROM keys k JOIN devices d ON d.id = k.device WHERE k.serial = ?",
                (serial,),
            ).fetchone()
        return None if row is None else (bool(row[0]), float(row[1] or 0.0), str(row[2]))

    def expiring(self, device: str, before: float) -> bool:
        """Whether an active certificate of the device expires before a time."""
        with self._b.read() as db:
            row = db.execute(
                "SELECT 1 FROM keys WHERE device = ? AND active = 1 AND not_after <= ? LIMIT 1", (device, before)
            ).fetchone()
        return row is not None
