"""The server's TLS key rotates without cutting cards off: `vsc server rotate-tls` announces the next key
(cards learn it at their next contact), `--switch` presents it after a restart; a card that learned it and a
card that was offline all along both still reach the server (the latter through the server's CA), and a
server with another CA is still refused."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_vsc
from tests.provisioning.test_activation import activate, cards
from tests.server.idserver import start_server
from vsc_provider import api


def _binding(serial: str) -> dict[str, object]:
    return dict(api.find_card(serial).record.server or {})


def test_a_rotation_keeps_every_card_connected(tmp_path: Path, vsc_home: Path, database: str | None) -> None:
    data = tmp_path / "data"
    server = start_server(data, database=database)
    port, first_pin = server.port, server.pin
    try:
        online = activate(server.link("nina", "light"))["serial"]
        offline = activate(server.link("omar", "light"))["serial"]
        announced = run_vsc("server", "rotate-tls", "--data", str(data)).stdout
        next_pin = announced.split("announced the next TLS key ")[1].split(";")[0]
        assert next_pin != first_pin
        assert json.loads(run_vsc("identity", "status", online).stdout)["state"] == "active"
        assert _binding(online)["tls_pins"] == [first_pin, next_pin]  # learned at its contact
        assert "tls_pins" not in _binding(offline)  # never contacted the server since
    finally:
        server.stop()
    switched = run_vsc("server", "rotate-tls", "--data", str(data), "--switch").stdout
    assert next_pin in switched
    server = start_server(data, port=port, database=database)
    try:
        assert server.pin == next_pin  # the server presents the new key now
        for serial in (online, offline):
            assert json.loads(run_vsc("identity", "status", serial).stdout)["state"] == "active"
        assert _binding(offline)["tls_pins"] == [next_pin]
    finally:
        server.stop()
    # another server on that address (another CA, another key; SQLite, whatever the back end) is refused
    stranger = start_server(tmp_path / "stranger", port=port)
    try:
        for serial in (online, offline):
            refused = run_vsc("identity", "status", serial, check=False)
            assert refused.returncode != 0 and "pin" in refused.stderr.lower(), refused.stderr
    finally:
        stranger.stop()
    assert {c["serial"] for c in cards()} == {online, offline}


def test_switch_needs_an_announcement(tmp_path: Path, database: str | None) -> None:
    data = tmp_path / "data"
    server = start_server(data, database=database)
    server.stop()
    refused = run_vsc("server", "rotate-tls", "--data", str(data), "--switch", check=False)
    assert refused.returncode != 0 and "rotate-tls" in refused.stderr and "Traceback" not in refused.stderr
    missing = run_vsc("server", "rotate-tls", "--data", str(tmp_path / "none"), check=False)
    assert missing.returncode != 0 and "no server has run" in missing.stderr
