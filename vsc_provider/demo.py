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

        from vsc_provider import module

        path = str(module.library_path())  # ask before loading: the loaded module has no import spec
        lib = pkcs11.lib(path)
        token = lib.get_token(token_label="demo")
        with token.open(user_pin=PIN) as session:
            key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, key_type=pkcs11.KeyType.RSA)
            cert_obj = next(
                session.get_objects(
                    {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE, pkcs11.Attribute.ID: key.id}
                )
            )
            cert = x509.load_der_x509_certificate(cert_obj[pkcs11.Attribute.VALUE])
            signature = key.sign(b"demo", mechanism=pkcs11.Mechanism.SHA256_RSA_PKCS)  # type: ignore[attr-defined]
            cert.public_key().verify(signature, b"demo", padding.PKCS1v15(), hashes.SHA256())  # type: ignore
        print(f"signed through {path} with {cert.subject.rfc4514_string()}: verified")
        print("TLS client auth with the same key: see tests/e2e (curl/gnutls-cli with the pkcs11: URI above)")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
