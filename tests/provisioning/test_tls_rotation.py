"""The server's TLS key rotates without cutting cards off: `vsc server rotate-tls` announces the next key
(cards learn it at their next contact), `--switch` presents it after a restart; a card that learned it and a
card that was offline all along both still reach the server (the latter through the server's CA), an
instance not restarted yet (the previous key) is reached during the grace period and refused after it by a
card that heard of the switch, and a server with another CA is still refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import run_vsc
from tests.provisioning.test_activation import activate, cards
from tests.server.idserver import start_server
from vsc_provider import api


def _binding(serial: str) -> dict[str, object]:
    return dict(api.find_card(serial).record.server or {})


def _copy(data: Path, to: Path) -> Path:
    """Another instance's data directory (its own SQLite file, or the same PostgreSQL database)."""
    shutil.copytree(data, to, ignore=shutil.ignore_patterns("server.json", "*.log"))
    return to


def _status(serial: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_vsc("identity", "status", serial, check=check)


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
        assert json.loads(_status(online).stdout)["state"] == "active"
        assert _binding(online)["tls_pins"] == [first_pin, next_pin]  # learned at its contact
        assert "tls_pins" not in _binding(offline)  # never contacted the server since
    finally:
        server.stop()
    not_restarted = _copy(data, tmp_path / "not-restarted")  # an instance still on the previous key
    switched = run_vsc("server", "rotate-tls", "--data", str(data), "--switch").stdout
    assert next_pin in switched
    server = start_server(data, port=port, database=database)
    try:
        assert server.pin == next_pin  # the server presents the new key now
        for serial in (online, offline):  # the offline card through the CA anchor
            assert json.loads(_status(serial).stdout)["state"] == "active"
        assert _binding(offline)["tls_pins"] == [next_pin, first_pin]  # the previous one for its grace period
        grace_end = _binding(offline)["tls_retire"][first_pin]  # type: ignore[index]
        assert abs(grace_end - (time.time() + 30 * 86400)) < 600
    finally:
        server.stop()
    # within the grace period an instance not restarted yet (the previous key) is still reached
    old = start_server(not_restarted, port=port, database=database)
    try:
        assert old.pin == first_pin
        for serial in (online, offline):
            assert json.loads(_status(serial).stdout)["state"] == "active"
    finally:
        old.stop()
    # another server on that address (another CA, another key; SQLite, whatever the back end) is refused
    stranger = start_server(tmp_path / "stranger", port=port)
    try:
        for serial in (online, offline):
            refused = _status(serial, check=False)
            assert refused.returncode != 0 and "pin" in refused.stderr.lower(), refused.stderr
    finally:
        stranger.stop()
    assert {c["serial"] for c in cards()} == {online, offline}


def test_after_the_grace_period_a_card_that_heard_of_the_switch_refuses_the_previous_key(
    tmp_path: Path, vsc_home: Path, database: str | None
) -> None:
    data = tmp_path / "data"
    server = start_server(data, database=database)
    port, first_pin = server.port, server.pin
    try:
        heard = activate(server.link("hana", "light"))["serial"]
        unaware = activate(server.link("ugo", "light"))["serial"]
    finally:
        server.stop()
    not_restarted = _copy(data, tmp_path / "not-restarted")
    run_vsc("server", "rotate-tls", "--data", str(data))
    run_vsc("server", "rotate-tls", "--data", str(data), "--switch", "--grace-days", "0")  # over at once
    server = start_server(data, port=port, database=database)
    try:
        assert not (data / "tls-previous.key").exists()  # its grace period over, the key is gone at the start
        assert json.loads(_status(heard).stdout)["state"] == "active"
        assert _binding(heard)["tls_pins"] == [server.pin]
        assert first_pin in _binding(heard)["tls_retire"]  # type: ignore[operator]
    finally:
        server.stop()
    old = start_server(not_restarted, port=port, database=database)
    try:
        refused = _status(heard, check=False)  # issued by the same CA, pinned at activation: refused all the same
        assert refused.returncode != 0 and "retired" in refused.stderr, refused.stderr
        # a card offline across the whole rotation knows nothing of it: the key it pinned still works for it
        assert json.loads(_status(unaware).stdout)["state"] == "active"
    finally:
        old.stop()


def test_switch_needs_an_announcement(tmp_path: Path, database: str | None) -> None:
    data = tmp_path / "data"
    server = start_server(data, database=database)
    server.stop()
    refused = run_vsc("server", "rotate-tls", "--data", str(data), "--switch", check=False)
    assert refused.returncode != 0 and "rotate-tls" in refused.stderr and "Traceback" not in refused.stderr
    missing = run_vsc("server", "rotate-tls", "--data", str(tmp_path / "none"), check=False)
    assert missing.returncode != 0 and "no server has run" in missing.stderr
