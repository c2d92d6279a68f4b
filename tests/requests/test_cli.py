"""`vsc requests list/show/approve/reject` as real processes with real cards activated from the real identity
server (the relying party's poll says verified, and so does `cryptography`); refusals are one line.

What the real server never does (sign with another key, send tampered documents, refuse a good answer, list
an expired request, change its protocol key, issue keys that want a PIN per signature) is played by the
stand-in (standin.py)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from tests.conftest import SO_PIN, USER_PIN, run_vsc
from tests.provisioning.test_activation import certs_of
from tests.requests.real import activated, assert_approved_jws, create, result, rp_call, sign_request
from tests.requests.standin import StandIn
from tests.server.idserver import IdServer
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


def test_list_show_approve_and_reject_on_two_cards(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    u1, s1 = activated(id_server)
    u2, s2 = activated(id_server)
    a = sign_request(id_server, rp, u1)
    b = create(id_server, rp, u1, kind="auth", alg="PS256")["id"]
    c = create(
        id_server,
        rp,
        u2,
        kind="sign",
        alg="ES256",
        data=wire.b64u(b"anything"),
        metadata=[
            {"type": "text", "label": "Note", "data": "hello\x1b[2J\u202egoodbye"},
            {"type": "raw", "label": "Blob", "data": wire.b64u(bytes(range(20)))},
            {"type": "image", "label": "Pic", "data": wire.b64u(PNG)},
            {"type": "pdf", "label": "Doc", "data": wire.b64u(PDF)},
        ],
    )["id"]
    rows = {r["id"]: r for r in listed()}
    assert set(rows) == {a, b, c}
    assert rows[a]["card"] == s1 and rows[c]["card"] == s2 and rows[b]["kind"] == "auth"
    assert rows[a]["rp"] == "ACME"
    human = run_vsc("requests", "list").stdout
    assert a in human and u2 in human

    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    shown = run_vsc("requests", "show", c, env=env).stdout
    assert f"ACME asks card '{u2}'" in shown and "sign (ES256, jws)" in shown
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
    assert_approved_jws(id_server, rp, a)
    doc = result(id_server, rp, b)
    assert doc["state"] == "APPROVED" and doc["result"]["verified"] is True
    rejected = result(id_server, rp, c)
    assert rejected["state"] == "REJECTED" and "signature" not in rejected.get("result", {})
    assert listed() == []


def test_a_card_whose_server_cannot_be_reached_leaves_the_others(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    u1, _ = activated(id_server)
    _, s2 = activated(id_server)
    eng = api.engine()
    card = api.find_card(s2)
    eng.set_binding(card.slot_id, {**(card.record.server or {}), "url": "https://127.0.0.1:9"})
    a = sign_request(id_server, rp, u1)
    out = run_vsc("requests", "list", "--json")
    assert [r["id"] for r in json.loads(out.stdout)] == [a]
    assert f"card {s2}:" in out.stderr


def test_an_approval_with_the_pin_does_the_renewal_the_server_asked_for(
    id_server: IdServer, rp: str, vsc_home: Path
) -> None:
    user, serial = activated(id_server)
    device = next(d for d in id_server.devices() if d["user"] == user)
    before = {c.serial_number for c in certs_of(serial).values()}
    id_server.admin("POST", f"/admin/devices/{device['id']}/renew")
    assert json.loads(run_vsc("identity", "status", serial).stdout)["renew"] is True  # recorded, no PIN
    rid = sign_request(id_server, rp, user)
    run_vsc("requests", "approve", rid, "--pin", USER_PIN)
    assert_approved_jws(id_server, rp, rid)  # signed with the key the request named, then renewed
    info = api.list_cards()
    assert not next(c for c in info if c.serial == serial).renewal_requested
    after = {c.serial_number for c in certs_of(serial).values()}
    assert after and not after & before
    assert json.loads(run_vsc("identity", "status", serial).stdout)["renew"] is False


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


def test_one_line_errors(id_server: IdServer, rp: str, vsc_home: Path) -> None:
    assert one_line_error("requests", "approve", "nope", "--pin", USER_PIN) == "no pending request nope"
    user, _ = activated(id_server)
    rid = sign_request(id_server, rp, user)
    assert one_line_error("requests", "show", "nope") == "no pending request nope"
    # wrong PIN: the card counts it and says how many tries are left
    message = one_line_error("requests", "approve", rid, "--pin", "000000")
    assert message.startswith("wrong PIN (") and "tries left" in message, message
    # cancelled by the relying party in the meantime: gone
    rp_call(id_server, rp, "POST", f"/rp/v1/requests/{rid}/cancel")
    assert one_line_error("requests", "approve", rid, "--pin", USER_PIN) == f"no pending request {rid}"
    assert result(id_server, rp, rid)["state"] == "CANCELLED"


def test_one_line_errors_when_the_server_misbehaves(standin: StandIn, vsc_home: Path) -> None:
    """The stand-in refuses good answers and lists an expired request, which the real server never does."""
    _, device = standin.bind_card("C", USER_PIN, SO_PIN, [("sign", "p256", False)])
    rid = standin.make(device)
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


def test_a_malformed_renewal_answer_leaves_the_approval_and_card_show_successful(
    standin: StandIn, vsc_home: Path
) -> None:
    """The renewal done after an approval (and by `card show --pin`) gets an answer naming a key it never
    asked for: one warning line, the approval stands, the card keeps its keys and the flag for next time."""
    serial, device = standin.bind_card("Renewing", USER_PIN, SO_PIN, [("sign", "p256", False)])
    standin.renew_answer = {"keys": [{"id": "never-asked", "format": "certificate"}]}
    api.engine().mark_renewal(api.find_card(serial).slot_id, True)
    objects = sorted((o.kind, o.id) for o in api.list_objects(serial, USER_PIN).objects)

    def one_warning(err: str) -> None:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "renewal" in lines[0] and "Traceback" not in err, err
        assert USER_PIN not in err

    rid = standin.make(device)
    approved = run_vsc("requests", "approve", rid, "--pin", USER_PIN)
    assert standin.answers[-1]["verified"] is True and standin.renewals == 1
    one_warning(approved.stderr)
    shown = run_vsc("card", "show", serial, "--pin", USER_PIN)
    assert "Renewing" in shown.stdout and standin.renewals == 2
    one_warning(shown.stderr)
    assert sorted((o.kind, o.id) for o in api.list_objects(serial, USER_PIN).objects) == objects
    assert next(c for c in api.list_cards() if c.serial == serial).renewal_requested
