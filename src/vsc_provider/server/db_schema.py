"""The server's tables on SQLite and PostgreSQL, and their versioned migrations.

`schema_version` holds the version reached; each step in MIGRATIONS runs once, in order, in the same
transaction that records it (on PostgreSQL under an advisory lock, so instances starting together migrate
once). SQLite files made before versions existed are brought to version 1 by adding the columns they lack.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vsc_provider.server.db_backend import Backend, DatabaseUnavailable, Tx
from vsc_provider.server.db_certs import fill_not_after

# version 1: the tables as they were when versions began; {real}, {blob} and {rowid} are spelled per dialect
# (SQLite keeps its implicit rowid on keys; PostgreSQL gets an identity column of that name)
_V1 = """
CREATE TABLE IF NOT EXISTS activations(
    code_hash TEXT PRIMARY KEY, "user" TEXT NOT NULL, profile TEXT NOT NULL, created {real} NOT NULL,
    expires {real} NOT NULL, used {real}, device TEXT, ticket TEXT
);
CREATE TABLE IF NOT EXISTS devices(
    id TEXT PRIMARY KEY, "user" TEXT NOT NULL, profile TEXT NOT NULL, jwk TEXT NOT NULL, created {real} NOT NULL,
    state TEXT NOT NULL DEFAULT 'active', renew INTEGER NOT NULL DEFAULT 0, attested INTEGER NOT NULL DEFAULT 0,
    pin_verifier {blob}, server_secret {blob}, pin_failures INTEGER NOT NULL DEFAULT 0,
    pin_blocked_until {real} NOT NULL DEFAULT 0, pin_verifier_next {blob}, confirmed {real},
    so_pin {blob}, unblock INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS keys(
    {rowid}device TEXT NOT NULL, key_id TEXT NOT NULL, usage TEXT NOT NULL, format TEXT NOT NULL,
    spki {blob} NOT NULL, cert {blob}, escrow {blob}, created {real} NOT NULL, active INTEGER NOT NULL DEFAULT 1,
    retired {real}, serial TEXT
);
CREATE INDEX IF NOT EXISTS keys_by_device ON keys(device);
CREATE TABLE IF NOT EXISTS spent_nonces(value TEXT PRIMARY KEY, expires {real} NOT NULL);
CREATE INDEX IF NOT EXISTS spent_nonces_by_expiry ON spent_nonces(expires);
CREATE TABLE IF NOT EXISTS tickets(
    id TEXT PRIMARY KEY, device TEXT NOT NULL, target TEXT NOT NULL, created {real} NOT NULL,
    target_key TEXT, state TEXT NOT NULL DEFAULT 'issued'
);
CREATE TABLE IF NOT EXISTS relying_parties(
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, key_hash TEXT UNIQUE, created {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS requests(
    id TEXT PRIMARY KEY, rp TEXT NOT NULL, kind TEXT NOT NULL, alg TEXT NOT NULL, format TEXT NOT NULL,
    input TEXT NOT NULL, callback TEXT, named_device TEXT, state TEXT NOT NULL DEFAULT 'PENDING',
    created {real} NOT NULL, expires {real} NOT NULL, decided {real}, device TEXT, signature TEXT,
    certificate {blob}
);
CREATE INDEX IF NOT EXISTS requests_pending ON requests(state, expires);
CREATE TABLE IF NOT EXISTS request_targets(
    request TEXT NOT NULL, device TEXT NOT NULL, key_id TEXT NOT NULL, document TEXT NOT NULL,
    display_hash TEXT NOT NULL, PRIMARY KEY (request, device)
);
CREATE INDEX IF NOT EXISTS request_targets_by_device ON request_targets(device);
CREATE INDEX IF NOT EXISTS keys_by_serial ON keys(serial)
"""

# version 2: which data directory the database belongs to (fingerprints of its CA, protocol and escrow keys)
_V2 = """
CREATE TABLE IF NOT EXISTS server_identity(name TEXT PRIMARY KEY, value TEXT NOT NULL)
"""

# version 3: OATH seeds provisioned at activation (sealed), with their verification state (the next HOTP
# counter, the last TOTP step accepted, a pending HOTP resync) and wrong-code throttle; the OTP setting an
# activation link was made with
_V3 = """
CREATE TABLE IF NOT EXISTS otp_seeds(
    device TEXT PRIMARY KEY, kind TEXT NOT NULL, algorithm TEXT NOT NULL, digits INTEGER NOT NULL,
    period INTEGER NOT NULL, issuer TEXT NOT NULL, seed {blob} NOT NULL, steps INTEGER NOT NULL,
    resync INTEGER NOT NULL, counter BIGINT NOT NULL DEFAULT 0, last_step BIGINT NOT NULL DEFAULT -1,
    resync_at BIGINT, failures INTEGER NOT NULL DEFAULT 0, blocked_until {real} NOT NULL DEFAULT 0,
    created {real} NOT NULL
);
ALTER TABLE activations ADD COLUMN otp TEXT
"""

# version 4: the public key (JWK) of the device's TPM attestation key, registered at activation (None: no TPM)
_V4 = """
ALTER TABLE devices ADD COLUMN tpm_key TEXT
"""


# the rate limits' token buckets, shared by the instances on PostgreSQL (limits_shared.py; unlogged:
# a crash forgets them, and writing them costs no WAL flush); SQLite servers keep theirs in the process
_RATE_BUCKETS = """
CREATE {unlogged}TABLE IF NOT EXISTS rate_buckets(
    name TEXT NOT NULL, client TEXT NOT NULL, tokens {real} NOT NULL, since {real} NOT NULL,
    PRIMARY KEY (name, client)
)
"""

# each certificate's notAfter (UNIX time), stored when it is issued and filled here for the rows
# already there, so the renewal check reads a column instead of parsing certificates; and counters, whose
# 'revocations' row counts retirements, so every instance knows whether the CRL it signed is still current
_NOT_AFTER = """
ALTER TABLE keys ADD COLUMN not_after {real};
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL)
"""

NOT_AFTER_VERSION = 6  # the version that adds keys.not_after (and fills it)

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
    (5, _RATE_BUCKETS),
    (NOT_AFTER_VERSION, _NOT_AFTER),
)

CURRENT = MIGRATIONS[-1][0]  # the version this release's code reads and writes

# what a version fills in Python after its statements (in the same transaction)
_FILLS: dict[int, Callable[[Tx], None]] = {NOT_AFTER_VERSION: fill_not_after}

_TYPES = {
    "sqlite": {"real": "REAL", "blob": "BLOB", "rowid": "", "unlogged": ""},
    "postgresql": {
        "real": "DOUBLE PRECISION",
        "blob": "BYTEA",
        "rowid": "rowid BIGINT GENERATED ALWAYS AS IDENTITY, ",
        "unlogged": "UNLOGGED ",
    },
}

# SQLite files from before schema_version: the columns added after the first release, and the statement
# that fills a column for the rows already there, if its default is not right for them
_LEGACY_COLUMNS: tuple[tuple[str, str, str, str | None], ...] = (
    ("devices", "pin_verifier_next", "BLOB", None),
    ("tickets", "target_key", "TEXT", None),
    ("tickets", "state", "TEXT NOT NULL DEFAULT 'issued'", None),
    # devices activated before confirmation existed are in use: confirmed as of their activation
    ("devices", "confirmed", "REAL", "UPDATE devices SET confirmed = created"),
    # when a key was retired (its certificate revoked); keys retired before: as of their creation
    ("keys", "retired", "REAL", "UPDATE keys SET retired = created WHERE active = 0"),
    # the certificate's serial number (hex), for OCSP; filled for older rows by Database.fill_serials()
    ("keys", "serial", "TEXT", None),
    # the card's SO PIN (sealed), sent at activation, so that the administrator's unblock reaches the card
    ("devices", "so_pin", "BLOB", None),
    ("devices", "unblock", "INTEGER NOT NULL DEFAULT 0", None),
)

_MIGRATION_LOCK = 0x76736373  # the advisory lock instances take while migrating a PostgreSQL database


def _statements(dialect: str, script: str) -> list[str]:
    text = script.format(**_TYPES[dialect])
    return [s for s in (part.strip() for part in text.split(";")) if s]


def _legacy_sqlite(tx: Tx) -> None:
    """An SQLite file made before schema versions: the columns later releases added, then version 1."""
    tx.execute("DROP TABLE IF EXISTS nonces")
    for table, column, declaration, backfill in _LEGACY_COLUMNS:
        have = {row[1] for row in tx.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            if backfill:
                tx.execute(backfill)


def version(tx: Tx) -> int:
    row = tx.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(backend: Backend) -> int:
    """Bring the database to the newest version; the version it is at."""

    def run(tx: Tx) -> int:
        if backend.dialect == "postgresql":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        real = _TYPES[backend.dialect]["real"]
        tx.execute(f"CREATE TABLE IF NOT EXISTS schema_version(version INTEGER PRIMARY KEY, applied {real} NOT NULL)")
        reached = version(tx)
        if reached == 0 and backend.dialect == "sqlite":
            if tx.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'devices'").fetchone():
                _legacy_sqlite(tx)
        for number, script in MIGRATIONS:
            if number > reached:
                for statement in _statements(backend.dialect, script):
                    tx.execute(statement)
                if number in _FILLS:
                    _FILLS[number](tx)
                tx.execute("INSERT INTO schema_version(version, applied) VALUES (?, ?)", (number, time.time()))
                reached = number
        return reached

    return backend.write(run)


class SchemaMismatch(DatabaseUnavailable):
    """The database is not at this release's schema version, or has no schema at all (a one-line reason)."""


NO_SERVER = "no vsc server has run on this database"


def recorded(backend: Backend) -> int | None:
    """The version the database is at, read without changing anything; None when it has no schema yet."""
    with backend.read() as tx:
        if backend.dialect == "postgresql":
            present = bool(tx.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0])
        else:
            found = tx.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
            present = found.fetchone() is not None
        return version(tx) if present else None


def check_current(backend: Backend) -> int:
    """This release's version, which the database must be at already (the admin's commands migrate nothing:
    the servers do, when a release that changes the schema starts); SchemaMismatch otherwise."""
    reached = recorded(backend)
    if not reached:
        raise SchemaMismatch(NO_SERVER)
    if reached != CURRENT:
        if reached > CURRENT:
            how = "newer than this release's {}: use the release the servers run"
        else:
            how = "older than this release's {}: start a `vsc server run` of this release on it first"
        raise SchemaMismatch(f"the database's schema is version {reached}, " + how.format(CURRENT))
    return reached
