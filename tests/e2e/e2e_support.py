"""End-to-end support: one card per test session with an RSA-2048 and a P-256 key, certificates for both
issued by a test CA, a server certificate for 127.0.0.1, and helpers that run real programs and stop them.

The card is made with the project's own CLI; the public keys are read back from the card through the
PKCS#11 module (pkcs11-tool), and the CA signs certificates for exactly those keys.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vsc_provider import module
from vsc_provider.cert_builder import certificate_builder


def _root_conftest() -> ModuleType:
    """tests/conftest.py's helpers (require_tool, run_vsc, PINs): loaded by path, as every conftest is `conftest`."""
    name = "vsc_tests_root_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "conftest.py")
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
    return sys.modules[name]


_root = _root_conftest()
USER_PIN: str = _root.USER_PIN
SO_PIN: str = _root.SO_PIN
IN_CI: bool = _root.IN_CI
require_tool = _root.require_tool
require_file = _root.require_file
run_vsc = _root.run_vsc

CARD_LABEL = "E2E card"
RSA_LABEL = "rsa"
EC_LABEL = "ec"


@dataclass
class CardKey:
    """One key pair on the card with its certificate."""

    label: str
    id: str  # hex CKA_ID
    cert_path: Path
    cert: x509.Certificate
    public_key_der: bytes
    token_uri: str

    @property
    def subject_cn(self) -> str:
        return str(self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    @property
    def public_pem(self) -> bytes:
        return self.cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def uri(self, kind: str = "private", pin: bool = False) -> str:
        """The key's (or certificate's, kind='cert') pkcs11: URI, by token and id."""
        pct = "".join(f"%{self.id[i : i + 2]}" for i in range(0, len(self.id), 2))
        text = f"{self.token_uri};id={pct};type={kind}"
        if pin:
            text += f"?pin-value={USER_PIN}"
        return text


@dataclass
class E2ECard:
    home: Path
    work: Path
    module: str
    serial: str
    token_uri: str
    rsa: CardKey
    ec: CardKey
    ca_cert: x509.Certificate
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> list[CardKey]:
        return [self.rsa, self.ec]


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vsc e2e"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    subject: x509.Name,
    public_key: object,
    *,
    client: bool,
) -> x509.Certificate:
    builder = (
        certificate_builder(subject, ca_name, public_key, 2)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
    )
    if not client:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256())


def run(
    what: str,
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    input: str | bytes | None = None,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a real program; on failure the message says what it was doing and what it printed."""
    text_input = input.decode() if isinstance(input, bytes) else input
    try:
        result = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            errors="replace",
            env={**os.environ, **(env or {})},
            timeout=timeout,
            input=text_input,
            stdin=None if text_input is not None else subprocess.DEVNULL,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{what}: timed out after {timeout}s: {' '.join(cmd)}\n{exc.stdout!r}\n{exc.stderr!r}"
        ) from None
    if check and result.returncode != 0:
        raise AssertionError(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Background:
    """A server process started by a test: output to a file, waited for, always stopped."""

    def __init__(self, what: str, cmd: Sequence[str], log: Path, env: dict[str, str] | None = None, **kw: Any) -> None:
        self.what = what
        self.cmd = list(cmd)
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=kw.pop("stdin", subprocess.DEVNULL),
            env={**os.environ, **(env or {})},
            start_new_session=True,
            **kw,
        )

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def wait_for_text(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.what} exited ({self.proc.returncode}) before {text!r}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.what}: no {text!r} within {timeout}s:\n{self.output()}")

    def wait_for_port(self, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.what} exited ({self.proc.returncode}) before listening:\n{self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.what}: port {port} not open within {timeout}s:\n{self.output()}")

    def wait_exit(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.what} did not exit within {timeout}s:\n{self.output()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self._out.close()


def make_card(home: Path, work: Path, label: str = CARD_LABEL) -> E2ECard:
    """A card made with the `vsc` CLI, with certificates from a fresh test CA for the keys read off the card."""
    require_tool("pkcs11-tool", "opensc")
    env = {"VSC_HOME": str(home), "VSC_PIN_DELAY_BASE": "0.2"}
    work.mkdir(parents=True, exist_ok=True)
    created = json.loads(
        run_vsc("card", "create", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN, "--json", env=env).stdout
    )
    lib = str(module.library_path())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("vsc e2e test CA")
    ca_cert = (
        certificate_builder(ca_name, ca_name, ca_key.public_key(), 2)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = work / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    made: dict[str, CardKey] = {}
    for kind, key_label in (("rsa2048", RSA_LABEL), ("p256", EC_LABEL)):
        objs = json.loads(
            run_vsc(
                "key",
                "generate",
                "--card",
                label,
                "--type",
                kind,
                "--label",
                key_label,
                "--pin",
                USER_PIN,
                "--json",
                env=env,
            ).stdout
        )
        key_id = objs[0]["id"]
        der_path = work / f"{key_label}.pub.der"
        run(
            f"pkcs11-tool reading the {key_label} public key",
            ["pkcs11-tool", "--module", lib, "--token-label", label, "--read-object", "--type", "pubkey",
             "--id", key_id, "-o", str(der_path)],
            env=env,
        )  # fmt: skip
        public_key = serialization.load_der_public_key(der_path.read_bytes())
        cert = issue(ca_key, ca_name, _name(f"vsc e2e {key_label} user"), public_key, client=True)
        cert_path = work / f"{key_label}.crt"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        imported = json.loads(
            run_vsc(
                "cert",
                "import",
                "--card",
                label,
                str(cert_path),
                "--label",
                key_label,
                "--pin",
                USER_PIN,
                "--json",
                env=env,
            ).stdout
        )
        assert imported["id"] == key_id, f"vsc cert import gave the certificate id {imported['id']}, key has {key_id}"
        made[key_label] = CardKey(key_label, key_id, cert_path, cert, der_path.read_bytes(), created["uri"])

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = issue(ca_key, ca_name, _name("127.0.0.1"), server_key.public_key(), client=False)
    server_cert_path = work / "server.crt"
    server_key_path = work / "server.key"
    server_cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    server_key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return E2ECard(
        home=home,
        work=work,
        module=lib,
        serial=created["serial"],
        token_uri=created["uri"],
        rsa=made[RSA_LABEL],
        ec=made[EC_LABEL],
        ca_cert=ca_cert,
        ca_path=ca_path,
        server_cert_path=server_cert_path,
        server_key_path=server_key_path,
        env=env,
    )


def engine_path() -> str:
    """Where libp11's OpenSSL engine is (libengine-pkcs11-openssl), from openssl's own ENGINESDIR."""
    out = run("openssl version -e", ["openssl", "version", "-e"]).stdout
    engines_dir = out.split('"')[1] if '"' in out else "/usr/lib/x86_64-linux-gnu/engines-3"
    return require_file(os.path.join(engines_dir, "pkcs11.so"), "libengine-pkcs11-openssl")


def openssl_engine_conf(card: E2ECard, path: Path) -> Path:
    """An openssl.cnf that loads the libp11 engine with the module (for OPENSSL_CONF: openssl, curl)."""
    path.write_text(
        "openssl_conf = openssl_init\n\n"
        "[openssl_init]\nengines = engine_section\n\n"
        "[engine_section]\npkcs11 = pkcs11_section\n\n"
        f"[pkcs11_section]\nengine_id = pkcs11\ndynamic_path = {engine_path()}\nMODULE_PATH = {card.module}\ninit = 0\n"
    )
    return path


def start_s_server(
    start: Any, card: E2ECard, version: str = "tls1_3", extra: Sequence[str] = ()
) -> tuple[Background, int]:
    """`openssl s_server` on 127.0.0.1 demanding a client certificate from the test CA; one connection."""
    port = free_port()
    server: Background = start(
        f"openssl s_server {version}",
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1",
         "-cert", str(card.server_cert_path), "-key", str(card.server_key_path),
         "-CAfile", str(card.ca_path), "-Verify", "1", "-verify_return_error", f"-{version}", *extra],
        stdin=subprocess.PIPE,  # s_server quits at EOF on stdin: keep it open
    )  # fmt: skip
    server.wait_for_text("ACCEPT")
    return server, port


def assert_server_saw(server: Background, key: CardKey, client: str) -> None:
    """The TLS server printed the card's certificate (subject and PEM) as the verified client."""
    out = server.output()
    cn = key.subject_cn
    assert f"CN = {cn}" in out or f"CN={cn}" in out, (
        f"{server.what} did not see {client}'s card certificate {cn!r}:\n{out}"
    )
    pem = key.cert.public_bytes(serialization.Encoding.PEM).decode().strip()
    assert pem in out, f"{server.what} printed a client certificate other than the card's ({client}):\n{out}"


HTTPS_SERVER = Path(__file__).resolve().parent / "https_server.py"


def start_https_server(start: Any, card: E2ECard, version: str = "") -> tuple[Background, int]:
    """The Python HTTPS test server (client certificate required); returns it and its port."""
    port = free_port()
    server: Background = start(
        "python https server",
        [sys.executable, str(HTTPS_SERVER), str(port), str(card.server_cert_path), str(card.server_key_path),
         str(card.ca_path), version],
    )  # fmt: skip
    server.wait_for_text("READY")
    return server, port


def cert_sha256(key: CardKey) -> str:
    return key.cert.fingerprint(hashes.SHA256()).hex()
