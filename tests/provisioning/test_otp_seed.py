"""An OATH seed at activation, on the device's side: an activation killed after the card stored the seed
resumes with one OTP key (the half-done install's copy removed), whose codes the server accepts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import _activating_rows, activate, cards
from tests.server.idserver import IdServer
from vsc_provider import api

CRASHED = 17

# `vsc activate` whose process dies (os._exit: no clean-up runs) right after the card stored the OTP seed
KILLED_AFTER_THE_SEED = f"""
import os, sys
from vsc_provider.provisioning import otp_seed

stored = otp_seed.install


def install_then_die(*args, **kwargs):
    stored(*args, **kwargs)
    os._exit({CRASHED})


otp_seed.install = install_then_die
from vsc_provider.cli import main

main(sys.argv[1:])
"""


def test_an_activation_killed_after_storing_the_seed_resumes_with_one_otp_key(
    id_server: IdServer, vsc_home: Path
) -> None:
    user = "resume-otp"
    link = id_server.admin("POST", "/admin/activations", {"user": user, "profile": "light", "otp": "hotp"})["link"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_THE_SEED, "activate", link, "--pin", USER_PIN],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert killed.returncode == CRASHED, killed.stderr
    assert cards() == [] and _activating_rows(vsc_home / "store.sqlite") == 1
    serial = activate(link)["serial"]  # the same link: resumed, the server's answer (and seed) replayed
    listed = json.loads(run_vsc("otp", "list", "--card", serial, "--json").stdout)
    assert [(o["account"], o["type"], o["counter"]) for o in listed] == [(user, "hotp", 0)]
    assert (api.find_card(serial).record.server or {})["otp"] == listed[0]["name"]
    code = json.loads(run_vsc("otp", "code", "--card", serial, user, "--pin", USER_PIN, "--json").stdout)["code"]
    made = run_vsc("server", "rp", "create", "--data", str(id_server.data), "--name", f"otp {time.time_ns()}", "--json")
    auth = {"Authorization": f"Bearer {json.loads(made.stdout)['api_key']}"}
    with id_server.client() as c:
        answer = c.call("POST", "/v1/otp/verify", {"user": user, "code": code}, headers=auth)
    assert (answer["valid"], answer["counter"]) == (True, 0)
