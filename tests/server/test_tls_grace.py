"""The previous TLS key's grace period in the data directory: recorded at the switch, its files removed only
once a recorded grace period is over (never a previous key of an older switch that recorded none); a grace
period that is not a finite number of days is refused, and a record that is not one a switch writes is read
as none (the server still answers /v1/server)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import run_vsc
from tests.server.idserver import start_server
from vsc_provider.provisioning.http import PinnedClient
from vsc_provider.server import tls
from vsc_provider.server.ca import Authority


def _rotated(data: Path, grace_days: float) -> tuple[str, str]:
    data.mkdir(mode=0o700)
    authority = Authority.load_or_create(data, ["127.0.0.1"])
    tls.announce(data, authority.key, authority.cert)
    return authority.tls_pin, tls.switch(data, grace_days)


def test_the_switch_records_when_the_previous_key_stops_being_accepted(tmp_path: Path) -> None:
    first, second = _rotated(tmp_path / "data", 30)
    until = tls.retired(tmp_path / "data")[first]
    assert second != first and abs(until - (time.time() + 30 * 86400)) < 60
    tls.forget_previous(tmp_path / "data", time.time())
    assert tls.pin_of(tmp_path / "data" / "tls-previous.pem") == first  # kept during its grace period
    tls.forget_previous(tmp_path / "data", until)
    assert (
        not (tmp_path / "data" / "tls-previous.pem").exists() and not (tmp_path / "data" / "tls-previous.key").exists()
    )
    assert tls.retired(tmp_path / "data") == {first: until}  # still announced as retired


def test_a_previous_key_without_a_recorded_grace_period_is_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _rotated(data, 0)
    os.remove(data / tls.ROTATION)  # as an older version's switch left it
    tls.forget_previous(data, time.time() + 10**9)
    assert (data / "tls-previous.pem").exists()


@pytest.mark.parametrize("days", ["inf", "nan", "1e303", "-1", "3651", "-inf"])
def test_a_grace_period_that_is_not_a_number_of_days_is_refused(days: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    Authority.load_or_create(data, ["127.0.0.1"])
    run_vsc("server", "rotate-tls", "--data", str(data))
    refused = run_vsc("server", "rotate-tls", "--data", str(data), "--switch", "--grace-days", days, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "3650" in errors[0], refused.stderr
    assert not (data / tls.ROTATION).exists() and (data / "tls-next.pem").exists()  # nothing switched


@pytest.mark.parametrize(
    "record",
    ['{"retire": {"pin": Infinity}}', '{"retire": {"pin": 1e303}}', '{"retire": ["pin"]}', "{not json", "[]"],
)
def test_a_rotation_record_edited_by_hand_is_read_as_none(record: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        (data / tls.ROTATION).write_text(record)
        for _ in range(2):
            with PinnedClient(server.url, server.pin) as client:
                info = client.call("GET", "/v1/server")
            assert "announcement" in info["tls"]
    finally:
        server.stop()
    log = (tmp_path / "data.log").read_text()
    assert "Traceback" not in log and log.count(tls.ROTATION) == 1, log
    assert json.loads(json.dumps(tls.retired(data))) == {}


@pytest.mark.parametrize("broken", ["missing", "another key"])
def test_a_switch_without_the_next_key_changes_nothing(broken: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    authority = Authority.load_or_create(data, ["127.0.0.1"])
    tls.announce(data, authority.key, authority.cert)
    if broken == "missing":
        (data / "tls-next.key").unlink()
    else:  # a key of another announcement (tls-next.key replaced by hand)
        tls.write_leaf(data, "other", authority.key, authority.cert, ["127.0.0.1"])
        os.replace(data / "other.key", data / "tls-next.key")
    files = {p.name: p.read_bytes() for p in data.iterdir()}
    refused = run_vsc("server", "rotate-tls", "--data", str(data), "--switch", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "tls-next.key" in refused.stderr and "nothing was switched" in refused.stderr, refused.stderr
    assert {p.name: p.read_bytes() for p in data.iterdir()} == files  # no record written, no file moved
    assert tls.pin_of(data / "tls.pem") == authority.tls_pin
