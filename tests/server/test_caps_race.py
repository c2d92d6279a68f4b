"""The per-device caps (open migration tickets, pending requests) hold under concurrent requests: counted and
written in one transaction under the device's row lock. Here one server on each back end with concurrent
threads; test_instances.py races the same helpers over several instances on PostgreSQL."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from tests.server.idserver import IdServer, light_request, software_csr
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.provisioning.http import ServerError
from vsc_provider.server.migration import MAX_OPEN_TICKETS
from vsc_provider.server.requests import MAX_PENDING

RACERS = 16


def _status_of(call: Any) -> int | str:
    try:
        call()
        return 200
    except ServerError as exc:
        return f"{exc.status} {exc.error}"


def race_tickets(servers: list[IdServer]) -> list[int | str]:
    """RACERS migration-ticket requests of one device at once, spread over the servers; their outcomes."""
    device, device_id = _device_of(servers[0], f"ticketed-{secrets.token_hex(4)}")
    payload = {"target": "https://other.example", "target_key": DeviceKey.generate().public_jwk()}
    bodies = []
    for n in range(RACERS):
        server = servers[n % len(servers)]
        with server.client() as c:
            bodies.append((server, device.sign(server.url + "/v1/migration", c.nonce(), payload, kid=device_id)))

    def ask(item: tuple[IdServer, dict[str, Any]]) -> int | str:
        server, body = item
        with server.client() as c:
            return _status_of(lambda: c.call("POST", "/v1/migration", body))

    with ThreadPoolExecutor(RACERS) as pool:
        outcomes = list(pool.map(ask, bodies))
    open_rows = servers[0].query("SELECT COUNT(*) FROM tickets WHERE device = ? AND state = 'issued'", (device_id,))
    assert open_rows[0][0] == MAX_OPEN_TICKETS
    return outcomes


def race_pending(servers: list[IdServer]) -> list[int | str]:
    """A device three requests short of its pending cap, then RACERS requests for it at once over the servers."""
    user = f"capped-{secrets.token_hex(4)}"
    _, device_id = _device_of(servers[0], user)
    for _ in range(MAX_PENDING - 3):
        servers[0].admin("POST", "/admin/requests", {"user": user, "kind": "auth"})

    def ask(n: int) -> int | str:
        server = servers[n % len(servers)]
        return _status_of(lambda: server.admin("POST", "/admin/requests", {"user": user, "kind": "auth"}))

    with ThreadPoolExecutor(RACERS) as pool:
        outcomes = list(pool.map(ask, range(RACERS)))
    pending = servers[0].query(
        "SELECT COUNT(*) FROM request_targets t JOIN requests r ON r.id = t.request"
        " WHERE t.device = ? AND r.state = 'PENDING'",
        (device_id,),
    )
    assert pending[0][0] == MAX_PENDING
    return outcomes


def _device_of(server: IdServer, user: str) -> tuple[DeviceKey, str]:
    device = DeviceKey.generate()
    keys = [{"id": "auth", "csr": software_csr(ec.generate_private_key(ec.SECP256R1()))}]
    body, client = light_request(server, server.link(user, "light"), device=device, keys=keys)
    with client:
        return device, str(client.call("POST", "/v1/activate", body)["device"])


def test_concurrent_ticket_requests_get_exactly_the_cap(id_server: IdServer) -> None:
    outcomes = race_tickets([id_server])
    assert outcomes.count(200) == MAX_OPEN_TICKETS, outcomes
    assert set(outcomes) - {200} == {"429 too_many_tickets"}, outcomes


def test_concurrent_requests_for_one_device_fill_exactly_its_pending_cap(id_server: IdServer) -> None:
    outcomes = race_pending([id_server])
    assert outcomes.count(200) == 3, outcomes
    assert set(outcomes) - {200} == {"429 too_many_pending"}, outcomes
