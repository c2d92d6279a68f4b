"""`vsc open personal://activate?...` activates a card as `vsc activate` does, against the real server; a
request link naming that server is then accepted."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import USER_PIN, run_vsc
from tests.server.idserver import IdServer


def test_activation_link_through_vsc_open(id_server: IdServer, vsc_home: Path) -> None:
    link = id_server.link("olivia")
    out = run_vsc("open", link, "--pin", USER_PIN, "--label", "Olivia").stdout
    assert out.startswith("activated card 'Olivia' serial ") and f"(server {id_server.url})" in out
    listed = json.loads(run_vsc("card", "list", "--json").stdout)
    assert [(c["label"], c["server"]) for c in listed] == [("Olivia", id_server.url)]
    # The same link again: the server has used the code, the error is one line.
    again = run_vsc("open", link, "--pin", USER_PIN, check=False)
    assert again.returncode != 0 and "unknown_code" in again.stderr and "Traceback" not in again.stderr
    # A request link for this card's server reaches the agent's page.
    (vsc_home / "agent.json").write_text(json.dumps({"pid": os.getpid(), "url": "http://127.0.0.1:1/t/"}))
    request = run_vsc("open", f"personal://request?id=r9&server={id_server.url}", env={"DISPLAY": ""}).stdout
    assert request.strip() == "http://127.0.0.1:1/t/requests/r9"
