"""A server-checked PIN used through the real PKCS#11 module in another process: the module's C_Initialize
installs the online PIN check (token/online.py), which loads its HTTP client only at the first such PIN."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import USER_PIN
from tests.provisioning.test_activation import activate, cards
from tests.provisioning.test_online_pin import failures
from tests.server.idserver import IdServer

HOST = r"""
import json, sys
import pkcs11
lib = pkcs11.lib(sys.argv[1])
(token,) = [slot.get_token() for slot in lib.get_slots(token_present=True)]  # the one card in VSC_HOME
assert token.serial.decode().strip() == sys.argv[2], token.serial
report = {"httpx_at_start": "httpx" in sys.modules, "logins": []}
for pin in sys.argv[3:]:
    try:
        with token.open(user_pin=pin) as session:
            report["logins"].append("ok")
    except pkcs11.PKCS11Error as exc:
        report["logins"].append(type(exc).__name__)
print(json.dumps(report))
"""


def host(module_path: str, serial: str, *pins: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", HOST, module_path, serial, *pins], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_a_host_process_logs_in_through_the_server_and_records_its_renew_flag(
    id_server: IdServer, vsc_home: Path, module_path: str
) -> None:
    serial = activate(id_server.link("mona", "online"))["serial"]
    assert host(module_path, serial, "000000") == {"httpx_at_start": False, "logins": ["PinIncorrect"]}
    assert failures(id_server, "mona") == 1  # the module asked the server, which counted the wrong PIN
    device = next(d for d in id_server.devices() if d["user"] == "mona")
    id_server.admin("POST", f"/admin/devices/{device['id']}/renew")
    assert host(module_path, serial, USER_PIN)["logins"] == ["ok"]
    assert failures(id_server, "mona") == 0
    # the /v1/pin answer's renew flag, recorded on the card by the module's engine
    assert next(c for c in cards() if c["serial"] == serial)["renewal_requested"] is True
