"""`vsc pcsc serve` as a process: the management key set and printed once, back in the reader after pcscd
restarts, and stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pcsc_support import free_port_pair, private_pcscd, reader_has_card, start_serve, stop, wait_for
from piv_support import SO_PIN, make_piv_home

from tests.conftest import require_file, require_tool
from tests.pkcs11.p11_support import USER_PIN, vsc
from vsc_provider.piv import management_key as M
from vsc_provider.piv import objects as O
from vsc_provider.token.engine import Engine


def test_the_first_serve_sets_a_random_management_key_and_prints_it_once(tmp_path: Path) -> None:
    home = tmp_path / "vsc-home"
    out = vsc(home, "card", "create", "--label", "Fresh", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json")
    serial = json.loads(out.stdout)["serial"]
    port = free_port_pair()  # nothing listens there: serve waits for the reader
    args = [sys.executable, "-m", "vsc_provider.cli", "pcsc", "serve", "--card", "Fresh", "--port", str(port)]
    env = {"VSC_HOME": str(home), "PATH": "/usr/bin:/bin"}
    wrong = subprocess.run([*args, "--so-pin", "11111111"], capture_output=True, text=True, env=env, timeout=60)
    assert wrong.returncode == 1 and "SO PIN was refused" in wrong.stderr
    proc = subprocess.Popen([*args, "--so-pin", SO_PIN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    match = re.fullmatch(r"PIV management key \(aes192\), shown only now: ([0-9a-f]{48})\n", line)
    assert match, line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    engine = Engine(home / "store.sqlite", home / "device.key")
    engine.refresh()
    card = next(c for c in engine.cards.values() if c.serial == serial)
    stored = M.load(engine, card)
    assert stored is not None and stored.key.hex() == match.group(1) and stored.algorithm == 0x0A
    # the second time: no SO PIN needed, nothing printed
    again = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert again.stderr is not None
    assert "no virtual reader at 127.0.0.1" in again.stderr.readline().decode()  # up and waiting for vpcd
    assert stop(again) == 0
    assert again.stdout is not None and again.stdout.read() == b""


def _fresh_card(tmp_path: Path) -> tuple[Path, str, list[str], dict[str, str]]:
    """A new card (no management key yet), and `vsc pcsc serve` for it on a port where nothing listens."""
    home = tmp_path / "vsc-home"
    out = vsc(home, "card", "create", "--label", "Fresh", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json")
    port = str(free_port_pair())  # nothing listens there: serve waits for the reader
    args = [sys.executable, "-m", "vsc_provider.cli", "pcsc", "serve", "--card", "Fresh", "--port", port]
    return home, json.loads(out.stdout)["serial"], args, {"VSC_HOME": str(home), "PATH": "/usr/bin:/bin"}


def _stored_key(home: Path, serial: str) -> M.ManagementKey | None:
    engine = Engine(home / "store.sqlite", home / "device.key")
    engine.refresh()
    return M.load(engine, next(c for c in engine.cards.values() if c.serial == serial))


def _serve_until_up(args: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Serve until it waits for the reader, stop it; its stdout and stderr."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stderr.readline().decode()
    assert "no virtual reader at 127.0.0.1" in first, first + proc.stderr.read().decode()
    assert stop(proc) == 0
    return proc.stdout.read().decode(), first + proc.stderr.read().decode()


def test_serve_sets_the_management_key_it_is_given_and_prints_none(tmp_path: Path) -> None:
    home, serial, args, env = _fresh_card(tmp_path)
    given = os.urandom(24).hex()
    out, err = _serve_until_up([*args, "--management-key", given, "--so-pin", SO_PIN], env)
    assert out == "" and given not in err
    stored = _stored_key(home, serial)
    assert stored is not None and stored.key.hex() == given and stored.algorithm == O.ALG_AES_192
    # over a key already set: the new one replaces it, with its algorithm
    other = os.urandom(16).hex()
    out, err = _serve_until_up(
        [*args, "--management-key", other, "--management-key-algorithm", "aes128", "--so-pin", SO_PIN], env
    )
    assert out == "" and other not in err
    stored = _stored_key(home, serial)
    assert stored is not None and stored.key.hex() == other and stored.algorithm == O.ALG_AES_128


def test_a_new_3des_management_key_is_printed_once(tmp_path: Path) -> None:
    home, serial, args, env = _fresh_card(tmp_path)
    proc = subprocess.Popen(
        [*args, "--management-key-algorithm", "3des", "--so-pin", SO_PIN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    match = re.fullmatch(r"PIV management key \(3des\), shown only now: ([0-9a-f]{48})\n", line)
    assert match, line
    assert stop(proc) == 0 and proc.stdout.read() == b""
    stored = _stored_key(home, serial)
    assert stored is not None and stored.key.hex() == match.group(1) and stored.algorithm == O.ALG_3DES
    out, _ = _serve_until_up([*args, "--management-key-algorithm", "3des"], env)
    assert out == ""  # set already: not printed again


@pytest.mark.parametrize(
    ("key", "code", "message"),
    [
        ("zz", 2, "Error: --management-key is hex"),
        ("00" * 16, 1, "Error: this management key has 24 bytes"),  # AES-192 by default
    ],
)
def test_a_bad_management_key_is_one_line(tmp_path: Path, key: str, code: int, message: str) -> None:
    home, serial, args, env = _fresh_card(tmp_path)
    result = subprocess.run(
        [*args, "--management-key", key, "--so-pin", SO_PIN], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == code and result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [message], result.stderr
    assert "Traceback" not in result.stderr
    assert _stored_key(home, serial) is None


def test_serve_comes_back_after_pcscd_restarts_and_stops_on_sigterm(tmp_path: Path) -> None:
    require_tool("pcscd", "pcscd")
    require_file("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "vsmartcard-vpcd")
    require_tool("opensc-tool", "opensc")
    piv = make_piv_home(tmp_path / "vsc-home")
    port = free_port_pair()
    serve = None
    try:
        with private_pcscd(tmp_path / "first", port):
            serve = start_serve(piv.home, piv.serial, port, tmp_path / "serve.log")
            wait_for(reader_has_card, 30, "the card in the first pcscd")
        with private_pcscd(tmp_path / "second", port):
            wait_for(reader_has_card, 30, "the card in the restarted pcscd")
            assert (
                "Personal Identity Verification Card"
                in subprocess.run(
                    ["opensc-tool", "--reader", "Virtual PCD 00 00", "--name"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
            )
            assert stop(serve) == 0
            serve = None
            wait_for(lambda: not reader_has_card(), 15, "the card to leave the reader")
    finally:
        if serve is not None:
            serve.kill()
            serve.wait()
    log = (tmp_path / "serve.log").read_text()
    assert "the virtual reader went" in log and log.count("is in the virtual reader") == 2


def test_serve_refuses_a_slot_map_outside_the_four_key_slots_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "vsc-home"
    vsc(home, "card", "create", "--label", "Fresh", "--pin", USER_PIN, "--so-pin", SO_PIN)
    result = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", "pcsc", "serve", "--card", "Fresh", "--slot", "9B=01"],
        capture_output=True, text=True, env={"VSC_HOME": str(home), "PATH": "/usr/bin:/bin"}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: '9B=01': the slots are 9A, 9C, 9D and 9E, each with a hex CKA_ID"], result.stderr
    assert "Traceback" not in result.stderr
