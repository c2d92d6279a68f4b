"""Several `vsc server run` processes on one PostgreSQL database, each with a copy of the same data directory,
behave as one server: codes used once, PIN tries counted once, address limits and the wrong-code throttle
reached at one server's total, nothing half-done after a SIGKILL, push events delivered by whichever instance
the device is connected to; an instance with a data directory of its own is refused."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.server.idserver import IdServer, light_request, software_csr, start_server
from tests.server.request_device import KeyDevice, PushReader
from tests.server.test_caps_race import race_pending, race_tickets
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey, jwe_to_server
from vsc_provider.provisioning.http import ServerError


def _cluster(postgres: Any, root: Path, env: dict[str, str] | None = None) -> Iterator[list[IdServer]]:
    """Three instances on one new database: the first makes the data directory, the others get copies."""
    database = postgres.database()
    first = start_server(root / "a", database=database, env=env)
    servers = [first]
    try:
        for name in ("b", "c"):
            shutil.copytree(first.data, root / name, ignore=shutil.ignore_patterns("server.json"))
            servers.append(start_server(root / name, database=database, env=env))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def instances(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[IdServer]]:
    yield from _cluster(postgres, tmp_path_factory.mktemp("instances"))


# a burst of 30 requests and 6 wrong codes per address, refilled so slowly that a test never sees a refill
LIMITED = {"VSC_SERVER_RATE_LIMIT": "0.01,30", "VSC_SERVER_CODE_LIMIT": "0.001,6"}


@pytest.fixture(scope="module")
def limited(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[IdServer]]:
    """Three instances with strict address limits."""
    yield from _cluster(postgres, tmp_path_factory.mktemp("limited"), LIMITED)


def _activate(server: IdServer, link: str, device: DeviceKey | None = None) -> int | str:
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        body, client = light_request(server, link, device=device, keys=[{"id": "auth", "csr": software_csr(key)}])
        with client:
            return str(client.call("POST", "/v1/activate", body)["device"])
    except ServerError as exc:
        return exc.status


def test_instances_share_one_tls_key_and_ca(instances: list[IdServer]) -> None:
    assert len({s.pin for s in instances}) == 1 and len({s.url for s in instances}) == 3
    infos = []
    for server in instances:
        with server.client() as c:
            infos.append(c.call("GET", "/v1/server")["jwks"])
    assert infos[0] == infos[1] == infos[2]


def test_a_link_made_on_one_instance_is_used_on_another(instances: list[IdServer]) -> None:
    a, b, c = instances
    link = a.link("across", "light")
    device_id = _activate(b, link)
    assert isinstance(device_id, str)
    for server in instances:
        assert [d["id"] for d in server.devices() if d["user"] == "across"] == [device_id]
    assert _activate(c, link) == 404  # used, on every instance


def test_one_link_raced_on_three_instances_gives_exactly_one_success(instances: list[IdServer]) -> None:
    link = instances[0].link("raced", "light")
    tries = [instances[n % 3] for n in range(18)]
    with ThreadPoolExecutor(len(tries)) as pool:
        results = list(pool.map(lambda s: _activate(s, link), tries, timeout=300))
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1, results
    assert all(r in (404, 409) for r in results if not isinstance(r, str))
    assert [d["id"] for d in instances[2].devices() if d["user"] == "raced"] == winners
    assert instances[0].query("SELECT COUNT(*) FROM keys WHERE device = ?", (winners[0],)) == [(1,)]


def _online_device(server: IdServer, verifier: bytes) -> tuple[DeviceKey, str]:
    with server.client() as info:
        jwks = info.call("GET", "/v1/server")["jwks"]
    device = DeviceKey.generate()
    code = wire.ActivationLink.parse(server.link("pin-spread", "online")).code
    payload = {
        "code": code,
        "keys": [{"id": "auth", "csr": software_csr(rsa.generate_private_key(65537, 2048))}],
        "pin_verifier": jwe_to_server(jwks, verifier),
    }
    with server.client() as c:
        answer = c.call("POST", "/v1/activate", device.sign(server.url + "/v1/activate", c.nonce(), payload))
    return device, str(answer["device"])


def _pin_try(server: IdServer, device: DeviceKey, device_id: str, verifier: bytes) -> ServerError | None:
    with server.client() as c:
        nonce = c.nonce()
        payload = {"proof": wire.b64u(wire.pin_proof(verifier, nonce))}
        try:
            c.call("POST", "/v1/pin", device.sign(server.url + "/v1/pin", nonce, payload, kid=device_id))
        except ServerError as exc:
            return exc
    return None


def test_ten_wrong_pins_spread_over_instances_block_at_exactly_ten(instances: list[IdServer]) -> None:
    right = b"r" * 32
    device, device_id = _online_device(instances[0], right)
    answers: list[str] = []
    deadline = time.monotonic() + 240
    while "pin_blocked" not in answers and time.monotonic() < deadline:
        # bursts over all three instances at once: the count and the waits hold across them
        with ThreadPoolExecutor(6) as pool:
            refusals = list(
                pool.map(lambda n: _pin_try(instances[n % 3], device, device_id, b"w" * 32), range(6), timeout=120)
            )
        answers += [r.error if r else "accepted" for r in refusals]
        assert instances[1].query("SELECT pin_failures FROM devices WHERE id = ?", (device_id,))[0][0] <= 10
        time.sleep(0.2)
    assert set(answers) <= {"pin_incorrect", "pin_wait", "pin_blocked"}, answers
    assert answers.count("pin_incorrect") == 9, answers  # the tenth wrong try is answered with the block
    assert instances[2].query("SELECT pin_failures FROM devices WHERE id = ?", (device_id,)) == [(10,)]
    for server in instances:  # blocked everywhere, the right PIN too, and the count stays at ten
        refused = _pin_try(server, device, device_id, right)
        assert refused is not None and (refused.status, refused.error) == (423, "pin_blocked")
    assert instances[0].query("SELECT pin_failures FROM devices WHERE id = ?", (device_id,)) == [(10,)]


def test_ticket_requests_raced_over_instances_get_exactly_the_cap(instances: list[IdServer]) -> None:
    from vsc_provider.server.migration import MAX_OPEN_TICKETS

    outcomes = race_tickets(instances)
    assert outcomes.count(200) == MAX_OPEN_TICKETS and set(outcomes) - {200} == {"429 too_many_tickets"}, outcomes


def test_requests_raced_over_instances_fill_exactly_the_pending_cap(instances: list[IdServer]) -> None:
    outcomes = race_pending(instances)
    assert outcomes.count(200) == 3 and set(outcomes) - {200} == {"429 too_many_pending"}, outcomes


def test_an_instance_killed_mid_activation_leaves_nothing_half_done(
    instances: list[IdServer], postgres: Any, tmp_path: Path
) -> None:
    a = instances[0]
    victim_data = tmp_path / "victim"
    shutil.copytree(a.data, victim_data, ignore=shutil.ignore_patterns("server.json"))
    victim = start_server(victim_data, database=a.database)  # a fourth instance, killed below
    links = [a.link(f"killed{n}", "light") for n in range(40)]
    try:
        with ThreadPoolExecutor(12) as pool:
            pending = [pool.submit(_activate, victim, link) for link in links]
            deadline = time.monotonic() + 120
            while len(a.query("SELECT id FROM devices WHERE \"user\" LIKE 'killed%'")) < 5:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            victim.proc.send_signal(signal.SIGKILL)  # with a dozen activations under way
            results = [f.result(timeout=120) for f in pending]
    finally:
        victim.stop()
    done = [r for r in results if isinstance(r, str)]
    assert 0 < len(done) < len(links), results  # killed in the middle
    users = [f"killed{n}" for n in range(40)]
    rows = a.query(
        'SELECT a."user", a.used IS NOT NULL, a.device, (SELECT COUNT(*) FROM keys k WHERE k.device = a.device),'
        " (SELECT COUNT(*) FROM devices d WHERE d.id = a.device) FROM activations a WHERE a.\"user\" LIKE 'killed%'"
    )
    assert sorted(r[0] for r in rows) == sorted(users)
    for _user, used, device, keys, devices in rows:
        # each code is either used with its device and key stored, or unused with nothing stored
        assert (used, keys, devices) in ((True, 1, 1), (False, 0, 0)), (used, device, keys, devices)
    stored = {d["id"] for d in a.devices() if d["user"].startswith("killed")}
    assert set(done) <= stored and len(stored) == sum(1 for r in rows if r[1])
    # the codes the killed instance never used work on another instance
    unused = [links[users.index(r[0])] for r in rows if not r[1]]
    retried = [_activate(instances[1], link) for link in unused]
    assert all(isinstance(r, str) for r in retried), retried


def test_a_request_made_on_one_instance_is_pushed_by_another(instances: list[IdServer]) -> None:
    a, b, _ = instances
    key = DeviceKey.generate()
    device_id = _activate(a, a.link("pushed", "light"), device=key)
    assert isinstance(device_id, str)
    reader = PushReader(KeyDevice(b, key, device_id))
    try:
        assert reader.response.status_code == 200
        time.sleep(0.3)  # the stream is subscribed on b
        started = time.perf_counter()
        made = a.admin("POST", "/admin/requests", {"user": "pushed", "kind": "auth"})
        at, token = reader.next("request", timeout=10)
        claims = json.loads(wire.unb64u(token.split(".")[1]))
        assert claims["id"] == made["id"] and claims["device"] == device_id
        assert (at - started) < 5.0
        a.admin("POST", f"/admin/requests/{made['id']}/cancel")
        assert reader.next("gone", timeout=10)[1] == made["id"]
    finally:
        reader.close()


def test_a_card_deleted_through_one_instance_is_on_every_instance_crl_at_once(instances: list[IdServer]) -> None:
    def crl(server: IdServer) -> x509.CertificateRevocationList:
        with server.client() as c:
            return x509.load_der_x509_crl(c._http.get("/v1/crl").content)

    key = ec.generate_private_key(ec.SECP256R1())
    body, client = light_request(
        instances[0], instances[0].link("crl", "light"), keys=[{"id": "auth", "csr": software_csr(key)}]
    )
    with client:
        answer = client.call("POST", "/v1/activate", body)
    serial = x509.load_der_x509_certificate(wire.unb64u(answer["keys"][0]["certificate"])).serial_number
    for server in instances:  # each signs and keeps a CRL without it
        assert crl(server).get_revoked_certificate_by_serial_number(serial) is None
    instances[1].admin("POST", f"/admin/devices/{answer['device']}/delete")
    for server in instances:  # the generation moved on in the database: no instance serves its old CRL
        assert crl(server).get_revoked_certificate_by_serial_number(serial) is not None


def test_a_second_instance_with_a_data_directory_of_its_own_is_refused(
    instances: list[IdServer], tmp_path: Path
) -> None:
    data = tmp_path / "fresh"
    command = [sys.executable, "-m", "vsc_provider.cli", "server", "run", "--data", str(data)]
    proc = subprocess.run(
        [*command, "--database", str(instances[0].database), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "copy the data directory" in lines[0], proc.stderr
    assert not (data / "ca.key").exists()


def _refused_start(data: Path, database: str, *args: str) -> str:
    """The one-line error of `vsc server run` on this data directory and database."""
    proc = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", "server", "run", "--data", str(data), "--database", database,
         "--port", "1", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_copy_missing_a_shared_file_is_refused_not_given_one_of_its_own(postgres: Any, tmp_path: Path) -> None:
    database = postgres.database()
    relay = ("--push-relay", "https://127.0.0.1:9")  # only loaded at start: nothing is posted
    first = start_server(tmp_path / "a", database=database, args=relay)
    first.stop()
    assert (first.data / "relay-secret").exists()
    for name in ("admin.json", "tls.key", "tls.pem", "relay-secret"):
        copy = tmp_path / f"without-{name}"
        shutil.copytree(first.data, copy, ignore=shutil.ignore_patterns("server.json", name))
        line = _refused_start(copy, database, *relay)
        assert f"has no {name}," in line and "copy it from another instance" in line, line
        assert not (copy / name).exists()  # nothing made in its place
    other = tmp_path / "other-relay-secret"
    shutil.copytree(first.data, other, ignore=shutil.ignore_patterns("server.json"))
    (other / "relay-secret").write_bytes(secrets.token_bytes(32))
    assert "relay-secret differs" in _refused_start(other, database, *relay)
    # a refused start records nothing: the relay and TLS pin admin commands use are still the first one's
    with psycopg.connect(database) as conn:
        served = dict(conn.execute("SELECT name, value FROM server_identity").fetchall())
    assert served["relay_url"] == "https://127.0.0.1:9" and served["tls_pin"] == first.pin
    # the first one's own directory still starts, with its relay
    start_server(first.data, database=database, args=relay).stop()


def _full_buckets(server: IdServer) -> None:
    """Every address starts again with full buckets (the shared rows deleted)."""
    server.query("DELETE FROM rate_buckets")


def _hammer(servers: list[IdServer], calls: int) -> list[httpx.Response]:
    """GET /v1/nonce `calls` times, round-robin over the servers, eight at a time."""
    clients = [s.client() for s in servers]
    try:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda n: clients[n % len(clients)]._http.get("/v1/nonce"), range(calls), timeout=120))
    finally:
        for c in clients:
            c.close()


def test_request_limits_are_shared_by_the_instances(limited: list[IdServer]) -> None:
    accepted = {}
    for spread in (limited[:1], limited):
        _full_buckets(limited[0])
        answers = _hammer(spread, 60)
        accepted[len(spread)] = sum(r.status_code == 200 for r in answers)
        refused = [r for r in answers if r.status_code != 200]
        assert {r.status_code for r in refused} == {429}
        assert all(r.json()["error"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1 for r in refused)
        for server in limited:  # refused on every instance now, whichever served the burst
            with server.client() as c:
                assert c._http.get("/v1/nonce").status_code == 429
    assert accepted == {1: 30, 3: 30}  # one instance's total, not three times it


def test_wrong_activation_codes_are_counted_across_instances(limited: list[IdServer]) -> None:
    a, b, c = limited
    _full_buckets(a)
    good = wire.ActivationLink.parse(a.link("guessed", "light")).code
    _full_buckets(a)

    def offer(server: IdServer, code: str) -> tuple[int, str]:
        with server.client() as client:
            try:
                return 200, str(client.call("POST", "/v1/offer", {"code": code})["user"])
            except ServerError as exc:
                return exc.status, exc.error

    with ThreadPoolExecutor(6) as pool:
        guesses = list(pool.map(lambda n: offer(limited[n % 3], secrets.token_urlsafe(18)), range(6), timeout=60))
    assert [status for status, _ in guesses] == [404] * 6
    for server in limited:  # the seventh guess is refused wherever it goes, and so is the good code now
        assert offer(server, secrets.token_urlsafe(18)) == (429, "too_many_codes")
    assert offer(b, good) == (429, "too_many_codes")
    rows = a.query("SELECT name, client FROM rate_buckets ORDER BY name")
    assert [r[0] for r in rows] == ["codes", "requests"]  # one row per bucket and address, whatever instance
    _full_buckets(a)
    assert offer(c, good) == (200, "guessed")
