"""Server-checked PINs (an extra key layer held by the server) and device attestation."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import activate, inproc  # noqa: F401 - fixture
from tests.server.idserver import IdServer, start_server
from vsc_provider import api
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError


def login(serial: str, pin: str) -> None:
    card = api.find_card(serial)
    with api.session(card, pin=pin):
        pass


def failures(server: IdServer, user: str) -> int:
    return int(next(d for d in server.devices() if d["user"] == user)["pin_failures"])


def test_pin_is_checked_by_the_server_and_a_restored_store_does_not_reset_it(
    id_server: IdServer,
    vsc_home: Path,
    inproc: None,  # noqa: F811
) -> None:
    info = activate(id_server.link("olga", "online"))
    serial = info["serial"]
    login(serial, USER_PIN)
    backup = vsc_home.parent / "store-backup.sqlite"
    shutil.copy(vsc_home / "store.sqlite", backup)
    with pytest.raises(CKRError) as wrong:
        login(serial, "000000")
    assert wrong.value.rv == C.CKR_PIN_INCORRECT
    assert failures(id_server, "olga") == 1
    # the server secret is a key layer: a correct PIN alone, without the server's answer, opens nothing
    binding = api.find_card(serial).record.server or {}
    assert binding["pin_check"] == "server"
    shutil.copy(backup, vsc_home / "store.sqlite")
    for name in ("store.sqlite-wal", "store.sqlite-shm"):
        (vsc_home / name).unlink(missing_ok=True)
    with pytest.raises(CKRError):
        login(serial, "000001")
    assert failures(id_server, "olga") == 2  # counted on the server, not in the restored file
    login(serial, USER_PIN)
    assert failures(id_server, "olga") == 0


def test_ten_wrong_pins_block_until_the_admin_unblocks(id_server: IdServer, inproc: None) -> None:  # noqa: F811
    serial = activate(id_server.link("pete", "online"))["serial"]
    codes = []
    deadline = time.monotonic() + 120
    while len(codes) < 10 and time.monotonic() < deadline:
        try:
            login(serial, "000000")
        except CKRError as exc:
            if exc.rv == C.CKR_FUNCTION_FAILED:  # still inside the server's growing wait
                time.sleep(0.1)
                continue
            codes.append(exc.rv)
    assert codes[-1] == C.CKR_PIN_LOCKED and codes[:-1] == [C.CKR_PIN_INCORRECT] * 9
    with pytest.raises(CKRError) as blocked:
        login(serial, USER_PIN)
    assert blocked.value.rv == C.CKR_PIN_LOCKED
    device = next(d for d in id_server.devices() if d["user"] == "pete")
    id_server.admin("POST", f"/admin/devices/{device['id']}/unblock")
    login(serial, USER_PIN)


def test_unreachable_server_at_login_is_a_device_error(tmp_path: Path, inproc: None) -> None:  # noqa: F811
    server = start_server(tmp_path / "gone")
    serial = activate(server.link("quinn", "online"))["serial"]
    server.stop()
    started = time.monotonic()
    with pytest.raises(CKRError) as down:
        login(serial, USER_PIN)
    assert down.value.rv == C.CKR_DEVICE_ERROR
    assert time.monotonic() - started < 20


def test_server_accepts_only_configured_attestation_keys(tmp_path: Path, vsc_home: Path, database: str | None) -> None:
    vendor = ec.generate_private_key(ec.SECP256R1())
    stranger = ec.generate_private_key(ec.SECP256R1())
    data = tmp_path / "attesting"
    (data / "attestation").mkdir(parents=True)
    (data / "attestation" / "vendor.pem").write_bytes(
        vendor.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    server = start_server(data, database=database)
    try:

        def pem(key: ec.EllipticCurvePrivateKey, name: str) -> str:
            path = tmp_path / name
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            return str(path)

        none = run_vsc("activate", server.link("rita"), "--pin", USER_PIN, check=False)
        assert none.returncode != 0 and "attestation_required" in none.stderr
        bad = run_vsc(
            "activate",
            server.link("rita"),
            "--pin",
            USER_PIN,
            check=False,
            env={"VSC_ATTESTATION_KEY": pem(stranger, "s.pem")},
        )
        assert bad.returncode != 0 and "bad_attestation" in bad.stderr
        assert json.loads(run_vsc("card", "list", "--json").stdout) == []
        activate(server.link("rita"), env={"VSC_ATTESTATION_KEY": pem(vendor, "v.pem")})
        assert len(server.devices()) == 1
    finally:
        server.stop()


def test_the_admins_unblock_reaches_an_offline_cards_own_counter(id_server: IdServer, inproc: None) -> None:  # noqa: F811
    # an offline card: its PIN is checked on the device only, and ten wrong ones block it there
    serial = activate(id_server.link("olaf", "light"), env={"VSC_PIN_DELAY_BASE": "0.001"})["serial"]
    codes = []
    deadline = time.monotonic() + 60
    while (not codes or codes[-1] != C.CKR_PIN_LOCKED) and time.monotonic() < deadline:
        try:
            login(serial, "000000")
        except CKRError as exc:
            if exc.rv == C.CKR_FUNCTION_FAILED:  # inside a (short) growing wait
                time.sleep(0.01)
                continue
            codes.append(exc.rv)
    assert codes[-1] == C.CKR_PIN_LOCKED and len(codes) == 10
    with pytest.raises(CKRError) as blocked:
        login(serial, USER_PIN)
    assert blocked.value.rv == C.CKR_PIN_LOCKED
    # the device's next contact after the administrator's unblock clears the card's counter
    assert "unblocked" not in json.loads(run_vsc("identity", "status", serial).stdout)
    device = next(d for d in id_server.devices() if d["user"] == "olaf")
    id_server.admin("POST", f"/admin/devices/{device['id']}/unblock")
    assert json.loads(run_vsc("identity", "status", serial).stdout)["unblocked"] is True
    login(serial, USER_PIN)
    assert "unblocked" not in json.loads(run_vsc("identity", "status", serial).stdout)  # once
