"""The renewal a card's server asked for, done by the next `vsc` command with the PIN (provisioning/client.py
renew_if_requested): a failed attempt leaves the card as it was and the command's own result stands, and two
commands at once renew once. Against the real server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import activate, cards, certs_of
from tests.server.idserver import start_server


def objects_of(serial: str) -> list[tuple[str, str]]:
    card = next(c for c in cards() if c["serial"] == serial)
    return sorted((o["kind"], o["id"]) for o in card["objects"])


def flagged(serial: str) -> bool:
    return bool(next(c for c in cards() if c["serial"] == serial)["renewal_requested"])


def test_a_renewal_with_its_server_down_leaves_no_keys_behind(tmp_path: Path, vsc_home: Path) -> None:
    server = start_server(tmp_path / "srv")
    try:
        serial = activate(server.link("lily", "light"))["serial"]
        server.admin("POST", f"/admin/devices/{server.devices()[0]['id']}/renew")
        assert json.loads(run_vsc("identity", "status", serial).stdout)["renew"] is True
        alone = run_vsc("card", "show", serial)  # without the PIN: no renewal, the reference output
    finally:
        server.stop()
    before = objects_of(serial)
    for _ in range(3):
        shown = run_vsc("card", "show", serial, "--pin", USER_PIN)
        assert shown.stdout.startswith(alone.stdout.rstrip("\n").split("\n")[0])
        lines = shown.stderr.strip().splitlines()
        assert len(lines) == 1 and "renewal" in lines[0] and "Traceback" not in shown.stderr, shown.stderr
        assert USER_PIN not in shown.stderr
        assert objects_of(serial) == before
    assert flagged(serial)  # left for the next time


def test_two_commands_at_once_renew_the_card_once(tmp_path: Path, vsc_home: Path) -> None:
    """Both see the flag; one renews and the other, waiting its turn, finds it gone: no failed attempt, no
    losing key set."""
    server = start_server(tmp_path / "srv")
    try:
        serial = activate(server.link("lily", "light"))["serial"]
        kinds = sorted(kind for kind, _ in objects_of(serial))
        command = [sys.executable, "-m", "vsc_provider.cli", "card", "show", serial, "--pin", USER_PIN]
        for _ in range(2):
            server.admin("POST", f"/admin/devices/{server.devices()[0]['id']}/renew")
            assert json.loads(run_vsc("identity", "status", serial).stdout)["renew"] is True
            certs_before = {c.serial_number for c in certs_of(serial).values()}
            runs = [
                subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
                )
                for _ in range(2)
            ]
            outputs = [run.communicate(timeout=120) for run in runs]
            assert [run.returncode for run in runs] == [0, 0], outputs
            errors = [err for _, err in outputs]
            assert sum("renewed card" in err for err in errors) == 1 and "failed" not in "".join(errors), errors
            assert sorted(kind for kind, _ in objects_of(serial)) == kinds  # no losing key set left
            certs_after = {c.serial_number for c in certs_of(serial).values()}
            assert len(certs_after) == len(certs_before) and not certs_after & certs_before
            assert not flagged(serial)
        assert json.loads(run_vsc("identity", "status", serial).stdout)["renew"] is False
    finally:
        server.stop()
