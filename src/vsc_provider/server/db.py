"""The server's storage: activation codes, devices, certificates, spent nonces, migration tickets, relying
parties and their requests, on SQLite (the data directory's server.sqlite) or PostgreSQL (db_backend.py).

Every state change that must happen once (a code used, a nonce spent, a PIN try counted, a device
confirmed, a ticket completed, a request decided) is a conditional UPDATE, a unique INSERT or a change made
under the device row's lock, in one transaction: concurrent requests, in one process or several, cannot
both win. Transactions that change a device's rows lock the device row first, so they queue in one order.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vsc_provider.server.db_backend import Backend, Tx, open_backend
from vsc_provider.server.db_certs import CertificateTables, NewKey
from vsc_provider.server.db_otp import OtpSeed, OtpTables
from vsc_provider.server.db_requests import RequestTables
from vsc_provider.server.db_schema import check_current, migrate

# server_identity rows recorded by the last server to start: the TLS key pin it presents, the next one announced,
# the URL of the push relay it notifies
TLS_PIN, TLS_NEXT_PIN, RELAY_URL = "tls_pin", "tls_next_pin", "relay_url"

NONCE_PURGE_EVERY = 5.0  # seconds between deletions of spent nonces past their expiry (per process)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


# A device's migration tickets issued here and not completed (parameters: device, since); the row of the ticket
# a device arrived with (target 'received') is not one of them.
_OPEN_TICKETS = (
    "SELECT COUNT(*) FROM tickets WHERE device = ? AND state = 'issued' AND target <> 'received' AND created >= ?"
)


@dataclass
class Device:
    id: str
    user: str
    profile: str
    jwk: dict[str, Any]
    state: str
    renew: bool
    pin_verifier: bytes | None
    server_secret: bytes | None
    pin_failures: int
    pin_blocked_until: float
    pin_verifier_next: bytes | None = None
    created: float = 0.0
    confirmed: float | None = None  # the first request signed with its kid; None while only activated
    so_pin: bytes | None = None  # stored at registration only (read with Database.so_pin)
    tpm_key: dict[str, Any] | None = None  # public JWK of its TPM attestation key (docs/attestation.md)


_DEVICE_COLUMNS = (
    'id, "user", profile, jwk, state, renew, pin_verifier, server_secret, pin_failures, pin_blocked_until,'
    " pin_verifier_next, created, confirmed, tpm_key"
)


# a device's secrets held by the server: stored sealed (FieldSealer), never in clear
SEALED_COLUMNS = ("pin_verifier", "server_secret", "pin_verifier_next", "so_pin")


class FieldSealer(Protocol):
    def seal_field(self, device: str, name: str, plain: bytes) -> bytes: ...

    def unseal_field(self, device: str, name: str, blob: bytes) -> bytes: ...


class Database(RequestTables, OtpTables, CertificateTables):
    """All the server's SQL, on whichever back end `open_database` chose."""

    def __init__(self, backend: Backend, sealer: FieldSealer | None = None, upgrade: bool = True) -> None:
        """UPGRADE: migrate to this release's schema (a server starting); without it the database must be at
        that version already (an admin command: db_schema.SchemaMismatch otherwise)."""
        self._b = backend
        self.sealer = sealer  # set before any device secret is read or written
        self._purged = 0.0
        self.version = migrate(backend) if upgrade else check_current(backend)

    @property
    def backend(self) -> Backend:
        return self._b

    @property
    def shared(self) -> bool:
        """Whether other server processes may use this database (PostgreSQL)."""
        return self._b.dialect == "postgresql"

    def close(self) -> None:
        self._b.close()

    # --- which data directory the database belongs to --------------------------------------------

    def identity(self) -> dict[str, str]:
        with self._b.read() as db:
            return {str(r[0]): str(r[1]) for r in db.execute("SELECT name, value FROM server_identity")}

    def claim_identity(self, values: dict[str, str]) -> dict[str, str]:
        """Record the data directory's fingerprints where none are recorded yet; the recorded ones."""

        def claim(tx: Tx) -> dict[str, str]:
            for name, value in values.items():
                tx.execute(
                    "INSERT INTO server_identity(name, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, value)
                )
            return {str(r[0]): str(r[1]) for r in tx.execute("SELECT name, value FROM server_identity")}

        return self._b.write(claim)

    def record_served(self, values: dict[str, str | None]) -> None:
        """What the last server to start serves (the pin of the TLS key it presents and of the next one it
        announces, the push relay it notifies), for the admin commands run on this database with a copy of
        the data directory (which may predate a rotation, and knows no relay); None removes a row. Also a lone
        (SQLite) server's relay-secret fingerprint, replaced when it made the file anew."""

        def record(tx: Tx) -> None:
            for name, value in values.items():
                if value is None:
                    tx.execute("DELETE FROM server_identity WHERE name = ?", (name,))
                else:
                    tx.execute(
                        "INSERT INTO server_identity(name, value) VALUES (?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (name, value),
                    )

        self._b.write(record)

    def has_devices(self) -> bool:
        with self._b.read() as db:
            return db.execute("SELECT 1 FROM devices LIMIT 1").fetchone() is not None

    # --- nonces -------------------------------------------------------------------------------

    def spend_nonce(self, value: str, expires: float) -> bool:
        """Record a (valid, unexpired) nonce as used; False if it was used already. Rows are deleted (every
        few seconds) once the nonce would have expired anyway, so the table holds what was spent recently."""
        now = time.time()
        if now - self._purged > NONCE_PURGE_EVERY:
            self._purged = now
            self._b.write_one("DELETE FROM spent_nonces WHERE expires < ?", (now,))
        sql = "INSERT INTO spent_nonces(value, expires) VALUES (?, ?) ON CONFLICT DO NOTHING"
        return self._b.write_one(sql, (value, expires)) == 1

    def open_tickets(self, device_id: str, since: float) -> int:
        """Migration tickets issued to a device since a time and not completed."""
        with self._b.read() as db:
            row = db.execute(_OPEN_TICKETS, (device_id, since)).fetchone()
        return int(row[0])

    # --- activation codes ---------------------------------------------------------------------

    def add_activation(
        self, code: str, user: str, profile: str, ttl: float, ticket: str | None = None, otp: str | None = None
    ) -> None:
        """A new activation code; `otp` is the JSON of the OTP setting it was made with (None: the profile's)."""
        now = time.time()
        self._b.write(
            lambda tx: tx.execute(
                'INSERT INTO activations(code_hash, "user", profile, created, expires, ticket, otp)'
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (code_hash(code), user, profile, now, now + ttl, ticket, otp),
            )
        )

    def activation_otp(self, code: str) -> str | None:
        """The JSON of the OTP setting an activation code was made with, or None."""
        with self._b.read() as db:
            row = db.execute("SELECT otp FROM activations WHERE code_hash = ?", (code_hash(code),)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def activation(self, code: str) -> tuple[str, str] | None:
        """(user, profile) of a usable code, or None for an unknown, used or expired one."""
        with self._b.read() as db:
            row = db.execute(
                'SELECT "user", profile FROM activations WHERE code_hash = ? AND used IS NULL AND expires >= ?',
                (code_hash(code), time.time()),
            ).fetchone()
        return (row[0], row[1]) if row else None

    @staticmethod
    def _use_activation(tx: Tx, code: str, device: str) -> bool:
        now = time.time()
        cur = tx.execute(
            "UPDATE activations SET used = ?, device = ? WHERE code_hash = ? AND used IS NULL AND expires >= ?",
            (now, device, code_hash(code), now),
        )
        return cur.rowcount == 1

    def code_device(self, code: str) -> str | None:
        """The device that used an activation code (not a migration ticket's code), or None."""
        with self._b.read() as db:
            row = db.execute(
                "SELECT device FROM activations WHERE code_hash = ? AND used IS NOT NULL AND ticket IS NULL",
                (code_hash(code),),
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    # --- devices ------------------------------------------------------------------------------

    def register_device(
        self,
        dev: Device,
        attested: bool,
        keys: list[NewKey],
        code: str | None = None,
        ticket: str | None = None,
        otp: OtpSeed | None = None,
    ) -> bool:
        """Store an activated device, its keys and its OATH seed, using its activation code or migration ticket
        once: False (and nothing stored) when the code or ticket was used meanwhile."""
        device_row = self._device_row(dev, attested)  # sealed outside the transaction
        otp_row = None if otp is None else self._otp_row(otp)

        def register(tx: Tx) -> bool:
            if code is not None:
                if not self._use_activation(tx, code, dev.id):
                    return False
            elif (
                tx.execute(
                    "INSERT INTO tickets(id, device, target, created) VALUES (?, ?, 'received', ?)"
                    " ON CONFLICT DO NOTHING",
                    (ticket, dev.id, time.time()),
                ).rowcount
                != 1
            ):
                return False
            tx.execute(
                'INSERT INTO devices(id, "user", profile, jwk, created, attested, pin_verifier, server_secret, so_pin,'
                " tpm_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                device_row,
            )
            for key in keys:
                self._insert_key(tx, key)
            if otp_row is not None:
                self._insert_otp(tx, otp_row)
            return True

        return self._b.write(register)

    def _seal(self, device_id: str, name: str, value: bytes | None) -> bytes | None:
        assert self.sealer is not None
        return None if value is None else self.sealer.seal_field(device_id, name, value)

    def _unseal(self, device_id: str, name: str, value: bytes | None) -> bytes | None:
        assert self.sealer is not None
        return None if value is None else self.sealer.unseal_field(device_id, name, bytes(value))

    def seal_clear_fields(self) -> int:
        """Seal the device secrets an earlier version stored in clear; how many were."""

        def seal(tx: Tx) -> int:
            done = 0
            for name in SEALED_COLUMNS:
                rows = tx.execute(f"SELECT id, {name} FROM devices WHERE {name} IS NOT NULL").fetchall()  # noqa: S608 - constant columns
                for device_id, value in rows:
                    if self._unseal(device_id, name, value) == bytes(value):  # not sealed yet
                        sealed = self._seal(device_id, name, bytes(value))
                        tx.execute(f"UPDATE devices SET {name} = ? WHERE id = ?", (sealed, device_id))  # noqa: S608
                        done += 1
            return done

        done = self._b.write(seal)
        if done:
            self._b.compact()  # the clear pages are gone from the log too
        return done

    def _device_row(self, dev: Device, attested: bool) -> tuple[Any, ...]:
        return (
            dev.id,
            dev.user,
            dev.profile,
            json.dumps(dev.jwk),
            time.time(),
            int(attested),
            self._seal(dev.id, "pin_verifier", dev.pin_verifier),
            self._seal(dev.id, "server_secret", dev.server_secret),
            self._seal(dev.id, "so_pin", dev.so_pin),
            None if dev.tpm_key is None else json.dumps(dev.tpm_key),
        )

    def device(self, device_id: str) -> Device | None:
        with self._b.read() as db:
            row = db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device_id,)).fetchone()  # noqa: S608 - constant columns
        if row is None:
            return None
        return Device(
            row[0],
            row[1],
            row[2],
            json.loads(row[3]),
            row[4],
            bool(row[5]),
            self._unseal(row[0], "pin_verifier", row[6]),
            self._unseal(row[0], "server_secret", row[7]),
            row[8],
            row[9],
            self._unseal(row[0], "pin_verifier_next", row[10]),
            row[11],
            row[12],
            tpm_key=None if row[13] is None else json.loads(row[13]),
        )

    def so_pin(self, device_id: str) -> bytes | None:
        """The card's SO PIN as its device sent it at activation (None for devices activated before)."""
        with self._b.read() as db:
            row = db.execute("SELECT so_pin FROM devices WHERE id = ?", (device_id,)).fetchone()
        return None if row is None else self._unseal(device_id, "so_pin", row[0])

    def unblock_pending(self, device_id: str) -> bool:
        with self._b.read() as db:
            row = db.execute("SELECT unblock FROM devices WHERE id = ?", (device_id,)).fetchone()
        return bool(row and row[0])

    def devices(self, device_id: str | None = None) -> list[dict[str, Any]]:
        """The admin's view of every device (or of one): `attested` is "tpm" (a TPM key is registered),
        "implementer" (an implementer attestation key signed its activation) or None."""
        sql = (
            'SELECT id, "user", profile, state, renew, pin_failures, created, confirmed, attested, tpm_key FROM devices'
        )
        with self._b.read() as db:
            if device_id is None:
                rows = db.execute(sql + " ORDER BY created").fetchall()
            else:
                rows = db.execute(sql + " WHERE id = ?", (device_id,)).fetchall()
        names = ("id", "user", "profile", "state", "renew", "pin_failures", "created", "confirmed")
        out = []
        for r in rows:
            entry = dict(zip(names, r[:8], strict=True))
            entry["attested"] = "tpm" if r[9] is not None else "implementer" if r[8] else None
            if device_id is not None and r[9] is not None:
                entry["tpm_key"] = json.loads(r[9])
            out.append(entry)
        return out

    def set_device(self, device_id: str, **fields: Any) -> bool:
        """Update columns named by the code (never by a request); device secrets are sealed on the way."""
        fields = {k: self._seal(device_id, k, v) if k in SEALED_COLUMNS else v for k, v in fields.items()}
        assignments = ", ".join(f"{name} = ?" for name in fields)
        sql = f"UPDATE devices SET {assignments} WHERE id = ?"  # noqa: S608 - column names from the code
        return self._b.write_one(sql, (*fields.values(), device_id)) == 1

    def confirm_device(self, device_id: str) -> None:
        """The device's first request under its kid: it got its activation answer, which is not replayed since."""
        sql = "UPDATE devices SET confirmed = ? WHERE id = ? AND confirmed IS NULL"
        self._b.write_one(sql, (time.time(), device_id))

    def drop_unconfirmed(self, activated_before: float, limit: int) -> list[str]:
        """Delete (keys retired) at most `limit` devices never confirmed since an activation before the time
        given; the ids of those this call deleted (another process may have taken some)."""

        def drop(tx: Tx) -> list[str]:
            ids = [
                str(row[0])
                for row in tx.execute(
                    "SELECT id FROM devices WHERE confirmed IS NULL AND state = 'active' AND created < ?"
                    " ORDER BY created LIMIT ?",
                    (activated_before, limit),
                ).fetchall()
            ]
            dropped, retired = [], 0
            for device_id in ids:
                cur = tx.execute(
                    "UPDATE devices SET state = 'deleted' WHERE id = ? AND state = 'active' AND confirmed IS NULL",
                    (device_id,),
                )
                if cur.rowcount == 1:
                    retired += self._retire_keys(tx, device_id)
                    dropped.append(device_id)
            self._count_revocations(tx, retired)
            return dropped

        return self._b.write(drop)

    @staticmethod
    def _lock_device(tx: Tx, device_id: str) -> Any:
        """Lock the device's row for the rest of the transaction (PostgreSQL; SQLite's writes are exclusive)."""
        return tx.execute(
            "SELECT pin_failures, pin_blocked_until FROM devices WHERE id = ?{lock}", (device_id,)
        ).fetchone()

    def end_device(self, device_id: str, state: str) -> None:
        """The device leaves the 'active' state (deleted, migrated): its keys are retired with it."""

        def end(tx: Tx) -> None:
            tx.execute("UPDATE devices SET state = ? WHERE id = ?", (state, device_id))
            self._count_revocations(tx, self._retire_keys(tx, device_id))

        self._b.write(end)

    def pin_try(self, device_id: str, max_tries: int, now: float) -> tuple[int, float]:
        """(wrong tries so far, blocked until) of a device; the try is counted unless the PIN is blocked
        (max_tries reached) or in a waiting period, under the device row's lock so concurrent tries all count."""

        def count(tx: Tx) -> tuple[int, float]:
            failures, blocked_until = self._lock_device(tx, device_id)
            if failures < max_tries and now >= blocked_until:
                tx.execute("UPDATE devices SET pin_failures = ? WHERE id = ?", (failures + 1, device_id))
            return int(failures), float(blocked_until)

        return self._b.write(count)

    def renew_keys(self, device_id: str, keys: list[NewKey]) -> None:
        """The renewed keys replace the device's generated ones (imported keys stay); the renew flag is cleared."""

        def renew(tx: Tx) -> None:
            self._lock_device(tx, device_id)  # a concurrent renewal waits, then retires these keys in turn
            retired = self._retire_keys(tx, device_id, keep_imported=True)
            for key in keys:
                self._insert_key(tx, key)
            tx.execute("UPDATE devices SET renew = 0 WHERE id = ?", (device_id,))
            self._count_revocations(tx, retired)

        self._b.write(renew)

    def set_escrow(self, rowid: int, blob: bytes) -> None:
        self._b.write(lambda tx: tx.execute("UPDATE keys SET escrow = ? WHERE rowid = ?", (blob, rowid)))

    def escrow_rows(self) -> list[tuple[int, str, str, bytes]]:
        """(rowid, device, key id, blob) of every escrowed key."""
        with self._b.read() as db:
            rows = db.execute("SELECT rowid, device, key_id, escrow FROM keys WHERE escrow IS NOT NULL").fetchall()
        return [(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def ticket(self, ticket_id: str) -> dict[str, Any] | None:
        with self._b.read() as db:
            row = db.execute(
                "SELECT device, target, target_key, state FROM tickets WHERE id = ?", (ticket_id,)
            ).fetchone()
        return None if row is None else {"device": row[0], "target": row[1], "target_key": row[2], "state": row[3]}

    def add_ticket(self, ticket_id: str, device: str, target: str, target_key: str, since: float, cap: int) -> bool:
        """A new issued ticket unless `cap` of the device's are open (issued since `since`, not completed):
        counted and inserted in one transaction under the device row's lock, so instances racing on one
        database cannot together pass the cap. False when it is reached."""

        def add(tx: Tx) -> bool:
            self._lock_device(tx, device)
            row = tx.execute(_OPEN_TICKETS, (device, since)).fetchone()
            if int(row[0]) >= cap:
                return False
            tx.execute(
                "INSERT INTO tickets(id, device, target, created, target_key, state) VALUES (?, ?, ?, ?, ?, 'issued')",
                (ticket_id, device, target, time.time(), target_key),
            )
            return True

        return self._b.write(add)

    def complete_ticket(self, ticket_id: str, device_id: str) -> bool:
        """Close an issued migration ticket once and mark its device migrated; False if it was closed already."""

        def complete(tx: Tx) -> bool:
            done = tx.execute("UPDATE tickets SET state = 'done' WHERE id = ? AND state = 'issued'", (ticket_id,))
            if done.rowcount != 1:
                return False
            tx.execute("UPDATE devices SET state = 'migrated' WHERE id = ?", (device_id,))
            self._count_revocations(tx, self._retire_keys(tx, device_id))
            return True

        return self._b.write(complete)

    def active_keys(self, device: str) -> list[dict[str, Any]]:
        with self._b.read() as db:
            rows = db.execute(
                "SELECT key_id, usage, format, spki, cert, escrow FROM keys WHERE device = ? AND active = 1"
                " ORDER BY rowid",
                (device,),
            ).fetchall()
        return [
            {"key_id": r[0], "usage": r[1], "format": r[2], "spki": r[3], "cert": r[4], "escrow": r[5]} for r in rows
        ]


def open_database(data: Path, database: str | None, upgrade: bool = True) -> Database:
    """The server's database: SQLite in the data directory, or the PostgreSQL of a postgresql:// URL; migrated
    to this release's schema unless UPGRADE is false (then refused unless it is at that version)."""
    backend = open_backend(data, database)
    try:
        return Database(backend, upgrade=upgrade)
    except BaseException:
        backend.close()
        raise
