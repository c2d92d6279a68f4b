"""The previous TLS key's grace period in the data directory: recorded at the switch, its files removed only
once a recorded grace period is over (never a previous key of an older switch that recorded none)."""

from __future__ import annotations

import os
import time
from pathlib import Path

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
