"""What the relay accepts: topic and notification shapes, size bounds and the stream's timing (protocol.md,
"Push relay"). Shared by the relay and its client."""

from __future__ import annotations

import base64
import binascii
import json
import re

TOPIC_BYTES = 32  # a topic is b64u(HMAC-SHA256(...)): 43 characters
MAX_BODY = 8 * 1024  # a POST body; a notification JWE is a few hundred bytes
KEEPALIVE_SECONDS = 15.0
STREAM_SECONDS = 600.0
EVENT = "notification"

_B64U = re.compile(r"[A-Za-z0-9_-]*")


def b64u_decode(text: str) -> bytes | None:
    """The bytes of unpadded base64url TEXT, or None unless it is the canonical encoding of them."""
    if not _B64U.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # non-zero trailing bits would give a second spelling of the same bytes
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == text else None


def topic_problem(topic: str) -> str | None:
    """Why TOPIC is not a topic (b64u of 32 bytes, unpadded), or None."""
    raw = b64u_decode(topic)
    if raw is None or len(raw) != TOPIC_BYTES:
        return f"a topic is the unpadded base64url form of {TOPIC_BYTES} bytes"
    return None


def notification_problem(jwe: object) -> str | None:
    """Why JWE is not a compact JWE (five base64url parts, a protected header naming alg and enc), or None.
    The relay looks no further: the rest is opaque to it."""
    if not isinstance(jwe, str):
        return "notification must be a string"
    parts = jwe.split(".")
    if len(parts) != 5:
        return "notification must be a compact JWE (five base64url parts)"
    header, _key, _iv, ciphertext, tag = parts
    if not all(p == "" or b64u_decode(p) is not None for p in parts) or not (header and ciphertext and tag):
        return "notification must be a compact JWE (five base64url parts)"
    try:
        protected = json.loads(b64u_decode(header) or b"")
    except (ValueError, UnicodeDecodeError):
        protected = None
    if not isinstance(protected, dict) or not all(isinstance(protected.get(k), str) for k in ("alg", "enc")):
        return "the JWE's protected header must be a JSON object with alg and enc"
    return None
