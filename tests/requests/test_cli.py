"""`vsc requests list/show/approve/reject` as real processes, against the stand-in request server (standin.py)
with real cards bound to it: the answers verify independently; refusals are one line."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from tests.conftest import SO_PIN, USER_PIN, run_vsc
from tests.requests.standin import StandIn
from vsc_provider import api
from vsc_provider.provisioning import wire

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
PDF = b"%PDF-1.4\n%fake but typed\n"


def one_line_error(*args: str) -> str:
    result = run_vsc(*args, check=False)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0].removeprefix("Error: ")


def listed() -> list[dict[str, object]]:
    return list(json.loads(run_vsc("requests", "list", "--json").stdout))


def test_list_show_approve_and_reject_on_two_cards(standin: StandIn, vsc_home: Path) -> None:
    s1, d1 = standin.bind_card("Card one", USER_PIN, SO_PIN, [("sign", "p256", False), ("auth", "rsa2048", False)])
    s2, d2 = standin.bind_card("Card two", USER_PIN, SO_PIN, [("sign", "rsa2048", False)])
    a = standin.make(d1, "sign", "ES256")
    b = standin.make(d1, "auth", "PS256")
    c = standin.make(
        d2,
        "sign",
        "RS512",
        metadata=[
            {"type": "text", "label": "Note", "data": "hello\x1b[2J\u202egoodbye"},
            {"type": "raw", "label": "Blob", "data": wire.b64u(bytes(range(20)))},
            {"type": "image", "label": "Pic", "data": wire.b64u(PNG)},
            {"type": "pdf", "label": "Doc", "data": wire.b64u(PDF)},
        ],
    )
    rows = {r["id"]: r for r in listed()}
    assert set(rows) == {a, b, c}
    assert rows[a]["card"] == s1 and rows[c]["card"] == s2 and rows[b]["kind"] == "auth"
    assert rows[a]["display_hash"] == standin.requests[a].display_hash
    human = run_vsc("requests", "list").stdout
    assert a in human and "Card two" in human

    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    shown = run_vsc("requests", "show", c, env=env).stdout
    assert "Shop asks card 'Card two'" in shown and "sign (RS512, jws)" in shown
    assert "hello\\x1b[2J\\u202egoodbye" in shown and "\x1b" not in shown  # no terminal control from the RP
    assert "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|" in shown
    saved = [Path(line.split("saved to ", 1)[1]) for line in shown.splitlines() if "saved to " in line]
    assert [p.suffix for p in saved] == [".png", ".pdf"]
    assert saved[0].read_bytes() == PNG and saved[1].read_bytes() == PDF
    for folder in (saved[0].parent, saved[0].parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o600

    assert f"approved request {a}" in run_vsc("requests", "approve", a, "--pin", USER_PIN).stdout
    run_vsc("requests", "approve", b, "--pin", USER_PIN)
    assert f"rejected request {c}" in run_vsc("requests", "reject", c).stdout
    by_id = {x["id"]: x for x in standin.answers}
    assert by_id[a]["decision"] == "approve" and by_id[a]["verified"] is True
    assert by_id[b]["decision"] == "approve" and by_id[b]["verified"] is True
    assert by_id[c]["decision"] == "reject" and "signature" not in by_id[c]
    assert by_id[a]["display_hash"] == standin.requests[a].display_hash
    assert listed() == []


def test_a_card_whose_server_cannot_be_reached_leaves_the_others(standin: StandIn, vsc_home: Path) -> None:
    _, d1 = standin.bind_card("Up", USER_PIN, SO_PIN, [("sign", "p256", False)])
    s2, _ = standin.bind_card("Down", USER_PIN, SO_PIN, [("sign", "p256", False)])
    eng = api.engine()
    card = api.find_card(s2)
    eng.set_binding(card.slot_id, {**(card.record.server or {}), "url": "https://127.0.0.1:9"})
    a = standin.make(d1)
    result = run_vsc("requests", "list", "--json")
    assert [r["id"] for r in json.loads(result.stdout)] == [a]
    assert f"card {s2}:" in result.stderr


def test_a_key_that_wants_its_pin_for_each_signature_signs_with_the_approval_pin(
    standin: StandIn, vsc_home: Path
) -> None:
    serial, device = standin.bind_card("Strict", USER_PIN, SO_PIN, [("sign", "p384", True)])
    info = api.list_objects(serial, USER_PIN)
    assert any(o.details.get("always_authenticate") for o in info.objects)
    rid = standin.make(device, "sign", "ES384")
    run_vsc("requests", "approve", rid, "--pin", USER_PIN)
    assert standin.answers[-1]["verified"] is True


def test_refused_requests_are_never_listed_and_the_others_are(standin: StandIn, vsc_home: Path) -> None:
    from jwcrypto import jwk as jose_jwk

    _, device = standin.bind_card("C", USER_PIN, SO_PIN, [("sign", "p256", False)])
    good = standin.make(device)
    intruder = jose_jwk.JWK.generate(kty="RSA", size=2048)
    standin.extra_jws.append(standin.sign_request(standin.claims(device), intruder))
    head, body, sig = standin.sign_request(standin.claims(device)).split(".")
    doc = json.loads(wire.unb64u(body))
    doc["metadata"][0]["data"] = "Pay 9999 EUR to Shop"
    standin.extra_jws.append(f"{head}.{wire.b64u(wire.canonical(doc))}.{sig}")
    result = run_vsc("requests", "list", "--json")
    assert [r["id"] for r in json.loads(result.stdout)] == [good]
    assert "2 request(s) refused" in result.stderr
    debug = run_vsc("requests", "list", env={"VSC_DEBUG": "1"}).stderr
    assert "not the server's protocol key" in debug and "does not verify" in debug


def test_one_line_errors(standin: StandIn, vsc_home: Path) -> None:
    assert one_line_error("requests", "approve", "nope", "--pin", USER_PIN) == "no pending request nope"
    _, device = standin.bind_card("C", USER_PIN, SO_PIN, [("sign", "p256", False)])
    rid = standin.make(device)
    assert one_line_error("requests", "show", "nope") == "no pending request nope"
    # wrong PIN: the card counts it and says how many tries are left
    message = one_line_error("requests", "approve", rid, "--pin", "000000")
    assert message.startswith("wrong PIN (") and "tries left" in message, message
    # the server refuses the answer
    standin.refuse_answer = (409, "not_pending")
    message = one_line_error("requests", "approve", rid, "--pin", USER_PIN)
    assert message == f"request {rid} is no longer pending (answered, expired or cancelled)"
    standin.refuse_answer = (400, "bad_result")
    assert "bad_result, HTTP 400" in one_line_error("requests", "reject", rid)
    standin.refuse_answer = None
    # expired: a server that still lists it is not believed
    standin.serve_expired = True
    late = standin.add(standin.claims(device, exp=int(time.time()) - 5))
    assert one_line_error("requests", "approve", late, "--pin", USER_PIN) == f"request {late} expired"
    assert standin.answers == []


def test_no_bound_card_lists_nothing(vsc_home: Path, card: str) -> None:
    assert run_vsc("requests", "list").stdout.strip() == "no pending requests"
    assert listed() == []


def test_setup_agent_writes_and_removes_the_user_unit(vsc_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": ""}
    unit = home / ".config" / "systemd" / "user" / "vsc-agent.service"
    out = run_vsc("setup", "agent", env=env).stdout
    assert f"wrote {unit}" in out
    text = unit.read_text()
    assert "-m vsc_provider.cli agent" in text and f"Environment=VSC_HOME={os.environ['VSC_HOME']}" in text
    assert "WantedBy=default.target" in text
    assert "nothing to change" in run_vsc("setup", "agent", env=env).stdout
    assert f"removed {unit}" in run_vsc("setup", "agent", "--undo", env=env).stdout
    assert not unit.exists()
    assert "nothing to change" in run_vsc("setup", "agent", "--undo", env=env).stdout


def test_the_servers_key_is_kept_in_the_binding_and_fetched_again_when_the_server_changes_it(
    standin: StandIn, vsc_home: Path
) -> None:
    from jwcrypto import jwk as jose_jwk

    serial, device = standin.bind_card("Keyed", USER_PIN, SO_PIN, [("sign", "p256", False)])
    first = standin.make(device)
    assert [r["id"] for r in listed()] == [first]
    kept = (api.find_card(serial).record.server or {})["server_jwks"]
    assert kept == standin.jwks()
    standin.protocol_key = jose_jwk.JWK.generate(kty="RSA", size=2048)
    second = standin.make(device)
    # the first verified under the key kept then; the second names a new key, which is fetched and kept
    assert {r["id"] for r in listed()} == {first, second}
    # from now on the old key is gone: what it signed is refused
    assert {r["id"] for r in listed()} == {second}
    api.engine().refresh(force=True)
    assert (api.find_card(serial).record.server or {})["server_jwks"] == standin.jwks()
