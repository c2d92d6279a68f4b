"""A card's server binding carries a MAC under the machine's device key: a binding edited in the store
(another server URL, or the MAC stripped) is refused by every server call and by the online PIN check,
and putting the original back restores the card. Bindings of earlier versions get their MAC once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import activate, inproc  # noqa: F401
from tests.server.idserver import IdServer
from vsc_provider.token import binding as binding_mac


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


def test_bindings_of_earlier_versions_get_their_mac_once(id_server: IdServer, vsc_home: Path) -> None:
    serial = activate(id_server.link("ben", "light"))["serial"]
    legacy = {k: v for k, v in _binding(vsc_home, serial).items() if k != binding_mac.MAC_FIELD}
    _store(vsc_home, serial, legacy)
    with sqlite3.connect(vsc_home / "store.sqlite") as db:
        db.execute("DELETE FROM meta WHERE key = ?", (binding_mac.META_KEY,))
    assert run_vsc("identity", "status", serial).returncode == 0  # opening the store sealed it
    assert _binding(vsc_home, serial) == {**legacy, binding_mac.MAC_FIELD: _binding(vsc_home, serial)["mac"]}
    assert run_vsc("identity", "status", serial).returncode == 0
