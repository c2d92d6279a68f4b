"""The last step of `vsc demo`: a web shop (a relying party) asks the user's card to sign an order, with a
text and an image to show; the agent gets it pushed, the user approves on the agent's approval page with
the PIN, and the shop gets a result the server verified, which the demo verifies once more itself."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import time
import zlib
from html import unescape
from pathlib import Path
from typing import Any

import httpx

from vsc_provider import config
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.http import PinnedClient

ORDER = b'{"order": 1042, "amount": "10.00 EUR", "to": "Demo shop"}'
TEXT = "Pay 10.00 EUR to Demo shop for order 1042?"


def png(width: int = 96, height: int = 32, rgb: tuple[int, int, int] = (31, 95, 168)) -> bytes:
    """A plain PNG of one colour (the shop's "logo"), written with zlib."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _wait(what: str, probe: Any, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit(f"\n{what} did not happen within {seconds:.0f} s")


def sign_request(cmd: list[str], data: Path, pin: str, work: Path) -> str:
    """Run the step; one line saying what the shop got."""
    created = subprocess.run(
        [*cmd, "server", "rp", "create", "--data", str(data), "--name", "Demo shop", "--json"],
        capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    api_key = json.loads(created.stdout)["api_key"]
    agent_log = (work / "agent.log").open("wb")
    agent = subprocess.Popen([*cmd, "agent"], stdin=subprocess.DEVNULL, stdout=agent_log, stderr=subprocess.STDOUT)
    try:
        page = _wait("the agent's start", lambda: _agent_url(agent))
        where = json.loads((data / "server.json").read_text())
        shop = {"Authorization": f"Bearer {api_key}"}
        body = {
            "user": "demo",
            "kind": "sign",
            "data": wire.b64u(ORDER),
            "format": "jws",
            "metadata": [
                {"type": "text", "label": "Order", "data": TEXT},
                {"type": "image", "label": "Demo shop", "data": wire.b64u(png())},
            ],
            "ttl": 300,
        }
        with PinnedClient(where["url"], where["pin"]) as server:
            request_id = server.call("POST", "/rp/v1/requests", body, headers=shop)["id"]
            with httpx.Client(trust_env=False, timeout=10) as browser:
                shown = _wait("the push to the agent", lambda: _shown(browser, page, request_id))
                _approve(browser, page, request_id, shown, pin)
            doc = _wait(
                "the approval",
                lambda: (
                    (d := server.call("GET", f"/rp/v1/requests/{request_id}", headers=shop))["state"] != "PENDING" and d
                ),
            )
        if doc["state"] != "APPROVED" or not doc["result"].get("verified"):
            raise SystemExit(f"\nthe request ended {doc['state']}: {doc}")
        subject = verify(doc["result"])
        return f"the shop got the order signed by {subject} (JWS verified by the server and here)"
    finally:
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
        agent_log.close()


def _agent_url(agent: subprocess.Popen[bytes]) -> str | None:
    if agent.poll() is not None:
        raise SystemExit("\nthe agent stopped; see agent.log")
    try:
        return str(json.loads((config.home() / "agent.json").read_text())["url"])
    except (OSError, ValueError, KeyError):
        return None


def _shown(browser: httpx.Client, page: str, request_id: str) -> str | None:
    """The request's page as the user would open it: its display hash once the agent has the request."""
    answer = browser.get(f"{page}requests/{request_id}")
    if answer.status_code != 200 or TEXT not in unescape(answer.text):
        return None
    return answer.text


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    if found is None:
        raise SystemExit(f"\nthe approval page has no {name} field")
    return unescape(found.group(1))


def _approve(browser: httpx.Client, page: str, request_id: str, html: str, pin: str) -> None:
    """What the user does on the page: type the PIN, press Approve (a same-origin form POST)."""
    origin = page.split("/", 3)
    form = {"csrf": _field(html, "csrf"), "shown": _field(html, "shown"), "pin": pin, "decision": "approve"}
    answer = browser.post(f"{page}requests/{request_id}", data=form, headers={"Origin": f"{origin[0]}//{origin[2]}"})
    if answer.status_code >= 400:
        raise SystemExit(f"\nthe approval page refused the approval ({answer.status_code})")


def verify(result: dict[str, Any]) -> str:
    """The shop's own check: the JWS verifies with the certificate's key over the order; the signer."""
    from cryptography import x509
    from jwcrypto import jwk, jws

    cert = x509.load_der_x509_certificate(wire.unb64u(result["certificate"]))
    token = jws.JWS()
    token.deserialize(result["signature"])
    header = json.loads(wire.unb64u(result["signature"].split(".")[0]))
    token.verify(jwk.JWK.from_pyca(cert.public_key()), alg=header["alg"])
    if token.payload != ORDER:
        raise SystemExit("\nthe signature is over other data than the order")
    return cert.subject.rfc4514_string()
