"""`vsc activate` killed after the server used the code: the same link on the same machine finishes the
activation (same device key, same card keys); another machine with that link is refused and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import (  # noqa: F401 - fixture
    _activating_rows,
    activate,
    cards,
    certs_of,
    inproc,
    sign_with,
    verify,
)
from tests.server.idserver import IdServer
from vsc_provider import api
from vsc_provider.ck import constants as C

CRASHED = 17

# `vsc activate` whose process dies (os._exit: no clean-up runs) once the server has answered
KILLED_ACTIVATION = f"""
import os, sys
from vsc_provider import api
from vsc_provider.provisioning import card_install

where = sys.argv[1]
if where == "before_install":
    card_install.install = lambda *args, **kwargs: os._exit({CRASHED})
else:  # in the middle of the install: after the first certificate and an imported key
    store = api.store_certificate
    stored = []

    def die_at_the_second(*args, **kwargs):
        stored.append(1)
        if len(stored) == 2:
            os._exit({CRASHED})
        return store(*args, **kwargs)

    api.store_certificate = die_at_the_second
from vsc_provider.cli import main

main(sys.argv[2:])
"""


def devices_of(server: IdServer, user: str) -> list[tuple[Any, ...]]:
    return [(d["id"], d["state"], d["confirmed"] is not None) for d in server.devices() if d["user"] == user]


@pytest.mark.parametrize(
    ("profile", "where", "certificates"),
    [("default", "before_install", 2), ("escrow", "mid_install", 2), ("online", "before_install", 1)],
)
def test_activation_killed_after_the_server_answered_resumes_with_the_same_link(
    id_server: IdServer,
    vsc_home: Path,
    tmp_path: Path,
    inproc: None,  # noqa: F811
    profile: str,
    where: str,
    certificates: int,
) -> None:
    user = f"resume-{profile}"
    link = id_server.link(user, profile)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_ACTIVATION, where, "activate", link, "--pin", USER_PIN],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert killed.returncode == CRASHED, killed.stderr
    used = devices_of(id_server, user)
    assert [(state, confirmed) for _, state, confirmed in used] == [("active", False)]  # the code is used
    assert cards() == [] and _activating_rows(vsc_home / "store.sqlite") == 1  # hidden, not lost

    # another machine (its own store and device key) with the same link: refused, nothing changes
    other = run_vsc("activate", link, "--pin", USER_PIN, check=False, env={"VSC_HOME": str(tmp_path / "other")})
    assert other.returncode != 0 and "unknown_code" in other.stderr
    assert devices_of(id_server, user) == used

    # a wrong PIN does not resume and keeps the card for the right one
    wrong = run_vsc("activate", link, "--pin", "739164", check=False)
    assert wrong.returncode != 0 and "PIN" in wrong.stderr
    assert _activating_rows(vsc_home / "store.sqlite") == 1

    info = activate(link)  # the same link here: resumed
    assert [c["serial"] for c in cards()] == [info["serial"]]
    assert _activating_rows(vsc_home / "store.sqlite") == 0
    assert devices_of(id_server, user) == [(used[0][0], "active", True)]  # the same device, now confirmed
    certs = certs_of(info["serial"])
    assert len(certs) == certificates
    ca = x509.load_pem_x509_certificate((id_server.data / "ca.pem").read_bytes())
    card = api.find_card(info["serial"])
    signers = {
        o.attrs[C.CKA_ID].hex()
        for o in card.objects.values()
        if o.klass == C.CKO_PUBLIC_KEY and o.attrs.get(C.CKA_LABEL, b"").decode().endswith(("auth", "sign"))
    }
    for key_id, cert in certs.items():
        cert.verify_directly_issued_by(ca)
        if key_id in signers:
            verify(cert, sign_with(info["serial"], key_id, b"resumed"), b"resumed")  # online: PIN via the server
    kinds = [o["kind"] for o in next(c for c in cards() if c["serial"] == info["serial"])["objects"]]
    assert kinds.count("cert") == certificates  # nothing twice from the half-done install

    # confirmed: the link is spent for good
    again = run_vsc("activate", link, "--pin", USER_PIN, check=False)
    assert again.returncode != 0 and "unknown_code" in again.stderr
    assert len(cards()) == 1 and devices_of(id_server, user) == [(used[0][0], "active", True)]
