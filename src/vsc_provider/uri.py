"""RFC 7512 pkcs11: URIs for cards (tokens) and their objects."""

from __future__ import annotations

from urllib.parse import quote

_SAFE = "-._~:[]@!$'()*+,=&"  # pchar minus ';' '/' '?' (which separate attributes) and '%'

TYPES = {0: "data", 1: "cert", 2: "public", 3: "private", 4: "secret-key"}


def _pct(value: str | bytes) -> str:
    return quote(value, safe=_SAFE)


def token_uri(label: str, serial: str, manufacturer: str = "vsc-provider", model: str = "virtual card") -> str:
    return f"pkcs11:model={_pct(model)};manufacturer={_pct(manufacturer)};serial={_pct(serial)};token={_pct(label)}"


def object_uri(token: str, key_id: bytes, label: str, klass: int) -> str:
    parts = [token]
    if key_id:
        parts.append("id=" + "".join(f"%{b:02x}" for b in key_id))
    if label:
        parts.append(f"object={_pct(label)}")
    if klass in TYPES:
        parts.append(f"type={TYPES[klass]}")
    return ";".join(parts)
