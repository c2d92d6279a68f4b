"""What both ends of the provisioning protocol agree on: encodings, algorithms, limits and link format.

The server (vsc_provider.server) and the client (vsc_provider.provisioning) both import this module, so a
constant such as the accepted JWS algorithms is written down once; docs/protocol.md describes the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

JWS_ALGS = ("RS256", "RS512")
MIN_RSA_BITS = 2048
JWE_ALG = "RSA-OAEP-256"
JWE_ENC = "A256GCM"
MAX_BODY = 256 * 1024
NONCE_TTL = 300.0
LINK_SCHEME = "personal"
KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "p256", "p384", "ed25519")
KEY_USAGES = ("auth", "sign", "encryption")
KEY_FORMATS = ("certificate", "jwk", "imported")
# TPM attestation (docs/attestation.md): the device calls that carry `tpm_attestation` once a TPM key is
# registered with the device, and the JWS type its TPM key signs
TPM_ATTESTED_CALLS = ("/v1/status", "/v1/renew", "/v1/migration", "/v1/delete")
TPM_ATTESTATION_TYP = "vsc-tpm-attestation"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    if not isinstance(text, str) or not text.isascii() or any(c in text for c in "=+/ \n"):
        raise ValueError("not base64url without padding")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


MAX_JSON_DEPTH = 16


def sound_json(value: Any) -> Any:
    """A parsed message as the protocol uses them: at most MAX_JSON_DEPTH levels of nesting, every string
    (keys too) valid Unicode (no lone surrogates). ValueError otherwise."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError("nested too deep")
        if isinstance(item, str):
            item.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
        elif isinstance(item, dict):
            todo.extend((k, depth) for k in item)
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
    return value


def pin_proof(verifier: bytes, nonce: str) -> bytes:
    """The online PIN check's proof: HMAC-SHA256 keyed with the PIN verifier over the server's nonce.

    The device computes it from the PIN; the server, from the verifier it stores. The PIN never travels."""
    return hmac.new(verifier, b"vsc-pin-proof:" + nonce.encode(), hashlib.sha256).digest()


def spki_pin(spki_der: bytes) -> str:
    """The pin of a TLS key: base64url SHA-256 of its DER SubjectPublicKeyInfo."""
    return b64u(hashlib.sha256(spki_der).digest())


@dataclass(frozen=True)
class ActivationLink:
    """personal://activate?server=<https URL>&code=<one-time code>&pin=<sha256 pin of the TLS key>"""

    server: str
    code: str
    pin: str

    def __str__(self) -> str:
        return (
            f"{LINK_SCHEME}://activate?server={quote(self.server, safe='')}"
            f"&code={quote(self.code, safe='')}&pin={quote(self.pin, safe='')}"
        )

    @classmethod
    def parse(cls, text: str) -> ActivationLink:
        parts = urlsplit(text.strip())
        if parts.scheme != LINK_SCHEME or parts.netloc != "activate":
            raise ValueError(f"not an activation link ({LINK_SCHEME}://activate?...)")
        query = parse_qs(parts.query, strict_parsing=True)
        try:
            server, code, pin = (query[name][0] for name in ("server", "code", "pin"))
        except KeyError as exc:
            raise ValueError(f"activation link lacks {exc.args[0]!r}") from None
        if not server.startswith("https://"):
            raise ValueError("the server of an activation link must be https://")
        if len(unb64u(pin)) != 32:
            raise ValueError("the pin of an activation link is a base64url SHA-256")
        return cls(server.rstrip("/"), code, pin)
