"""Every `vsc server` command takes --database (VSC_SERVER_DATABASE): given one, an admin command runs in its
own process on that database with a copy of the data directory (no server need run on this machine), and
what it does reaches the instances: a link it made is used on one, a request it made is pushed by one."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import time
from pathlib import Path
from typing import Any

import click
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import run_vsc
from tests.relay.relay_process import Listener, start_relay
from tests.server.idserver import IdServer, light_request, software_csr, start_server
from tests.server.request_device import KeyDevice, PushReader, Receiver
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.server.cli import server as server_group


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("command", _commands(server_group), ids=" ".join)
def test_every_server_command_takes_database(command: tuple[str, ...]) -> None:
    shown = run_vsc("server", *command, "--help").stdout
    assert "--database" in shown and "postgresql://" in shown


def test_the_commands_are_the_admin_ones() -> None:
    names = {" ".join(c) for c in _commands(server_group)}
    assert {"activation create", "device list", "device show", "device action", "request create"} <= names
    assert {"request show", "request cancel", "rp create", "trust", "rotate-tls", "run"} <= names


@pytest.mark.parametrize("command", [("device", "list"), ("run",), ("activation", "create", "--user", "x")])
def test_a_database_that_is_not_a_postgresql_url_is_a_usage_error(command: tuple[str, ...], tmp_path: Path) -> None:
    result = run_vsc("server", *command, "--data", str(tmp_path), "--database", "mysql://u@h/db", check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "postgresql://" in errors[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "server.sqlite").exists()


def _activate(server: IdServer, link: str, key: DeviceKey) -> str:
    body, client = light_request(server, link, device=key, keys=[{"id": "auth", "csr": software_csr(_p256())}])
    with client:
        return str(client.call("POST", "/v1/activate", body)["device"])


def _p256() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


def _admin_args(server: IdServer, data: Path | None = None) -> list[str]:
    """--data (the server's own, or an admin's copy) and, on PostgreSQL, --database: in this process."""
    args = ["--data", str(data or server.data)]
    return [*args, "--database", server.database] if server.database else args


def test_device_list_shows_a_device_activated_through_the_server(id_server: IdServer) -> None:
    """On SQLite through the running server, on PostgreSQL in the command's own process."""
    device = _activate(id_server, id_server.link("listed", "light"), DeviceKey.generate())
    listed = json.loads(run_vsc("server", "device", "list", *_admin_args(id_server)).stdout)
    assert device in {d["id"] for d in listed}
    shown = json.loads(run_vsc("server", "device", "show", *_admin_args(id_server), device).stdout)
    assert shown["user"] == "listed"
    missing = run_vsc("server", "device", "show", *_admin_args(id_server), "nope", check=False)
    assert missing.returncode == 1 and "unknown_device" in missing.stderr and "Traceback" not in missing.stderr


def test_admin_commands_on_postgresql_without_a_running_server(postgres: Any, tmp_path: Path) -> None:
    database = postgres.database()
    first = start_server(tmp_path / "a", database=database)
    port = first.port
    first.stop()
    copy = tmp_path / "admin-copy"  # the admin's machine: a copy of the data directory, no server
    shutil.copytree(tmp_path / "a", copy)
    admin = ["--data", str(copy), "--database", database]

    made = json.loads(
        run_vsc("server", "activation", "create", *admin, "--user", "bob", "--profile", "light", "--json").stdout
    )
    assert made["user"] == "bob" and made["link"].startswith("personal://activate?")

    server = start_server(tmp_path / "a", database=database, port=port)
    reader = None
    receiver = Receiver()
    try:
        key = DeviceKey.generate()
        device = _activate(server, made["link"], key)
        listed = json.loads(run_vsc("server", "device", "list", *admin).stdout)
        assert [d["id"] for d in listed if d["user"] == "bob"] == [device]

        reader = PushReader(KeyDevice(server, key, device))
        assert reader.response.status_code == 200
        time.sleep(0.3)  # the stream is subscribed on the instance
        make = ("request", "create", *admin, "--device", device, "--kind", "auth", "--callback", receiver.url + "/cb")
        request = json.loads(run_vsc("server", *make, "--json").stdout)
        _, token = reader.next("request", timeout=10)  # from the command's NOTIFY, through the instance
        claims = json.loads(wire.unb64u(token.split(".")[1]))
        assert claims["id"] == request["id"] and claims["device"] == device
        assert (
            run_vsc("server", "request", "cancel", *admin, request["id"]).stdout.strip()
            == f"{request['id']}: CANCELLED"
        )
        assert reader.next("gone", timeout=10)[1] == request["id"]
        # the command posted the cancellation's callback before it returned
        assert [path for path, _ in receiver.posts] == ["/cb"]
        posted = json.loads(wire.unb64u(receiver.posts[0][1]["result"].split(".")[1]))
        assert (posted["id"], posted["state"]) == (request["id"], "CANCELLED")
        shown = json.loads(run_vsc("server", "request", "show", *admin, request["id"], "--json").stdout)
        assert shown["state"] == "CANCELLED"
    finally:
        if reader is not None:
            reader.close()
        receiver.shutdown()
        server.stop()

    # no server runs now: VSC_SERVER_DATABASE alone makes the command act on the database
    by_env = run_vsc(
        "server", "device", "action", "--data", str(copy), device, "delete", env={"VSC_SERVER_DATABASE": database}
    )
    assert by_env.stdout.strip() == f"delete: {device}"
    listed = json.loads(run_vsc("server", "device", "list", *admin).stdout)
    assert [d["state"] for d in listed if d["id"] == device] == ["deleted"]


def test_a_data_directory_of_another_server_is_refused(postgres: Any, tmp_path: Path) -> None:
    database, other = postgres.database(), postgres.database()
    for name, url in (("a", database), ("b", other)):
        start_server(tmp_path / name, database=url).stop()
    result = run_vsc(
        "server",
        "activation",
        "create",
        "--data",
        str(tmp_path / "b"),
        "--database",
        database,
        "--user",
        "x",
        check=False,
    )
    assert result.returncode == 1 and "does not belong to this database" in result.stderr
    assert "Traceback" not in result.stderr
    rotated = run_vsc("server", "rotate-tls", "--data", str(tmp_path / "b"), "--database", database, check=False)
    assert rotated.returncode == 1 and not (tmp_path / "b" / "tls-next.pem").exists()


def test_a_link_made_with_a_copy_from_before_a_tls_switch_carries_the_pin_served(postgres: Any, tmp_path: Path) -> None:
    """The instances record the pin they present at their start: a link made on the database with an admin
    copy taken before `rotate-tls --switch` carries the new pin, and the card activates."""
    database = postgres.database()
    live, copy = tmp_path / "live", tmp_path / "admin-copy"
    start_server(live, database=database).stop()
    shutil.copytree(live, copy)
    run_vsc("server", "rotate-tls", "--data", str(live))
    run_vsc("server", "rotate-tls", "--data", str(live), "--switch")
    server = start_server(live, database=database)
    try:
        stale_pin = json.loads((copy / "server.json").read_text())["pin"]
        assert server.pin != stale_pin  # the copy's tls.pem is the key the servers no longer present
        admin = ["--data", str(copy), "--database", database]
        made = json.loads(run_vsc("server", "activation", "create", *admin, "--user", "r", "--profile", "light",
                                  "--json").stdout)  # fmt: skip
        assert wire.ActivationLink.parse(made["link"]).pin == server.pin
        device = _activate(server, made["link"], DeviceKey.generate())
        assert [d["id"] for d in server.devices() if d["user"] == "r"] == [device]
    finally:
        server.stop()


def test_a_request_made_in_process_notifies_the_push_relay_the_servers_use(postgres: Any, tmp_path: Path) -> None:
    """`run --push-relay` records the relay in the database: a request made by an admin command reaches a
    device that only listens on the relay, through the copy's relay-secret (which must be the servers')."""
    database, token = postgres.database(), {"VSC_RELAY_POST_TOKEN": "post-token-of-the-test-relay"}
    relay = start_relay(tmp_path / "relay", env=token)
    server = start_server(tmp_path / "a", database=database, env=token, args=("--push-relay", relay.url))
    try:
        key = DeviceKey.generate()
        device = _activate(server, server.link("relayed", "light"), key)
        copy = tmp_path / "admin-copy"
        shutil.copytree(server.data, copy)
        admin = ["--data", str(copy), "--database", database]
        secret = (copy / "relay-secret").read_bytes()
        listener = Listener(relay.url, wire.b64u(hmac.new(secret, device.encode(), hashlib.sha256).digest()))
        try:
            relay.wait_listeners(1)
            run_vsc("server", "request", "create", *admin, "--device", device, "--kind", "auth", env=token)
            assert json.loads(key.open(listener.next(timeout=10)))["waiting"] == 1
        finally:
            listener.close()
        (copy / "relay-secret").write_bytes(b"\0" * 32)  # not the servers' topic key
        refused = run_vsc("server", "device", "list", *admin, check=False)
        assert refused.returncode == 1 and "relay-secret" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        server.stop()
        relay.stop()
