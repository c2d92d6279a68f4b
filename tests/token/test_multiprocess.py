"""Several processes on one store through the built module: changes seen live, one shared PIN counter,
and a writer killed with SIGKILL never breaking the store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.conftest import SO_PIN, USER_PIN, run_vsc
from vsc_provider.ck import constants as C
from vsc_provider.token.engine import Engine

WORKER = str(Path(__file__).with_name("p11worker.py"))


def worker(module_path: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, module_path, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def read_json(proc: subprocess.Popen[str]) -> dict:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"worker ended early: {proc.stderr.read() if proc.stderr else ''}"
    return json.loads(line)


def test_card_and_key_made_by_the_cli_are_usable_in_a_running_process(vsc_home, module_path):
    proc = worker(module_path, "watch", stdin=subprocess.PIPE)
    try:
        assert read_json(proc)["slots"] == []
        created = json.loads(
            run_vsc("card", "create", "--label", "Live", "--pin", USER_PIN, "--so-pin", SO_PIN, "--json").stdout
        )
        keys = json.loads(
            run_vsc(
                "key",
                "generate",
                "--card",
                "Live",
                "--type",
                "p256",
                "--label",
                "live-key",
                "--pin",
                USER_PIN,
                "--json",
            ).stdout
        )
        assert proc.stdin is not None
        proc.stdin.write(f"live-key {USER_PIN}\n")
        proc.stdin.flush()
        seen = read_json(proc)
        assert seen["slots"] == [created["slot"]]
        signature = bytes.fromhex(seen["signature"])
        public = Engine().cards[created["slot"]]
        pub_obj = next(o for o in public.objects.values() if o.klass == C.CKO_PUBLIC_KEY)
        pub_key = Engine().crypto_key(public, pub_obj)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        pub_key.verify(der, b"from another process", ec.ECDSA(hashes.SHA256()))
        assert keys[0]["label"] == "live-key"
        # Deleting the card in the CLI removes the slot in the running process.
        run_vsc("card", "delete", "Live", "--yes")
        proc.stdin.write(f"live-key {USER_PIN}\n")
        proc.stdin.flush()
        assert read_json(proc)["slots"] == []
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_fifteen_processes_guessing_at_once_get_ten_tries(vsc_home, module_path, monkeypatch):
    monkeypatch.setenv("VSC_PIN_DELAY_BASE", "0")  # no waiting periods: only the counter limits them
    run_vsc("card", "create", "--label", "Storm", "--pin", USER_PIN, "--so-pin", SO_PIN)
    go = vsc_home / "go"
    procs = [worker(module_path, "guess", f"{700000 + i * 13:06d}", str(go)) for i in range(15)]
    try:
        time.sleep(1.5)  # let every worker load the module and wait at the barrier
        go.touch()
        results = [read_json(p)["result"] for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
    # Ten tries are checked (nine wrong, the tenth blocks); the other five are refused unchecked.
    assert results.count("PinIncorrect") == 9, results
    assert results.count("PinLocked") == 6, results
    card_state = next(iter(Engine().cards.values()))
    assert card_state.record.user_failures == 10


def test_sigkill_during_key_generation_and_import_leaves_a_working_store(vsc_home, module_path, card):
    proc = worker(module_path, "churn", USER_PIN)
    done: list[dict] = []
    try:
        while len(done) < 3:
            done.append(read_json(proc))
        time.sleep(0.07)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        for line in proc.stdout.read().splitlines():
            done.append(json.loads(line))
    finally:
        if proc.poll() is None:
            proc.kill()
    db = sqlite3.connect(vsc_home / "store.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    engine = Engine()
    card_state = next(iter(engine.cards.values()))
    engine.login(card_state, False, USER_PIN.encode())
    labels = {o.attrs.get(C.CKA_LABEL) for o in card_state.objects.values()}
    for entry in done:  # everything reported as committed is there and usable
        assert entry["key"].encode() in labels
        assert entry["imported"].encode() in labels
        assert f"d-{entry['data']}".encode() in labels
    for obj in card_state.objects.values():
        if obj.klass == C.CKO_PRIVATE_KEY:
            engine.crypto_key(card_state, obj)  # unseals and loads: no half-written key material
    # A key pair is written in one transaction: never a private key without its public key.
    by_class: dict[int, set[bytes]] = {}
    for obj in card_state.objects.values():
        label = obj.attrs.get(C.CKA_LABEL, b"")
        if not label.startswith(b"imp-"):  # imported private keys come without a public key object
            by_class.setdefault(obj.klass, set()).add(label)
    assert by_class.get(C.CKO_PRIVATE_KEY, set()) == by_class.get(C.CKO_PUBLIC_KEY, set())
