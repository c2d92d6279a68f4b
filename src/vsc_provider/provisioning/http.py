"""The one HTTP client setup: httpx over TLS pinned to the server's key, never the system CAs.

On first contact the server's certificate is fetched and its SubjectPublicKeyInfo checked against the
SHA-256 pin from the activation link; from then on OpenSSL trusts exactly that certificate (as a partial
chain anchor) and nothing else, and every response's peer certificate is checked against the pin again.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from vsc_provider.provisioning import wire

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class ServerError(Exception):
    """A refused or failed server call; `error` is the server's code (or a local one)."""

    def __init__(self, status: int, error: str, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{detail} ({error}, HTTP {status})" if status else f"{detail} ({error})")
        self.status, self.error, self.detail, self.body = status, error, detail, body or {}


class PinMismatch(ServerError):
    def __init__(self, detail: str) -> None:
        super().__init__(0, "pin_mismatch", detail)


def cert_pin(der: bytes) -> str:
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return wire.spki_pin(spki)


def fetch_certificate(url: str, pin: str, timeout: float = 10.0) -> bytes:
    """The server's leaf certificate (DER), refused unless its key matches the pin."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the pin below is the check
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise ServerError(0, "unreachable", f"cannot reach {url}: {exc}") from None
    if not der or cert_pin(der) != pin:
        raise PinMismatch(f"{url} presents a certificate whose key does not match the pinned one")
    return der


def _context(cert_der: bytes, ca_der: bytes | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # the pinned certificate (or the server's own CA) itself is the identity
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(cert_der))
    if ca_der is not None:  # the server's CA: TLS keys it issues later (a rotation) are its keys too
        ctx.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(ca_der))
    return ctx


def _issued_by(der: bytes, ca_der: bytes) -> bool:
    """A TLS server certificate issued by this CA (and for a server: EKU serverAuth)."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert, ca = x509.load_der_x509_certificate(der), x509.load_der_x509_certificate(ca_der)
    try:
        cert.verify_directly_issued_by(ca)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    return ExtendedKeyUsageOID.SERVER_AUTH in eku


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _refusal(response: httpx.Response, data: dict[str, Any]) -> ServerError:
    return ServerError(
        response.status_code, str(data.get("error", "http")), str(data.get("detail", response.reason_phrase)), data
    )


class PinnedClient:
    """JSON calls to one server; any other certificate, even a CA-trusted one, fails the handshake."""

    def __init__(
        self,
        url: str,
        pin: str,
        cert_der: bytes | None = None,
        timeout: httpx.Timeout = TIMEOUT,
        ca_der: bytes | None = None,
        pins: tuple[str, ...] = (),
        retire: dict[str, float] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.pin = pin
        self.pins = {pin, *pins}  # the key seen at activation, and keys the server announced since
        self.retire = dict(retire or {})  # keys the server retired: refused from that time on, CA or not
        self.ca_der = ca_der
        self.peer_pin = ""  # the pin of the key that answered last
        if cert_der is None or cert_pin(cert_der) != pin:
            cert_der = fetch_certificate(self.url, pin)
        self.cert_der = cert_der
        self._http = httpx.Client(
            base_url=self.url,
            verify=_context(cert_der, ca_der),
            timeout=timeout,
            trust_env=False,
            event_hooks={"response": [self._check_peer]},  # at the headers, while the connection is open
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PinnedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_peer(self, response: httpx.Response) -> None:
        """The pin, checked again on the connection that answered (the handshake trusted only the pinned
        certificate already): run as the response's headers arrive, before the server may close it."""
        stream = response.extensions.get("network_stream")
        tls = stream.get_extra_info("ssl_object") if stream is not None else None
        der = tls.getpeercert(True) if tls is not None else None
        pin = cert_pin(der) if der else ""
        if pin in self.retire and time.time() >= self.retire[pin]:
            raise PinMismatch(f"{self.url} answered with a TLS key the server retired after a rotation")
        if not der or not (pin in self.pins or (self.ca_der is not None and _issued_by(der, self.ca_der))):
            raise PinMismatch(f"{self.url} answered with a certificate that does not match the pin")
        self.peer_pin = pin

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body, headers=headers)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise PinMismatch(f"{self.url} presents a certificate other than the pinned one") from None
            raise ServerError(0, "unreachable", f"cannot reach {self.url}: {exc}") from None
        except httpx.HTTPError as exc:
            raise ServerError(0, "unreachable", f"cannot reach {self.url}: {exc}") from None
        data = _json_object(response)
        if response.status_code >= 400:
            raise _refusal(response, data)
        return data

    @classmethod
    def for_binding(cls, binding: dict[str, Any], timeout: httpx.Timeout = TIMEOUT) -> PinnedClient:
        """A client to a card's server: the key pinned at activation, the keys the server announced since
        (`tls_pins`) and its CA (`tls_ca`), so a card offline across a TLS key rotation still connects; keys
        the server retired (`tls_retire`) are refused once their grace period is over."""
        ca = binding.get("tls_ca")
        return cls(
            binding["url"],
            binding["pin"],
            bytes.fromhex(binding["cert"]),
            timeout=timeout,
            ca_der=bytes.fromhex(ca) if ca else None,
            pins=tuple(binding.get("tls_pins", ())),
            retire={str(k): float(v) for k, v in binding.get("tls_retire", {}).items()},
        )

    @contextmanager
    def stream(self, method: str, path: str, body: Any, read_timeout: float) -> Iterator[httpx.Response]:
        """A streamed response (server-sent events), its certificate checked against the pin as for `call`; a
        refusal is a ServerError. `read_timeout` bounds the wait for each chunk."""
        timeout = httpx.Timeout(read_timeout, connect=TIMEOUT.connect)
        try:
            with self._http.stream(method, path, json=body, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refusal(response, _json_object(response))
                yield response
        except httpx.HTTPError as exc:
            raise ServerError(0, "unreachable", f"lost {self.url}: {exc}") from None

    def nonce(self) -> str:
        return str(self.call("GET", "/v1/nonce")["nonce"])
