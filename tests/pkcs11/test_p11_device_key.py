"""Device-key back ends (issue 14): a card made with each back end logs in and signs through the module, a
copied store does not open on another TPM (a second swtpm) or without its keyring key, and `vsc card show
--json` says which back end a card has."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from p11_support import SO_PIN, USER_PIN, public_key_of, store_loaded, vsc
from pkcs11 import KeyType, Mechanism, ObjectClass

from tests.conftest import require_tool
from tests.swtpm_support import swtpm


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with swtpm(tmp_path_factory.mktemp("swtpm-a")) as tcti:
        yield tcti


@pytest.fixture(scope="module")
def other_tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with swtpm(tmp_path_factory.mktemp("swtpm-b")) as tcti:
        yield tcti


def _create(home: Path, backend: str, label: str) -> dict[str, object]:
    out = vsc(
        home, "card", "create", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN,
        "--device-key", backend, "--json",
    )  # fmt: skip
    vsc(home, "key", "generate", "--card", label, "--type", "p256", "--label", "k", "--pin", USER_PIN)
    return dict(json.loads(out.stdout))


def _sign(lib: pkcs11.lib, serial: str) -> None:
    with lib.get_token(token_serial=serial.encode()).open(user_pin=USER_PIN) as s:
        key = s.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label="k")
        public = s.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, label="k")
        signature = key.sign(b"device-bound", mechanism=Mechanism.ECDSA_SHA256)
        r, s_ = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        public_key_of(public).verify(encode_dss_signature(r, s_), b"device-bound", ec.ECDSA(hashes.SHA256()))


def _login_refused(lib: pkcs11.lib, serial: str) -> None:
    with pytest.raises(pkcs11.exceptions.DeviceError):
        lib.get_token(token_serial=serial.encode()).open(user_pin=USER_PIN)


def _copy(home: Path, to: Path) -> Path:
    """The user's data directory as a backup or another machine would get it: store and device-key file."""
    shutil.copytree(home, to, ignore=shutil.ignore_patterns("*-signal"))
    return to


@pytest.mark.parametrize("backend", ["tpm", "keyring", "file"])
def test_each_backend_logs_in_signs_and_is_reported(
    backend: str, p11lib: pkcs11.lib, tpm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "keyring":
        require_tool("keyctl", "keyutils")
    monkeypatch.setenv("VSC_TPM_TCTI", tpm)
    home = tmp_path / "home"
    info = _create(home, backend, f"{backend} card")
    assert info["device_key"] == backend
    shown = json.loads(vsc(home, "card", "show", f"{backend} card", "--json").stdout)
    assert shown["device_key"] == backend
    try:
        with store_loaded(p11lib, home):
            _sign(p11lib, str(info["serial"]))
    finally:
        vsc(home, "card", "delete", f"{backend} card", "--yes")


def test_tpm_card_copied_to_another_tpm_does_not_open(
    p11lib: pkcs11.lib, tpm: str, other_tpm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSC_TPM_TCTI", tpm)
    home = tmp_path / "home"
    serial = str(_create(home, "tpm", "sealed")["serial"])
    copy = _copy(home, tmp_path / "copy")
    monkeypatch.setenv("VSC_TPM_TCTI", other_tpm)
    with store_loaded(p11lib, copy):
        _login_refused(p11lib, serial)
    failed = vsc(copy, "key", "list", "--card", "sealed", "--pin", USER_PIN, check=False)
    assert failed.returncode != 0
    assert "TPM" in failed.stderr and "Traceback" not in failed.stderr
    # The refusal is the TPM's, not the copy's: the same copy opens on the TPM that sealed it.
    monkeypatch.setenv("VSC_TPM_TCTI", tpm)
    with store_loaded(p11lib, copy):
        _sign(p11lib, serial)


def _keyctl(script: str) -> subprocess.CompletedProcess[str]:
    """Debian's keyctl on this user's persistent keyring ($ring), in a session keyring of its own (whoever
    links the persistent keyring into their session possesses it; a plain shell here may have no session)."""
    return subprocess.run(
        ["keyctl", "session", "-", "sh", "-c", f"ring=$(keyctl get_persistent @s) && {script}"],
        capture_output=True,
        text=True,
    )


def _keyring_key(serial: str) -> str | None:
    """The card's key id in this user's persistent keyring, or None."""
    found = _keyctl(f"keyctl search $ring user vsc-provider:card:{serial}")
    return found.stdout.strip() if found.returncode == 0 else None


def test_keyring_card_does_not_open_without_its_key(p11lib: pkcs11.lib, tmp_path: Path) -> None:
    require_tool("keyctl", "keyutils")
    home = tmp_path / "home"
    serial = str(_create(home, "keyring", "ringed")["serial"])
    key_id = _keyring_key(serial)
    assert key_id is not None
    copy = _copy(home, tmp_path / "copy")
    with store_loaded(p11lib, copy):
        _sign(p11lib, serial)  # same user, same kernel: the copy opens
    # Another machine (or this one after a reboot): the kernel keyring has no such key.
    assert _keyctl(f"keyctl invalidate {key_id}").returncode == 0
    assert _keyring_key(serial) is None
    with store_loaded(p11lib, copy):
        _login_refused(p11lib, serial)
    failed = vsc(home, "key", "list", "--card", "ringed", "--pin", USER_PIN, check=False)
    assert failed.returncode != 0
    assert "keyring" in failed.stderr and "Traceback" not in failed.stderr


def test_deleting_a_keyring_card_removes_its_key(tmp_path: Path) -> None:
    require_tool("keyctl", "keyutils")
    home = tmp_path / "home"
    serial = str(_create(home, "keyring", "short-lived")["serial"])
    assert _keyring_key(serial) is not None
    vsc(home, "card", "delete", "short-lived", "--yes")
    assert _keyring_key(serial) is None


def test_tpm_asked_for_but_unreachable_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSC_TPM_TCTI", "swtpm:host=127.0.0.1,port=1")
    home = tmp_path / "home"
    failed = vsc(
        home, "card", "create", "--label", "x", "--pin", USER_PIN, "--so-pin", SO_PIN, "--device-key", "tpm",
        check=False,
    )  # fmt: skip
    assert failed.returncode != 0
    assert "TPM" in failed.stderr and "Traceback" not in failed.stderr
    assert json.loads(vsc(home, "card", "list", "--json").stdout) == []


def test_default_is_the_tpm_when_there_is_one(tmp_path: Path, tpm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSC_TPM_TCTI", tpm)
    home = tmp_path / "home"
    out = vsc(home, "card", "create", "--label", "auto", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json")
    assert json.loads(out.stdout)["device_key"] == "tpm"
    monkeypatch.delenv("VSC_TPM_TCTI")
    if not os.path.exists("/dev/tpmrm0"):
        out = vsc(home, "card", "create", "--label", "plain", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json")
        assert json.loads(out.stdout)["device_key"] == "file"
        assert "warning" in out.stderr
