"""`vsc demo`: identity server up, one activation, a signature and a TLS login through the PKCS#11 module, and
a signing request from a relying party approved on the agent's page.

Everything lives in a temporary directory (server data with its CA key, escrow key and admin token; the
card store with its device key), removed at the end unless --keep; the server is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PIN = "482915"
STEPS = 6


@contextmanager
def step(number: int, text: str) -> Iterator[None]:
    """`[n/6] text ...`, dots while it runs (one a second, so a slow step shows it is alive), then `done`."""
    print(f"[{number}/{STEPS}] {text} ...", end="", flush=True)
    started = time.monotonic()
    finished = threading.Event()

    def tick() -> None:
        while not finished.wait(1.0):
            print(".", end="", flush=True)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        finished.set()
        ticker.join()
    print(f" done ({time.monotonic() - started:.1f} s)", flush=True)


def _run(args: list[str]) -> str:
    result = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"\n{' '.join(args[3:])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _indent(text: str) -> str:
    return "\n".join(f"      {line}" for line in text.rstrip().splitlines())


def main(keep: bool = False) -> None:
    work = Path(tempfile.mkdtemp(prefix="vsc-demo-"))
    os.environ["VSC_HOME"] = str(work / "home")
    data = work / "server"
    print(f"vsc demo: everything happens in {work} (a card store of its own, not your cards)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vsc_provider.cli"]
    server_log = (work / "server.log").open("wb")  # a file, not a pipe: a chatty server never blocks on it
    server = subprocess.Popen(
        [*cmd, "server", "run", "--data", str(data), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=server_log,
    )
    try:
        with step(1, f"starting an identity server on https://127.0.0.1:{port} (its CA and TLS key are new)"):
            _wait_for_server(server, data)
        with step(2, "making a one-time activation link for user 'demo'"):
            link = _run([*cmd, "server", "activation", "create", "--data", str(data), "--user", "demo"]).splitlines()[0]
        print(f"      activation link: {link}")
        print("      (its pin= is the fingerprint of the server's TLS key, which the card trusts from then on;")
        print("      it is not the card's PIN)")
        with step(3, f"activating the card with PIN {PIN}: keys made here, certificates from the server"):
            activated = _run([*cmd, "activate", link, "--pin", PIN])
            listing = _run([*cmd, "card", "list"])
        print(_indent(activated))
        print(_indent(listing))
        with step(4, "signing through the PKCS#11 module and verifying the signature"):
            path, key_uri, cert_uri, subject = _sign_and_verify()
        print(f"      signed through {path} with {subject}: verified")
        with step(5, "TLS client authentication: gnutls-cli logs in to a local web server with the card's key"):
            page = tls_client_auth(path, data, key_uri, cert_uri)
        print(f"      key: {key_uri}")
        print(f"      {page}")
        with step(6, "a web shop asks the card to sign an order: pushed to the agent, approved on its page"):
            from vsc_provider.demo_request import sign_request

            outcome = sign_request(cmd, data, PIN, work)
        print(f"      {outcome}")
    finally:
        server.terminate()
        server.wait(10)
        server_log.close()
        if keep:
            print(f"kept {work} (server data with CA key, escrow key and admin token; card store and device key)")
            print(f"  use the card there with VSC_HOME={work / 'home'}; delete the directory when done")
        else:
            shutil.rmtree(work, ignore_errors=True)
            print(f"removed {work} (add --keep to look at it)")


def _wait_for_server(server: subprocess.Popen[bytes], data: Path) -> None:
    from vsc_provider.provisioning.http import PinnedClient, ServerError

    deadline = time.monotonic() + 60
    while True:
        try:
            where = json.loads((data / "server.json").read_text())
            with PinnedClient(where["url"], where["pin"]) as c:
                c.call("GET", "/v1/server")
            return
        except (OSError, ValueError, KeyError, ServerError):
            if time.monotonic() > deadline or server.poll() is not None:
                errors = (data.parent / "server.log").read_text(errors="replace")
                raise SystemExit(f"\nthe server did not start\n{errors}") from None
            time.sleep(0.2)


def _sign_and_verify() -> tuple[str, str, str, str]:
    """Sign with the card's client-authentication key through the real module (python-pkcs11 loads it)."""
    import pkcs11
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from vsc_provider import module, uri

    path = str(module.library_path())
    lib = pkcs11.lib(path)
    token = lib.get_token(token_label="demo")
    with token.open(user_pin=PIN) as session:
        auth = None
        for obj in session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE}):
            cert = x509.load_der_x509_certificate(obj[pkcs11.Attribute.VALUE])
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH in eku:
                auth = (cert, obj[pkcs11.Attribute.ID])
        if auth is None:
            raise SystemExit("the activated card has no client-authentication certificate")
        cert, key_id = auth
        key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=key_id)
        signature = key.sign(b"demo", mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS)  # type: ignore[attr-defined]
        cert.public_key().verify(signature, b"demo", padding.PKCS1v15(), hashes.SHA256())  # type: ignore
        serial = token.serial.decode() if isinstance(token.serial, bytes) else token.serial
        token_uri = uri.token_uri(token.label, serial)
    key_uri = uri.object_uri(token_uri, key_id, "", 3)
    cert_uri = uri.object_uri(token_uri, key_id, "", 1)
    return path, key_uri, cert_uri, cert.subject.rfc4514_string()


def tls_client_auth(module_path: str, data: Path, key_uri: str, cert_uri: str) -> str:
    """A web server on 127.0.0.1 that requires a client certificate from the identity server's CA, and
    gnutls-cli logging in to it with the card's key through the PKCS#11 module. Returns the page."""
    import shutil
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.request.getpeercert()
            subject = ", ".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
            seen.append(subject)
            body = f"Hello, {subject}: you logged in with your virtual smart card.\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(data / "tls.pem", data / "tls.key")
    context.load_verify_locations(data / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.timeout = 30
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        gnutls = shutil.which("gnutls-cli")
        if gnutls is None:
            return "gnutls-cli is not installed (apt-get install gnutls-bin): TLS step skipped"
        port = httpd.server_address[1]
        result = subprocess.run(
            [gnutls, "--provider", module_path, "--x509keyfile", key_uri, "--x509certfile", cert_uri,
             "--x509cafile", str(data / "ca.pem"), "-p", str(port), "127.0.0.1"],
            input=b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
            capture_output=True,
            env={**os.environ, "GNUTLS_PIN": PIN},
            timeout=60,
        )  # fmt: skip
        output = result.stdout.decode(errors="replace")
        page = next((line for line in output.splitlines() if line.startswith("Hello,")), "")
        if not page or not seen:
            raise SystemExit(f"TLS client authentication failed:\n{output}\n{result.stderr.decode(errors='replace')}")
        return page
    finally:
        httpd.shutdown()
        httpd.server_close()


if __name__ == "__main__":
    main()
