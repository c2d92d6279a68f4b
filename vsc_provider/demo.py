"""`python -m vsc_provider.demo`: identity server up, one activation, a signature through the PKCS#11 module.

Everything lives in a temporary directory (server data and VSC_HOME) and the server is stopped at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIN = "482915"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="vsc-demo-"))
    os.environ["VSC_HOME"] = str(work / "home")
    data = work / "server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vsc_provider.cli"]
    server = subprocess.Popen(
        [*cmd, "server", "run", "--data", str(data), "--port", str(port)], stdin=subprocess.DEVNULL
    )
    try:
        from vsc_provider.provisioning.http import PinnedClient, ServerError

        deadline = time.monotonic() + 60
        while True:
            try:
                where = json.loads((data / "server.json").read_text())
                with PinnedClient(where["url"], where["pin"]) as c:
                    c.call("GET", "/v1/server")
                break
            except (OSError, ValueError, KeyError, ServerError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        link = subprocess.run(
            [*cmd, "server", "activation", "create", "--data", str(data), "--user", "demo"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()[0]
        print(f"activation link: {link}")
        subprocess.run([*cmd, "activate", link, "--pin", PIN], check=True)
        subprocess.run([*cmd, "card", "list"], check=True)

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
                    auth = (cert, obj[pkcs11.Attribute.ID], obj[pkcs11.Attribute.LABEL])
            if auth is None:
                raise SystemExit("the activated card has no client-authentication certificate")
            cert, key_id, _label = auth
            key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=key_id)
            signature = key.sign(b"demo", mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS)  # type: ignore[attr-defined]
            cert.public_key().verify(signature, b"demo", padding.PKCS1v15(), hashes.SHA256())  # type: ignore
            token_uri = uri.token_uri(
                token.label, token.serial.decode() if isinstance(token.serial, bytes) else token.serial
            )
        print(f"signed through {path} with {cert.subject.rfc4514_string()}: verified")
        key_uri = uri.object_uri(token_uri, key_id, "", 3)
        cert_uri = uri.object_uri(token_uri, key_id, "", 1)
        print(f"TLS client authentication with {key_uri}")
        print(tls_client_auth(path, data, key_uri, cert_uri))
    finally:
        server.terminate()
        server.wait(10)


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
