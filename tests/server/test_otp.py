"""OATH seeds from the server: provisioned at activation onto a real card (`vsc activate`, `vsc otp list/code`),
and verified for relying parties at /v1/otp/verify (window, replay, HOTP look-ahead and resync, throttle and
block, concurrency); pyotp is the independent oracle for codes of seeds a software device received."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import USER_PIN, run_vsc
from tests.server.idserver import IdServer, light_request, software_csr, start_server
from vsc_provider import api
from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import general, sessions, signing
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.server.throttle import policy

VERIFY = "/v1/otp/verify"


def new_rp(server: IdServer, name: str) -> str:
    out = run_vsc("server", "rp", "create", "--data", str(server.data), "--name", name, "--json")
    return str(json.loads(out.stdout)["api_key"])


@pytest.fixture(scope="module")
def rp_key(id_server: IdServer) -> str:
    return new_rp(id_server, f"OTP shop {time.time_ns()}")


def post(server: IdServer, key: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON answer, headers) of a verification, refused or not."""
    with server.client() as c:
        response = c._http.post(VERIFY, content=json.dumps(body).encode(), headers={"Authorization": f"Bearer {key}"})
    return response.status_code, response.json(), dict(response.headers)


def check(server: IdServer, key: str, device: str, code: str) -> dict[str, Any]:
    """A verification answered 200; waits out the wait a wrong code started, so the next call is not refused."""
    status, answer, _ = post(server, key, {"device": device, "code": code})
    assert status == 200, answer
    time.sleep(float(answer.get("retry_after", 0)) + 0.01)
    return answer


class SoftDevice:
    """A device of software keys activated with an OTP link: it opens its seed, which pyotp then computes with."""

    def __init__(self, server: IdServer, user: str, otp: Any, profile: str = "light") -> None:
        link = server.admin("POST", "/admin/activations", {"user": user, "profile": profile, "otp": otp})["link"]
        self.key, self.card_key = DeviceKey.generate(), ec.generate_private_key(ec.SECP256R1())
        self.server, self.link = server, str(link)
        self.answer = self.activate()
        self.id = str(self.answer["device"])
        self.otp = self.answer["otp"]
        self.seed = self.key.open(self.otp["secret"])

    def activate(self) -> dict[str, Any]:
        keys = [{"id": "auth", "csr": software_csr(self.card_key)}]
        body, client = light_request(self.server, self.link, device=self.key, keys=keys)
        with client:
            return dict(client.call("POST", "/v1/activate", body))

    def oracle(self) -> Any:
        b32 = base64.b32encode(self.seed).decode()
        digest = getattr(hashlib, self.otp["algorithm"].lower())
        if self.otp["type"] == "totp":
            return pyotp.TOTP(b32, digits=self.otp["digits"], digest=digest, interval=self.otp["period"])
        return pyotp.HOTP(b32, digits=self.otp["digits"], digest=digest)


def unused_code(hotp: Any) -> str:
    """A code of the HOTP's length that none of its first 300 counters gives."""
    used = {hotp.at(c) for c in range(300)}
    return next(c for c in (f"{n:0{hotp.digits}d}" for n in range(10**6)) if c not in used)


def steady(period: int, margin: float = 3.0) -> float:
    """Now, once at least `margin` seconds are left in the current time step (the server sees the same step)."""
    while period - time.time() % period < margin:
        time.sleep(0.2)
    return time.time()


# --- provisioning onto a real card --------------------------------------------------------------


def test_activation_puts_the_seed_on_the_card_and_the_server_verifies_its_codes(
    id_server: IdServer, card_store: Path, rp_key: str
) -> None:
    user = f"otp-alice-{id_server.port}"
    made = run_vsc(
        "server", "activation", "create", "--data", str(id_server.data), "--user", user, "--profile", "light",
        "--otp", "totp", "--otp-algorithm", "SHA256", "--otp-digits", "8", "--otp-issuer", "ACME", "--json",
    )  # fmt: skip
    link = json.loads(made.stdout)["link"]
    serial = json.loads(run_vsc("activate", link, "--pin", USER_PIN, "--json").stdout)["serial"]
    listed = json.loads(run_vsc("otp", "list", "--card", serial, "--json").stdout)
    assert [(o["name"], o["type"], o["algorithm"], o["digits"], o["period"]) for o in listed] == [
        (f"ACME:{user}", "totp", "SHA256", 8, 30)
    ]
    steady(30)
    got = json.loads(run_vsc("otp", "code", "--card", serial, f"ACME:{user}", "--pin", USER_PIN, "--json").stdout)
    assert len(got["code"]) == 8
    device = _device_of(serial)
    first = check(id_server, rp_key, device, got["code"])
    assert first["valid"] is True and first["user"] == user and first["type"] == "totp"
    again = check(id_server, rp_key, device, got["code"])
    assert (again["valid"], again["reason"]) == (False, "replayed")
    # the user form finds the one device of the user that holds a seed
    status, by_user, _ = post(id_server, rp_key, {"user": user, "code": got["code"]})
    assert status == 200 and by_user["device"] == device and by_user["reason"] == "replayed"


def _device_of(serial: str) -> str:
    """The server's id of the card's device (from its binding in the store)."""
    return str((api.find_card(serial).record.server or {})["device"])


def test_a_hotp_seed_on_the_card_follows_the_server_counter(id_server: IdServer, card_store: Path, rp_key: str) -> None:
    user = f"otp-hotp-{id_server.port}"
    link = id_server.admin("POST", "/admin/activations", {"user": user, "profile": "light", "otp": "hotp"})["link"]
    serial = json.loads(run_vsc("activate", link, "--pin", USER_PIN, "--json").stdout)["serial"]
    device = _device_of(serial)
    host = id_server.url.split("//")[1].split(":")[0]
    codes = [
        json.loads(run_vsc("otp", "code", "--card", serial, user, "--pin", USER_PIN, "--json").stdout) for _ in range(3)
    ]
    assert all(set(c) == {"code", "valid_for"} and c["valid_for"] is None for c in codes)
    listed = json.loads(run_vsc("otp", "list", "--card", serial, "--json").stdout)[0]
    assert (listed["issuer"], listed["counter"]) == (host, 3)  # the counters 0, 1, 2 were used
    by_pkcs11 = _pkcs11_code(serial)  # C_Sign with CKM_HOTP on the same key: the next counter
    assert by_pkcs11[C.CK_OTP_COUNTER] == (3).to_bytes(8, "big")
    skipped = check(id_server, rp_key, device, codes[1]["code"])  # code 0 was never used: within the look-ahead
    assert (skipped["valid"], skipped["counter"]) == (True, 1)
    assert check(id_server, rp_key, device, codes[0]["code"])["valid"] is False  # behind the counter now
    assert check(id_server, rp_key, device, codes[2]["code"])["valid"] is True
    last = check(id_server, rp_key, device, by_pkcs11[C.CK_OTP_VALUE].decode())
    assert (last["valid"], last["counter"]) == (True, 3)


def _pkcs11_code(serial: str) -> dict[int, bytes]:
    """The card's HOTP code through the PKCS#11 layer (in process): C_SignInit(CKM_HOTP) + C_Sign, the
    CK_OTP_SIGNATURE_INFO's params."""
    general.initialize(None)
    try:
        card = api.find_card(serial)
        h = sessions.open_session(card.slot_id, C.CKF_SERIAL_SESSION | C.CKF_RW_SESSION)
        sessions.login(h, C.CKU_USER, USER_PIN.encode())
        key = next(o for o in card.objects.values() if o.klass == C.CKO_OTP_KEY)
        signing.sign_init(h, Mechanism(C.CKM_HOTP), key.handle)
        return dict(signing.sign(h, b"", False, 4096).params)
    finally:
        general.finalize()


def test_a_card_activated_without_otp_has_none(id_server: IdServer, card_store: Path, rp_key: str) -> None:
    user = f"otp-none-{id_server.port}"
    serial = json.loads(run_vsc("activate", id_server.link(user, "light"), "--pin", USER_PIN, "--json").stdout)[
        "serial"
    ]
    assert json.loads(run_vsc("otp", "list", "--card", serial, "--json").stdout) == []
    for body in ({"device": _device_of(serial), "code": "123456"}, {"user": user, "code": "123456"}):
        status, answer, _ = post(id_server, rp_key, body)
        assert (status, answer["error"]) == (404, "no_otp")


# --- the verification rules (software devices, pyotp as the oracle) -----------------------------------


def test_totp_window_and_each_step_once(id_server: IdServer, rp_key: str) -> None:
    # 120 s steps (pyotp's longest): a loaded machine's calls do not straddle a step change (steady() keeps 20 s)
    dev = SoftDevice(id_server, "otp-window", {"type": "totp", "algorithm": "SHA512", "digits": 7, "period": 120})
    assert (len(dev.seed), dev.otp["digits"], dev.otp["period"]) == (64, 7, 120)
    oracle = dev.oracle()
    now = steady(120, 20)
    assert check(id_server, rp_key, dev.id, oracle.at(now - 240))["reason"] == "wrong"  # two steps back
    assert check(id_server, rp_key, dev.id, oracle.at(now + 240))["reason"] == "wrong"  # two steps ahead
    ahead = check(id_server, rp_key, dev.id, oracle.at(now + 120))  # a clock one step fast is accepted
    assert ahead["valid"] is True and ahead["step"] == int(now) // 120 + 1
    for earlier in (now + 120, now, now - 120):  # that step again, and the older ones: refused
        assert check(id_server, rp_key, dev.id, oracle.at(earlier))["reason"] == "replayed"
    wide = SoftDevice(id_server, "otp-wide", {"type": "totp", "window": 2, "period": 120})
    now = steady(120, 20)
    assert check(id_server, rp_key, wide.id, wide.oracle().at(now - 240))["valid"] is True
    narrow = SoftDevice(id_server, "otp-narrow", {"type": "totp", "window": 0, "period": 120})
    now = steady(120, 20)
    assert check(id_server, rp_key, narrow.id, narrow.oracle().at(now - 120))["reason"] == "wrong"
    assert check(id_server, rp_key, narrow.id, narrow.oracle().at(now))["valid"] is True


def test_hotp_look_ahead_and_resynchronisation(id_server: IdServer, rp_key: str) -> None:
    dev = SoftDevice(id_server, "otp-resync", {"type": "hotp", "digits": 8, "algorithm": "SHA256"})
    assert dev.otp["counter"] == 0
    hotp = dev.oracle()
    assert check(id_server, rp_key, dev.id, hotp.at(3))["counter"] == 3  # within the look-ahead of 10
    assert check(id_server, rp_key, dev.id, hotp.at(3))["valid"] is False  # used
    assert check(id_server, rp_key, dev.id, hotp.at(14))["counter"] == 14  # the window's far end (4 + 10)
    # beyond the window: a first code is remembered; only the very next one completes the resync
    first = check(id_server, rp_key, dev.id, hotp.at(40))
    assert (first["valid"], first["reason"], first["tries_left"]) == (False, "resync", 10)
    assert check(id_server, rp_key, dev.id, unused_code(hotp))["reason"] == "wrong"  # not the next one: starts over
    assert check(id_server, rp_key, dev.id, hotp.at(41))["reason"] == "resync"  # so 41 is a new first code
    done = check(id_server, rp_key, dev.id, hotp.at(42))
    assert (done["valid"], done["counter"]) == (True, 42)
    assert check(id_server, rp_key, dev.id, hotp.at(43))["valid"] is True
    # beyond the resync range (44 + 10 + 100): wrong
    assert check(id_server, rp_key, dev.id, hotp.at(44 + 10 + 100 + 5))["reason"] == "wrong"
    assert check(id_server, rp_key, dev.id, hotp.at(44))["valid"] is True


def test_wrong_codes_wait_like_pins_and_block_at_the_tenth(
    id_server: IdServer, rp_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSC_SERVER_PIN_DELAY", id_server.env["VSC_SERVER_PIN_DELAY"])
    pins = policy()  # the server's PIN policy: its delays are the ones codes get
    dev = SoftDevice(id_server, "otp-throttle", "hotp")
    hotp = dev.oracle()
    wrong = unused_code(hotp)
    probe = hotp.at(50)  # in the resync range: changes no count when it is not refused
    waits = []
    for n in range(1, 11):
        sent = time.monotonic()
        status, answer, _ = post(id_server, rp_key, {"device": dev.id, "code": wrong})
        assert (status, answer["valid"], answer["tries_left"]) == (200, False, 10 - n), answer
        waits.append(answer.get("retry_after", 0.0))
        if n < 10 and pins.delay_after(n):
            refused, held, headers = post(id_server, rp_key, {"device": dev.id, "code": probe})
            if time.monotonic() - sent < pins.delay_after(n):  # certainly inside the wait
                assert (refused, held["error"]) == (429, "otp_wait") and int(headers["retry-after"]) >= 1
            else:  # a slow machine: the wait may be over
                assert refused == 429 or held["reason"] == "resync", held
            time.sleep(held.get("retry_after", 0) + 0.01)
    assert waits[:9] == [pins.delay_after(n) for n in range(1, 10)] and waits[2] > 0 and waits[8] == 64 * waits[2]
    for code in (wrong, hotp.at(0)):  # blocked: even the right code is refused
        status, answer, _ = post(id_server, rp_key, {"device": dev.id, "code": code})
        assert (status, answer["error"]) == (423, "otp_blocked")
    # "--": a device id may start with "-"
    run_vsc("server", "device", "action", "--data", str(id_server.data), "--", dev.id, "unblock")
    assert check(id_server, rp_key, dev.id, hotp.at(0))["valid"] is True


def test_a_code_verified_by_many_at_once_is_accepted_once(id_server: IdServer, rp_key: str) -> None:
    dev = SoftDevice(id_server, "otp-race", "hotp")
    code = dev.oracle().at(0)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: post(id_server, rp_key, {"device": dev.id, "code": code}), range(12)))
    assert all(status in (200, 429, 423) for status, _, _ in answers), answers
    assert sum(1 for status, a, _ in answers if status == 200 and a["valid"]) == 1


def test_two_instances_on_one_postgresql_accept_a_code_once_and_count_wrong_codes_together(
    postgres: Any, tmp_path: Path
) -> None:
    database = postgres.database()
    first = start_server(tmp_path / "a", database=database)
    servers = [first]
    try:
        shutil.copytree(first.data, tmp_path / "b", ignore=shutil.ignore_patterns("server.json"))
        servers.append(start_server(tmp_path / "b", database=database))
        key = new_rp(first, "two instances")
        dev = SoftDevice(first, "otp-two", "hotp")
        code = dev.oracle().at(0)
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda n: post(servers[n % 2], key, {"device": dev.id, "code": code}), range(12)))
        assert all(status in (200, 429, 423) for status, _, _ in answers), answers
        assert sum(1 for status, a, _ in answers if status == 200 and a["valid"]) == 1
        first.admin("POST", f"/admin/devices/{dev.id}/unblock")
        left = [check(servers[n % 2], key, dev.id, code)["tries_left"] for n in range(4)]
        assert left == [9, 8, 7, 6]
        assert check(servers[1], key, dev.id, dev.oracle().at(1))["valid"] is True
    finally:
        for server in servers:
            server.stop()


def test_replayed_activation_sends_the_same_seed_and_one_user_with_two_seeds_names_a_device(
    id_server: IdServer, rp_key: str
) -> None:
    dev = SoftDevice(id_server, "otp-twice", {"type": "totp", "issuer": "Shop"})
    replayed = dev.activate()  # the same device and card keys: the answer again (the device lost it)
    assert replayed["device"] == dev.id and dev.key.open(replayed["otp"]["secret"]) == dev.seed
    assert (replayed["otp"]["issuer"], replayed["otp"]["account"]) == ("Shop", "otp-twice")
    other = SoftDevice(id_server, "otp-twice", "hotp")
    status, answer, _ = post(id_server, rp_key, {"user": "otp-twice", "code": "123456"})
    assert (status, answer["error"]) == (409, "several_devices")
    assert check(id_server, rp_key, other.id, other.oracle().at(0))["valid"] is True
    id_server.admin("POST", f"/admin/devices/{other.id}/delete")
    status, answer, _ = post(id_server, rp_key, {"device": other.id, "code": other.oracle().at(1)})
    assert (status, answer["error"]) == (404, "no_otp")
    now = steady(30)
    assert check(id_server, rp_key, dev.id, dev.oracle().at(now))["valid"] is True  # by device ...
    status, answer, _ = post(id_server, rp_key, {"user": "otp-twice", "code": dev.oracle().at(now)})
    assert (status, answer["device"], answer["reason"]) == (200, dev.id, "replayed")  # ... and by user: one left


def test_the_seed_is_sealed_in_the_database(id_server: IdServer, rp_key: str) -> None:
    dev = SoftDevice(id_server, "otp-sealed", {"type": "hotp", "algorithm": "SHA1"})
    assert len(dev.seed) == 20
    stored = id_server.query("SELECT seed FROM otp_seeds WHERE device = ?", (dev.id,))
    assert len(stored) == 1 and dev.seed not in bytes(stored[0][0])
    if id_server.database is None:  # every file of the data directory, the SQLite log included
        on_disk = b"".join(p.read_bytes() for p in id_server.data.rglob("*") if p.is_file())
        assert dev.seed not in on_disk and dev.seed.hex().encode() not in on_disk
    assert check(id_server, rp_key, dev.id, dev.oracle().at(0))["valid"] is True  # it opens with the server's key


# --- refusals ----------------------------------------------------------------------------------------


def test_relying_parties_authenticate_with_their_api_key(id_server: IdServer) -> None:
    admin_token = json.loads((id_server.data / "admin.json").read_text())["token"]
    for key in ("x", "vsc_rp_wrong", admin_token):
        status, answer, _ = post(id_server, key, {"user": "otp-alice", "code": "123456"})
        assert (status, answer["error"]) == (401, "bad_api_key")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "123456"}, "user"),
        ({"user": "u", "device": "d", "code": "123456"}, "user"),
        ({"user": "u"}, "code"),
        ({"user": "u", "code": 123456}, "code"),
        ({"user": "u", "code": "12345"}, "code"),
        ({"user": "u", "code": "123456789"}, "code"),
        ({"user": "u", "code": "12a456"}, "code"),
        ({"user": "u", "code": "١٢٣٤٥٦"}, "code"),
        ({"user": ["u"], "code": "123456"}, "user"),
        ({"device": "", "code": "123456"}, "device"),
        ({"user": "u", "code": "123456", "counter": 1}, "counter"),
    ],
)  # fmt: skip
def test_bad_fields_are_400_naming_the_field(id_server: IdServer, rp_key: str, body: Any, field: str) -> None:
    status, answer, _ = post(id_server, rp_key, body)
    assert (status, answer["error"], answer.get("field")) == (400, "bad_field", field), answer


def test_bad_activation_otp_settings_are_400(id_server: IdServer) -> None:
    from vsc_provider.provisioning.http import ServerError

    for otp in ("sms", {"type": "totp", "digits": 9}, {"type": "hotp", "algorithm": "MD5"}, {"period": 0},
                {"issuer": "a:b"}, {"window": 11}, {"colour": 1}, [], 5):  # fmt: skip
        with pytest.raises(ServerError) as info:
            id_server.admin("POST", "/admin/activations", {"user": "u", "otp": otp})
        assert (info.value.status, info.value.error) == (400, "bad_otp"), otp
    refused = run_vsc(
        "server", "activation", "create", "--data", str(id_server.data), "--user", "u", "--otp-digits", "8",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "go with --otp" in refused.stderr


def test_fuzzing_otp_verify_with_a_valid_key_finds_no_server_error(id_server: IdServer, rp_key: str) -> None:
    SoftDevice(id_server, "otp-fuzz", "totp")
    auth = f"Authorization: Bearer {rp_key}"
    result = id_server.fuzz("--include-path-regex", "^/v1/otp/", "-H", auth, examples=60, timeout_s=20)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "/v1/otp/verify" in result.stdout


def test_a_profile_with_an_otp_setting_gives_each_card_a_seed(tmp_path: Path, database: str | None) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    keys = [{"id": "auth", "usage": "auth", "type": "p256"}]
    profiles = [
        {"name": "light", "keys": keys, "otp": {"type": "hotp", "digits": 8, "issuer": "Corp", "window": 2}},
        {"name": "plain", "keys": keys},
    ]
    (data / "profiles.json").write_text(json.dumps(profiles))
    server = start_server(data, database=database)
    try:
        key = new_rp(server, "profile shop")
        with server.client() as c:
            offered = c.call("POST", "/v1/offer", {"code": wire.ActivationLink.parse(server.link("p", "light")).code})
        assert offered["otp"] == offered["profile"]["otp"] == {
            "type": "hotp", "algorithm": "SHA1", "digits": 8, "resync": 100, "window": 2, "issuer": "Corp"
        }  # fmt: skip
        dev = SoftDevice(server, "p", None)
        assert (dev.otp["type"], dev.otp["digits"], dev.otp["issuer"], dev.otp["account"]) == ("hotp", 8, "Corp", "p")
        hotp = dev.oracle()
        assert check(server, key, dev.id, hotp.at(3))["reason"] == "resync"  # beyond the profile's look-ahead of 2
        assert check(server, key, dev.id, hotp.at(2))["counter"] == 2
        plain = server.admin("POST", "/admin/activations", {"user": "q", "profile": "plain"})["link"]
        body, client = light_request(server, plain)
        with client:
            assert "otp" not in client.call("POST", "/v1/activate", body)
    finally:
        server.stop()
