"""The pinned client checks the server's key on the connection that answers, also when the server closes
that connection right after answering (HTTP/1.0 style), and refuses any other key."""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vsc_provider.cert_builder import certificate_builder
from vsc_provider.provisioning.http import PinMismatch, PinnedClient, cert_pin


class _Closing(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one answer per connection, then the server closes it

    def do_GET(self) -> None:
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _certificate(folder: Path, name: str) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        certificate_builder(subject, subject, key.public_key(), 1)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def closing_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    cert_path, key_path, der = _certificate(tmp_path, "server")
    httpd = HTTPServer(("127.0.0.1", 0), _Closing)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", der
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_server_that_closes_after_answering_is_accepted(closing_server: tuple[str, bytes]) -> None:
    url, der = closing_server
    with PinnedClient(url, cert_pin(der)) as client:
        for _ in range(3):
            assert client.call("GET", "/anything") == {"ok": True}


def test_another_key_is_refused(closing_server: tuple[str, bytes], tmp_path: Path) -> None:
    url, _ = closing_server
    _, _, other = _certificate(tmp_path, "other")
    with pytest.raises(PinMismatch):
        PinnedClient(url, cert_pin(other)).call("GET", "/anything")
