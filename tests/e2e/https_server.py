"""A test HTTPS server on 127.0.0.1 that requires a client certificate from the test CA and answers with its subject.

Run as `python https_server.py PORT CERT KEY CA [TLS_VERSION]`; prints READY when listening, then one log line per
request with the client's subject and certificate SHA-256. Stops by itself after a time limit.
"""

from __future__ import annotations

import hashlib
import html
import http.server
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.connection, ssl.SSLSocket)
        der = self.connection.getpeercert(binary_form=True)
        peer = self.connection.getpeercert()
        subject = ", ".join(f"{k}={v}" for rdn in (peer or {}).get("subject", ()) for k, v in rdn)
        fingerprint = hashlib.sha256(der or b"").hexdigest()
        print(f"CLIENT subject={subject} sha256={fingerprint} {self.connection.version()}", flush=True)
        body = (
            f"<html><head><title>vsc client auth</title></head><body><h1>Hello {html.escape(subject)}</h1>"
            f"<p id='subject'>{html.escape(subject)}</p><p id='sha256'>{fingerprint}</p></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print("HTTP " + format % args, flush=True)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        print(f"TLS/HTTP error from {client_address}: {sys.exc_info()[1]!r}", flush=True)


def main() -> None:
    port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    if len(sys.argv) > 5 and sys.argv[5] == "tls1_3":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    server = Server(("127.0.0.1", port), Handler)
    server.timeout = 30
    raw_accept = server.socket.accept

    def accept() -> tuple[object, object]:
        sock, addr = raw_accept()
        sock.settimeout(60)
        # The handshake runs in the request thread, so one slow client (a PIN dialog) blocks no other.
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    server.get_request = accept  # type: ignore[method-assign,assignment]
    stopper = threading.Timer(600, server.shutdown)
    stopper.daemon = True
    stopper.start()
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
