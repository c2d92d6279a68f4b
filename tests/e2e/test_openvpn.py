"""OpenVPN (pkcs11-helper): --show-pkcs11-ids lists the card's certificates, and a real TLS handshake between an
OpenVPN server and client on 127.0.0.1 (--dev null) succeeds with the client key on the card, the PIN given
through the management interface."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest
from e2e_support import USER_PIN, CardKey, E2ECard, free_port, require_tool, run


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool("openvpn", "openvpn")


def pkcs11_ids(card: E2ECard) -> dict[str, str]:
    """DN -> serialized id, as `openvpn --show-pkcs11-ids` prints them."""
    out = run("openvpn --show-pkcs11-ids", ["openvpn", "--show-pkcs11-ids", card.module], env=card.env).stdout
    found = dict(re.findall(r"DN:\s+(.+?)\n.*?Serialized id:\s+(\S+)", out, re.S))
    assert found, f"openvpn --show-pkcs11-ids listed no certificates:\n{out}"
    return found


def test_show_pkcs11_ids(e2e_card: E2ECard) -> None:
    ids = pkcs11_ids(e2e_card)
    for k in e2e_card.keys:
        dn = f"O=vsc e2e, CN={k.subject_cn}"
        assert dn in ids, f"openvpn --show-pkcs11-ids lacks {dn}: {ids}"
        assert ids[dn].upper().endswith(k.id.upper()), f"serialized id {ids[dn]} does not end in CKA_ID {k.id}"


def answer_management(port: int, pin: str, timeout: float = 60) -> list[str]:
    """Release the hold, give the token PIN when asked, return the lines seen up to CONNECTED,SUCCESS."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    seen: list[str] = []
    with sock:
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        reader = sock.makefile("rb")
        sock.sendall(b"state on\nhold release\n")
        while time.monotonic() < deadline:
            raw = reader.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
            seen.append(line)
            if line.startswith(">PASSWORD:Need '"):
                name = line.split("'")[1]
                sock.sendall(f'password "{name}" {pin}\n'.encode())
            if "CONNECTED,SUCCESS" in line:
                sock.sendall(b"signal SIGTERM\n")
                return seen
    raise AssertionError("OpenVPN client never reached CONNECTED,SUCCESS; management said:\n" + "\n".join(seen))


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_handshake_with_card_key(e2e_card: E2ECard, background: Any, key: str) -> None:
    k: CardKey = getattr(e2e_card, key)
    serialized = pkcs11_ids(e2e_card)[f"O=vsc e2e, CN={k.subject_cn}"]
    port, mgmt = free_port(), free_port()
    server = background(
        "openvpn server",
        ["openvpn", "--dev", "null", "--local", "127.0.0.1", "--lport", str(port), "--proto", "tcp-server",
         "--tls-server", "--ca", str(e2e_card.ca_path), "--cert", str(e2e_card.server_cert_path),
         "--key", str(e2e_card.server_key_path), "--dh", "none", "--verb", "3", "--ping-exit", "60",
         "--hand-window", "30"],
    )  # fmt: skip
    server.wait_for_text("Listening for incoming TCP connection")
    client = background(
        "openvpn client",
        ["openvpn", "--dev", "null", "--remote", "127.0.0.1", str(port), "--proto", "tcp-client", "--nobind",
         "--tls-client", "--ca", str(e2e_card.ca_path), "--remote-cert-tls", "server",
         "--pkcs11-providers", e2e_card.module, "--pkcs11-id", serialized,
         "--management", "127.0.0.1", str(mgmt), "--management-query-passwords", "--management-hold",
         "--verb", "3", "--connect-retry-max", "1", "--hand-window", "30", "--ping-exit", "60"],
        env=e2e_card.env,
    )  # fmt: skip
    try:
        seen = answer_management(mgmt, USER_PIN)
    except (AssertionError, OSError) as exc:
        raise AssertionError(
            f"{exc}\n--- client log ---\n{client.output()}\n--- server log ---\n{server.output()}"
        ) from None
    assert any("password entered" in ln for ln in seen), f"OpenVPN never asked for the card PIN: {seen}"
    server.wait_for_text("Peer Connection Initiated", timeout=20)
    log = server.output()
    assert f"VERIFY OK: depth=0, O=vsc e2e, CN={k.subject_cn}" in log, (
        f"OpenVPN server did not verify the card cert:\n{log}"
    )
