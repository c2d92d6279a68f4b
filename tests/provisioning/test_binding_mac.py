"""A card's server binding carries a MAC under the machine's device key: a binding edited in the store
(another server URL, or the MAC stripped) is refused by every server call and by the online PIN check,
and putting the original back restores the card. Bindings of stores from before MACs (told by the store's
schema version, not by a row anyone can delete) get their MAC once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import activate, inproc  # noqa: F401
from tests.server.idserver import IdServer
from vsc_provider.token import binding as binding_mac
from vsc_provider.token.store import MACED_SCHEMA


def _binding(home: Path, serial: str) -> dict[str, Any]:
    with sqlite3.connect(home / "store.sqlite") as db:
        return dict(json.loads(db.execute("SELECT server FROM cards WHERE serial = ?", (serial,)).fetchone()[0]))


def _store(home: Path, serial: str, binding: dict[str, Any]) -> None:
    with sqlite3.connect(home / "store.sqlite") as db:
        db.execute("UPDATE cards SET server = ? WHERE serial = ?", (json.dumps(binding), serial))


def test_an_edited_binding_is_refused_and_the_original_works_again(id_server: IdServer, vsc_home: Path) -> None:
    serial = activate(id_server.link("bea", "online"))["serial"]
    original = _binding(vsc_home, serial)
    assert binding_mac.MAC_FIELD in original
    assert run_vsc("identity", "status", serial).returncode == 0
    for edited in (
        {**original, "url": "https://127.0.0.2:9"},  # pointed at another server
        {k: v for k, v in original.items() if k != binding_mac.MAC_FIELD},  # MAC stripped
    ):
        _store(vsc_home, serial, edited)
        status = run_vsc("identity", "status", serial, check=False)
        assert status.returncode != 0 and "changed outside vsc" in status.stderr, status.stderr
        assert "Traceback" not in status.stderr
        login = run_vsc("card", "show", serial, "--pin", USER_PIN, check=False)
        assert login.returncode != 0 and "changed outside vsc" in login.stderr, login.stderr
        renew = run_vsc("card", "renew", serial, "--pin", USER_PIN, check=False)
        assert renew.returncode != 0 and "changed outside vsc" in renew.stderr
        assert _binding(vsc_home, serial) == edited  # refusing changed nothing
    _store(vsc_home, serial, original)
    assert run_vsc("identity", "status", serial).returncode == 0
    assert run_vsc("card", "show", serial, "--pin", USER_PIN).returncode == 0


def _meta(home: Path, key: str) -> str | None:
    with sqlite3.connect(home / "store.sqlite") as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(home: Path, key: str, value: str | None) -> None:
    with sqlite3.connect(home / "store.sqlite") as db:
        db.execute("DELETE FROM meta WHERE key = ?", (key,))
        if value is not None:
            db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (key, value))


def _refused(serial: str) -> None:
    status = run_vsc("identity", "status", serial, check=False)
    assert status.returncode != 0 and "changed outside vsc" in status.stderr, status.stderr


def test_a_binding_stripped_of_its_mac_is_not_maced_by_the_next_start(id_server: IdServer, vsc_home: Path) -> None:
    """The way round the MAC a review found: delete the "bindings already MACed" row, write a binding with
    another URL and no MAC; the next start must not MAC it."""
    serial = activate(id_server.link("bel", "light"))["serial"]
    assert _meta(vsc_home, "schema_version") == str(MACED_SCHEMA)
    evil = {k: v for k, v in _binding(vsc_home, serial).items() if k != binding_mac.MAC_FIELD}
    evil["url"] = "https://127.0.0.2:9"
    _store(vsc_home, serial, evil)
    for row in (binding_mac.META_KEY, "schema_version"):  # a missing schema row counts as current
        _set_meta(vsc_home, row, None)
        _refused(serial)
        _refused(serial)
        assert _binding(vsc_home, serial) == evil  # nothing MACed it
    assert _meta(vsc_home, "schema_version") == str(MACED_SCHEMA)
    _set_meta(vsc_home, "schema_version", "garbage")  # unreadable: current too
    _refused(serial)
    assert _binding(vsc_home, serial) == evil


def test_a_store_of_the_first_maced_versions_is_upgraded_without_maccing(id_server: IdServer, vsc_home: Path) -> None:
    """Schema 1 with the old plain "binding_mac" row: its bindings were MACed by then, so one without a MAC is
    an edited one, refused; the upgrade only raises the schema version."""
    serial = activate(id_server.link("bob", "light"))["serial"]
    evil = {k: v for k, v in _binding(vsc_home, serial).items() if k != binding_mac.MAC_FIELD}
    _store(vsc_home, serial, evil)
    _set_meta(vsc_home, "schema_version", "1")
    _set_meta(vsc_home, binding_mac.META_KEY, "1")
    _refused(serial)
    assert _binding(vsc_home, serial) == evil
    assert _meta(vsc_home, "schema_version") == str(MACED_SCHEMA) and _meta(vsc_home, binding_mac.META_KEY) is None


def test_bindings_of_earlier_versions_get_their_mac_once(id_server: IdServer, vsc_home: Path) -> None:
    serial = activate(id_server.link("ben", "light"))["serial"]
    legacy = {k: v for k, v in _binding(vsc_home, serial).items() if k != binding_mac.MAC_FIELD}
    _store(vsc_home, serial, legacy)
    _set_meta(vsc_home, "schema_version", "1")  # a store from before binding MACs, as those versions left it
    _set_meta(vsc_home, binding_mac.META_KEY, None)
    assert run_vsc("identity", "status", serial).returncode == 0  # opening the store sealed it
    sealed = _binding(vsc_home, serial)
    assert binding_mac.MAC_FIELD in sealed and all(sealed[k] == v for k, v in legacy.items() if k != "tls_pins")
    assert _meta(vsc_home, "schema_version") == str(MACED_SCHEMA)
    assert run_vsc("identity", "status", serial).returncode == 0
    _store(vsc_home, serial, legacy)  # once only: stripped again later, it is refused
    _refused(serial)
