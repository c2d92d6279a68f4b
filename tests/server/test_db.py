"""The storage layer on both back ends, in process: versioned migrations (an SQLite file from before versions
included), and the "happens once" steps raced between two Database objects (two pools, as two instances)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vsc_provider.cert_builder import certificate_builder
from vsc_provider.server import db_schema
from vsc_provider.server.db import Database, Device, NewKey, open_database
from vsc_provider.server.db_backend import DatabaseUnavailable, open_backend
from vsc_provider.server.db_schema import MIGRATIONS


class PlainSealer:
    """Marks values instead of encrypting them (the sealing itself is tested in test_at_rest.py)."""

    def seal_field(self, device: str, name: str, plain: bytes) -> bytes:
        return b"sealed:" + plain

    def unseal_field(self, device: str, name: str, blob: bytes) -> bytes:
        return blob[len(b"sealed:") :] if blob.startswith(b"sealed:") else blob


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return request.getfixturevalue("postgres").database() if request.param == "postgresql" else None


@pytest.fixture
def two(url: str | None, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    first, second = open_database(tmp_path, url), open_database(tmp_path, url)
    for db in (first, second):
        db.sealer = PlainSealer()
    yield first, second
    first.close()
    second.close()


def _device(db: Database, name: str, code: str | None = None) -> str:
    dev = Device(name, "u", "light", {"kty": "EC"}, "active", False, b"v", b"s", 0, 0.0)
    key = NewKey(name, "auth", "auth", "generated", b"spki", None)
    if code is not None:
        assert db.register_device(dev, False, [key], code=code)
    else:
        assert db.register_device(dev, False, [key], ticket=f"t-{name}")
    return name


def test_migrations_reach_the_newest_version_once(two: tuple[Database, Database]) -> None:
    first, second = two
    newest = MIGRATIONS[-1][0]
    assert first.version == second.version == newest
    with first.backend.read() as db:
        assert [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")] == list(
            range(1, newest + 1)
        )


def test_a_code_is_used_once_across_two_pools(two: tuple[Database, Database]) -> None:
    first, second = two
    first.add_activation("the-code", "u", "light", 60)
    devices = [Device(f"d{n}", "u", "light", {}, "active", False, None, None, 0, 0.0) for n in range(16)]

    def use(n: int) -> bool:
        db = (first, second)[n % 2]
        return db.register_device(devices[n], False, [NewKey(f"d{n}", "auth", "auth", "g", b"k", None)], "the-code")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(use, range(16)))
    assert results.count(True) == 1
    assert len(first.devices()) == 1 and len(first.active_keys(first.devices()[0]["id"])) == 1


def test_nonces_and_tickets_are_spent_once_across_two_pools(two: tuple[Database, Database]) -> None:
    first, second = two
    expires = time.time() + 60
    with ThreadPoolExecutor(16) as pool:
        spent = list(pool.map(lambda n: (first, second)[n % 2].spend_nonce("n1", expires), range(16)))
    assert spent.count(True) == 1
    device = _device(first, "dev-t")
    assert first.add_ticket("tk", device, "https://b.example", "{}", 0.0, 3)
    with ThreadPoolExecutor(8) as pool:
        closed = list(pool.map(lambda n: (first, second)[n % 2].complete_ticket("tk", device), range(8)))
    assert closed.count(True) == 1 and second.device(device).state == "migrated"  # type: ignore[union-attr]


def test_ticket_and_pending_caps_hold_across_two_pools(two: tuple[Database, Database]) -> None:
    first, second = two
    device = _device(first, "dev-c")  # it arrived with a migration ticket: that row is not an open ticket

    def ticket(n: int) -> bool:
        return (first, second)[n % 2].add_ticket(f"tk{n}", device, "https://b", "{}", 0.0, 3)

    with ThreadPoolExecutor(16) as pool:
        added = list(pool.map(ticket, range(16)))
    assert added.count(True) == 3
    now = time.time()

    def request(n: int) -> bool:
        row: dict[str, Any] = {
            "id": f"rq{n}", "rp": "admin", "kind": "auth", "alg": "ES256", "format": "jws", "input": "{}",
            "callback": None, "named_device": None, "created": now, "expires": now + 60,
        }  # fmt: skip
        return (first, second)[n % 2].add_request(row, [(device, "auth", "doc", "hash")], cap=(3, 10**6))

    with ThreadPoolExecutor(16) as pool:
        made = list(pool.map(request, range(16)))
    assert made.count(True) == 3 and second.pending_load(device, now) == (3, 9)


def test_pin_tries_race_to_exactly_the_maximum(two: tuple[Database, Database]) -> None:
    first, second = two
    device = _device(first, "dev-p")
    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(lambda n: (first, second)[n % 2].pin_try(device, 10, time.time())[0], range(40)))
    assert sorted(seen)[:10] == list(range(10)) and seen.count(10) == 30  # each count 0..9 seen once
    assert second.device(device).pin_failures == 10  # type: ignore[union-attr]


def test_requests_are_decided_once_and_renewals_do_not_pile_up(two: tuple[Database, Database]) -> None:
    first, second = two
    device = _device(first, "dev-r")
    now = time.time()
    row: dict[str, Any] = {
        "id": "rq", "rp": "admin", "kind": "auth", "alg": "ES256", "format": "jws", "input": "{}",
        "callback": None, "named_device": None, "created": now, "expires": now + 60,
    }  # fmt: skip
    first.add_request(row, [(device, "auth", "doc", "hash")])
    assert second.pending_documents(device, now) == [("rq", "doc")]

    def decide(n: int) -> bool:
        return (first, second)[n % 2].decide_request("rq", ("APPROVED", "REJECTED")[n % 2], now)

    with ThreadPoolExecutor(8) as pool:
        decided = list(pool.map(decide, range(8)))
    assert decided.count(True) == 1
    assert not first.decide_request("rq", "EXPIRED", now + 120)

    def renew(n: int) -> None:
        (first, second)[n % 2].renew_keys(device, [NewKey(device, "auth", "auth", "generated", b"k%d" % n, None)])

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(renew, range(6)))
    assert len(first.active_keys(device)) == 1


def test_a_file_from_before_schema_versions_is_upgraded_in_place(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "server.sqlite")
    old.executescript(
        """
        CREATE TABLE devices(id TEXT PRIMARY KEY, user TEXT NOT NULL, profile TEXT NOT NULL, jwk TEXT NOT NULL,
            created REAL NOT NULL, state TEXT NOT NULL DEFAULT 'active', renew INTEGER NOT NULL DEFAULT 0,
            attested INTEGER NOT NULL DEFAULT 0, pin_verifier BLOB, server_secret BLOB,
            pin_failures INTEGER NOT NULL DEFAULT 0, pin_blocked_until REAL NOT NULL DEFAULT 0);
        CREATE TABLE keys(device TEXT NOT NULL, key_id TEXT NOT NULL, usage TEXT NOT NULL, format TEXT NOT NULL,
            spki BLOB NOT NULL, cert BLOB, escrow BLOB, created REAL NOT NULL, active INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE tickets(id TEXT PRIMARY KEY, device TEXT NOT NULL, target TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE nonces(value TEXT PRIMARY KEY, expires REAL NOT NULL);
        INSERT INTO devices(id, user, profile, jwk, created) VALUES ('old', 'ann', 'default', '{}', 1000.0);
        INSERT INTO keys(device, key_id, usage, format, spki, created, active)
            VALUES ('old', 'a', 'auth', 'g', x'00', 5, 0);
        """
    )
    old.close()
    db = open_database(tmp_path, None)
    db.sealer = PlainSealer()
    try:
        assert db.version == MIGRATIONS[-1][0]
        dev = db.device("old")
        assert dev is not None and dev.user == "ann" and dev.confirmed == 1000.0  # confirmed as of its activation
        assert db.revoked() == []  # no serial: not listed, but retired as of its creation
        with db.backend.read() as tx:
            assert tx.execute("SELECT retired FROM keys").fetchall() == [(5.0,)]
            assert tx.execute("SELECT name FROM sqlite_master WHERE name = 'nonces'").fetchall() == []
    finally:
        db.close()
    again = open_database(tmp_path, None)  # opening again changes nothing
    try:
        assert again.version == MIGRATIONS[-1][0] and again.identity() == {}
    finally:
        again.close()


def test_not_after_is_filled_for_certificates_stored_before_the_column(
    url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    cert = certificate_builder(name, name, key.public_key(), 90).sign(key, hashes.SHA256())
    der = cert.public_bytes(serialization.Encoding.DER)
    earlier = tuple(m for m in MIGRATIONS if m[0] < db_schema.NOT_AFTER_VERSION)
    monkeypatch.setattr(db_schema, "MIGRATIONS", earlier)  # a database from before the column
    old = open_database(tmp_path, url)
    assert old.version == earlier[-1][0]
    old.backend.write(
        lambda tx: tx.executemany(
            "INSERT INTO keys(device, key_id, usage, format, spki, cert, created, serial)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("d", "auth", "auth", "generated", b"k", der, 1.0, "1"),
                ("d", "enc", "enc", "generated", b"k", None, 1.0, None),
            ],
        )
    )
    old.close()
    monkeypatch.undo()
    db = open_database(tmp_path, url)
    try:
        assert db.version == MIGRATIONS[-1][0]
        with db.backend.read() as tx:
            rows = tx.execute("SELECT key_id, not_after FROM keys ORDER BY key_id").fetchall()
        assert [tuple(r) for r in rows] == [("auth", cert.not_valid_after_utc.timestamp()), ("enc", None)]
        assert db.expiring("d", cert.not_valid_after_utc.timestamp()) and not db.expiring("d", time.time())
        assert db.revocation_generation() == 0
        db.end_device("d", "deleted")
        assert db.revocation_generation() == 1
    finally:
        db.close()


def test_an_unreachable_or_unknown_database_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable) as info:
        open_database(tmp_path, "mysql://x@localhost/db")
    assert "postgresql://" in str(info.value)
    with pytest.raises(DatabaseUnavailable) as info:
        open_database(tmp_path, "postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    message = str(info.value)
    assert "\n" not in message and "secret" not in message and "127.0.0.1" in message


def test_an_admin_open_migrates_nothing_and_refuses_another_version(url: str | None, tmp_path: Path) -> None:
    """open_database(upgrade=False), as admin commands open it: an empty database stays empty, one at another
    schema version is refused (one line) and left at it, one at this version opens."""
    with pytest.raises(db_schema.SchemaMismatch, match=r"^no vsc server has run on this database$"):
        open_database(tmp_path, url, upgrade=False)
    empty = open_backend(tmp_path, url)
    try:
        with empty.read() as tx:
            if url is None:
                tables = tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            else:
                tables = tx.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        assert tables == []
    finally:
        empty.close()
    open_database(tmp_path, url).close()  # a server's start makes the schema
    current = open_database(tmp_path, url, upgrade=False)
    assert current.version == db_schema.CURRENT
    current.backend.write_one("INSERT INTO schema_version(version, applied) VALUES (?, 0)", (db_schema.CURRENT + 1,))
    current.close()
    with pytest.raises(db_schema.SchemaMismatch) as info:
        open_database(tmp_path, url, upgrade=False)
    assert str(info.value).startswith(f"the database's schema is version {db_schema.CURRENT + 1}, newer")
    assert "\n" not in str(info.value)
    left = open_backend(tmp_path, url)
    try:
        assert db_schema.recorded(left) == db_schema.CURRENT + 1
    finally:
        left.close()
