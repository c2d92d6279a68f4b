"""Fingerprint approval of requests with Debian's fprintd and libfprint's virtual reader on a private D-Bus bus
(fprintd_support.py): a finger enrolled through fprintd's own Enroll calls, real cards activated from the real
identity server, `vsc requests approve --fingerprint` and the agent's approval page as real processes.

A matching finger approves (the relying party's poll verifies the signature); another finger is refused and
counted, and after three no-matches only the PIN approves; without fprintd (no bus, or a bus without it) the PIN
is asked as before. The PIN appears in no output or log, and not in the store in the clear.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import USER_PIN, run_vsc
from tests.requests.agent_process import agent
from tests.requests.fprintd_support import Fprintd
from tests.requests.real import activated, assert_approved_jws, create, result, sign_request
from tests.requests.silent_bus import SilentBus
from tests.server.idserver import IdServer

FINGER = "right-index-finger"
NEW_PIN = "735194"


@pytest.fixture
def fprintd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fprintd]:
    """fprintd on a private bus that this test's processes use as their system bus."""
    daemon = Fprintd(tmp_path / "fprintd")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", daemon.address)
    try:
        yield daemon
    finally:
        daemon.stop()


def status() -> dict[str, object]:
    return dict(json.loads(run_vsc("requests", "fingerprint", "status", "--json").stdout))


def approve_fingerprint(rid: str) -> subprocess.CompletedProcess[str]:
    return run_vsc("requests", "approve", rid, "--fingerprint", check=False, env={"VSC_DEBUG": "1"})


def no_pin_anywhere(outputs: list[str], folder: Path) -> None:
    for text in outputs:
        assert USER_PIN not in text
    for path in folder.rglob("*"):
        if path.is_file():
            assert USER_PIN.encode() not in path.read_bytes(), path


def test_a_matching_finger_approves_another_is_refused_and_three_no_matches_leave_the_pin(
    fprintd: Fprintd, id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    user, serial = activated(id_server)
    assert status()["fingers"] == []
    refused = run_vsc("requests", "fingerprint", "enable", "--card", user, "--pin", USER_PIN, check=False)
    assert refused.returncode == 1 and "no finger enrolled" in refused.stderr and "Traceback" not in refused.stderr

    fprintd.enroll(FINGER, "alice-right-index")
    wrong = run_vsc("requests", "fingerprint", "enable", "--card", user, "--pin", "000000", check=False)
    assert wrong.returncode == 1 and "wrong PIN" in wrong.stderr, wrong.stderr
    enabled = run_vsc("requests", "fingerprint", "enable", "--card", user, "--pin", USER_PIN)
    assert f"enabled for card {user!r} ({serial})" in enabled.stdout
    state = status()
    assert state["fprintd"] is True and state["fingers"] == [FINGER]
    assert state["cards"] == [{"card": serial, "label": user, "enabled": True, "no_matches": 0, "usable": True}]

    outputs = []
    a = sign_request(id_server, rp, user)
    with fprintd.finger_on_reader("alice-right-index"):
        done = approve_fingerprint(a)
    outputs += [done.stdout, done.stderr]
    assert done.returncode == 0, done.stderr
    assert f"approved request {a} (fingerprint)" in done.stdout
    assert_approved_jws(id_server, rp, a)

    b = sign_request(id_server, rp, user)
    for left in (2, 1):
        with fprintd.finger_on_reader("mallory-thumb"):
            no = approve_fingerprint(b)
        outputs += [no.stdout, no.stderr]
        assert no.returncode == 1, no.stdout
        assert f"Error: the fingerprint did not match ({left} fingerprint tries left)" in no.stderr
        assert result(id_server, rp, b)["state"] == "PENDING"
    with fprintd.finger_on_reader("mallory-thumb"):
        last = approve_fingerprint(b)
    assert last.returncode == 1 and "did not match: approve with the PIN now" in last.stderr
    assert status()["cards"][0]["no_matches"] == 3  # type: ignore[index]

    # now even the right finger is not asked for: the PIN is, and without a terminal it must be given
    with fprintd.finger_on_reader("alice-right-index"):
        asked = approve_fingerprint(b)
    outputs += [asked.stdout, asked.stderr]
    assert asked.returncode == 1
    assert "no fingerprint approval: 3 fingerprints did not match: approve with the PIN" in asked.stderr
    assert "PIN of card" in asked.stderr and "needed" in asked.stderr
    assert result(id_server, rp, b)["state"] == "PENDING"

    run_vsc("requests", "approve", b, "--pin", USER_PIN)  # a PIN approval starts the count again
    assert status()["cards"][0]["no_matches"] == 0  # type: ignore[index]
    c = sign_request(id_server, rp, user)
    with fprintd.finger_on_reader("alice-right-index"):
        again = approve_fingerprint(c)
    outputs += [again.stdout, again.stderr, fprintd.log.read_text()]
    assert again.returncode == 0, again.stderr
    assert_approved_jws(id_server, rp, c)
    no_pin_anywhere(outputs, vsc_home)

    assert "disabled" in run_vsc("requests", "fingerprint", "disable", "--card", user).stdout
    assert status()["cards"][0]["enabled"] is False  # type: ignore[index]


def test_the_approval_page_offers_the_fingerprint_and_approves_on_a_match_only(
    fprintd: Fprintd, id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    import httpx

    user, _ = activated(id_server)
    fprintd.enroll(FINGER, "alice-right-index")
    run_vsc("requests", "fingerprint", "enable", "--card", user, "--pin", USER_PIN)
    rid = sign_request(id_server, rp, user)
    with agent(tmp_path, env={"VSC_DEBUG": "1"}) as a:
        path = vsc_home / "agent.json"
        a.wait_for(lambda: path.exists() and f"request {rid}" in a.text(), 20, "agent.json and the request")
        origin, token = json.loads(path.read_text())["url"].rstrip("/").rsplit("/", 1)
        with httpx.Client(base_url=origin, timeout=60) as http:
            page = http.get(f"/{token}/requests/{rid}").text
            assert 'id="fingerprint" name="decision" value="fingerprint"' in page
            form = {
                name: re.search(rf'name="{name}" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
                for name in ("csrf", "shown")
            }

            def use_fingerprint() -> httpx.Response:
                return http.post(
                    f"/{token}/requests/{rid}", data={**form, "decision": "fingerprint"}, headers={"Origin": origin}
                )

            with fprintd.finger_on_reader("mallory-thumb"):
                no = use_fingerprint()
            assert no.status_code == 400 and "the fingerprint did not match (2 fingerprint tries left)" in no.text
            assert result(id_server, rp, rid)["state"] == "PENDING"
            with fprintd.finger_on_reader("alice-right-index"):
                yes = use_fingerprint()
            assert yes.status_code == 200 and 'id="answered"' in yes.text, yes.text
        assert_approved_jws(id_server, rp, rid)
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(15) == 0
    no_pin_anywhere([a.text(), fprintd.log.read_text()], vsc_home)


def _sealed_pin_rows(home: Path) -> list[tuple[str, str]]:
    """The store's fingerprint-PIN entries, read with sqlite3 (this process has the private store open nowhere
    else, so closing this connection drops no lock of another)."""
    db = sqlite3.connect(home / "store.sqlite")
    try:
        return db.execute("SELECT key, value FROM meta WHERE key LIKE 'fingerprint-pin:%'").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("profile", ["default", "online"])  # the PIN checked on the card, or by its server
def test_a_pin_change_forgets_the_sealed_pin_at_once_and_the_pin_is_asked(
    profile: str, fprintd: Fprintd, id_server: IdServer, rp: str, vsc_home: Path
) -> None:
    user, serial = activated(id_server, profile)
    fprintd.enroll(FINGER, "alice-right-index")
    run_vsc("requests", "fingerprint", "enable", "--card", user, "--pin", USER_PIN)
    assert [key for key, _ in _sealed_pin_rows(vsc_home)] == [f"fingerprint-pin:{serial}"]
    run_vsc("pin", "change", "--card", user, "--old", USER_PIN, "--new", NEW_PIN)
    assert _sealed_pin_rows(vsc_home) == []  # right after the change, before any approval tried it
    assert status()["cards"][0]["enabled"] is False  # type: ignore[index]
    # an authentication request: the online profile's card holds an RSA authentication key only
    rid = str(create(id_server, rp, user, kind="auth")["id"])
    with fprintd.finger_on_reader("alice-right-index"):
        done = approve_fingerprint(rid)
    assert done.returncode == 1  # without a terminal the PIN asked for must be given
    assert "no fingerprint approval: fingerprint approval is not enabled" in done.stderr, done.stderr
    assert "PIN of card" in done.stderr and "needed" in done.stderr, done.stderr
    assert result(id_server, rp, rid)["state"] == "PENDING"
    run_vsc("requests", "approve", rid, "--pin", NEW_PIN)
    approved = result(id_server, rp, rid)
    assert approved["state"] == "APPROVED" and approved["result"]["verified"] is True, approved


def test_a_sealed_pin_the_card_refuses_is_forgotten_after_one_refusal(
    fprintd: Fprintd, id_server: IdServer, rp: str, vsc_home: Path
) -> None:
    """A sealed entry that outlived a PIN change (written back as a restore of the meta row would: every PIN
    change of this code forgets it) costs one refused try, then the PIN is asked."""
    user, _ = activated(id_server)
    fprintd.enroll(FINGER, "alice-right-index")
    run_vsc("requests", "fingerprint", "enable", "--card", user, "--pin", USER_PIN)
    rows = _sealed_pin_rows(vsc_home)
    run_vsc("pin", "change", "--card", user, "--old", USER_PIN, "--new", NEW_PIN)
    db = sqlite3.connect(vsc_home / "store.sqlite")
    with db:
        db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", rows)
    db.close()
    assert status()["cards"][0]["enabled"] is True  # type: ignore[index]
    rid = sign_request(id_server, rp, user)
    with fprintd.finger_on_reader("alice-right-index"):
        done = approve_fingerprint(rid)
    assert done.returncode == 1
    assert "refused the sealed PIN" in done.stderr and "PIN of card" in done.stderr, done.stderr
    assert status()["cards"][0]["enabled"] is False  # type: ignore[index]
    run_vsc("requests", "approve", rid, "--pin", NEW_PIN)
    assert_approved_jws(id_server, rp, rid)


def _approve_on_a_terminal(rid: str, env: dict[str, str], timeout: float = 90.0) -> tuple[int, str]:
    """`vsc requests approve RID --fingerprint` on a pseudo-terminal, typing the PIN when it is asked; fails
    (the process killed) when it has not finished within `timeout` seconds."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsc_provider.cli", "requests", "approve", rid, "--fingerprint"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, **env},
        start_new_session=True,
    )
    os.close(secondary)
    seen = b""
    typed = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([primary], [], [], left)[0]:
                proc.kill()
                raise AssertionError(f"vsc requests approve still runs after {timeout} s: {seen!r}")
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            seen += chunk
            if not typed and b"PIN of card" in seen:
                os.write(primary, USER_PIN.encode() + b"\n")
                typed = True
    finally:
        os.close(primary)
    return proc.wait(60), seen.decode(errors="replace")


@pytest.mark.parametrize("where", ["no bus", "a bus without fprintd", "a bus that never answers Hello"])
def test_without_fprintd_the_pin_is_asked_as_before(
    where: str, fprintd: Fprintd, id_server: IdServer, rp: str, vsc_home: Path, tmp_path: Path
) -> None:
    user, _ = activated(id_server)
    fprintd.enroll(FINGER, "alice-right-index")
    run_vsc("requests", "fingerprint", "enable", "--card", user, "--pin", USER_PIN)
    bare = Fprintd(tmp_path / "bare", with_fprintd=False) if where == "a bus without fprintd" else None
    silent = SilentBus(tmp_path / "silent", answer_auth=True) if where == "a bus that never answers Hello" else None
    bus = bare.address if bare else silent.address if silent else f"unix:path={tmp_path / 'no-such-bus'}"
    env = {"DBUS_SYSTEM_BUS_ADDRESS": bus}
    try:
        state = json.loads(run_vsc("requests", "fingerprint", "status", "--json", env=env, timeout=60).stdout)
        assert state["fprintd"] is False and state["cards"][0]["enabled"] is True
        assert state["cards"][0]["usable"] is False
        refused = run_vsc(
            "requests", "fingerprint", "enable", "--card", user, "--pin", USER_PIN, env=env, check=False, timeout=60
        )
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

        rid = sign_request(id_server, rp, user)
        code, seen = _approve_on_a_terminal(rid, env)
        assert code == 0, seen
        assert "no fingerprint approval: " in seen and "PIN of card" in seen
        if silent is not None:
            assert "no fingerprint approval: the system D-Bus does not answer" in seen, seen
            assert silent.said_hello.is_set()
        assert f"approved request {rid}" in seen and USER_PIN not in seen
        assert_approved_jws(id_server, rp, rid)
    finally:
        if bare is not None:
            bare.stop()
        if silent is not None:
            silent.close()
