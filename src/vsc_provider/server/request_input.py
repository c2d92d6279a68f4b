"""What a relying party may ask (POST /rp/v1/requests): every field checked against the limits of
docs/protocol.md ("Requests"), a refusal naming the field (400 bad_field, "field": name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from vsc_provider.provisioning import request_wire as rw
from vsc_provider.provisioning import wire
from vsc_provider.server.errors import ProtocolError

FIELDS = ("user", "device", "kind", "data", "hash", "alg", "format", "metadata", "ttl", "callback")
MAX_CALLBACK = 2048


@dataclass(frozen=True)
class RequestInput:
    user: str | None
    device: str | None
    kind: str
    alg: str | None
    format: str
    data: bytes | None
    hash: bytes | None
    metadata: list[dict[str, str]]  # as given: type, label, data (text, or b64u)
    ttl: int
    callback: str | None


def bad(field: str, detail: str) -> ProtocolError:
    return ProtocolError(400, "bad_field", f"{field}: {detail}", field=field)


def _b64u(value: Any, field: str, limit: int) -> bytes:
    if not isinstance(value, str):
        raise bad(field, "a base64url string")
    if len(value) > (limit * 4 + 2) // 3 + 1:
        raise bad(field, f"at most {limit} bytes")
    try:
        raw = wire.unb64u(value)
    except ValueError:
        raise bad(field, "not base64url without padding") from None
    if len(raw) > limit:
        raise bad(field, f"at most {limit} bytes")
    return raw


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        raise bad(field, "1 to 64 printable characters")
    return value


def _metadata(items: Any) -> list[dict[str, str]]:
    if not isinstance(items, list):
        raise bad("metadata", "a list of {type, label, data}")
    if len(items) > rw.MAX_METADATA_ITEMS:
        raise bad("metadata", f"at most {rw.MAX_METADATA_ITEMS} items")
    out = []
    for n, item in enumerate(items):
        where = f"metadata[{n}]"
        if not isinstance(item, dict) or set(item) != {"type", "label", "data"}:
            raise bad(where, "an object with exactly type, label and data")
        kind, label, data = item["type"], item["label"], item["data"]
        if kind not in rw.METADATA_TYPES:
            raise bad(f"{where}.type", f"one of {', '.join(rw.METADATA_TYPES)}")
        if not isinstance(label, str) or len(label) > rw.MAX_LABEL or not label.isprintable():
            raise bad(f"{where}.label", f"at most {rw.MAX_LABEL} printable characters")
        limit = rw.METADATA_LIMITS[kind]
        if kind == "text":
            if not isinstance(data, str) or len(data.encode("utf-8", "surrogatepass")) > limit:
                raise bad(f"{where}.data", f"text of at most {limit} bytes (UTF-8)")
            try:
                data.encode()
            except UnicodeEncodeError:
                raise bad(f"{where}.data", "not valid Unicode text") from None
        else:
            raw = _b64u(data, f"{where}.data", limit)
            if kind == "image" and not raw.startswith(rw.IMAGE_MAGIC):
                raise bad(f"{where}.data", "a PNG, JPEG or GIF image")
            if kind == "pdf" and not raw.startswith(rw.PDF_MAGIC):
                raise bad(f"{where}.data", "a PDF document (%PDF-)")
        out.append({"type": kind, "label": label, "data": data})
    return out


def _callback(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_CALLBACK or not value.isprintable():
        raise bad("callback", f"a URL of at most {MAX_CALLBACK} characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad("callback", "not a URL") from None
    if parts.scheme == "https" and host:
        return value
    if parts.scheme == "http" and host == "127.0.0.1":
        return value
    raise bad("callback", "an https:// URL (http:// only to 127.0.0.1)")


def parse(body: Any) -> RequestInput:
    if not isinstance(body, dict):
        raise ProtocolError(400, "malformed", "expected a JSON object")
    for name in body:
        if name not in FIELDS:
            raise bad(str(name)[:64], f"unknown field (fields: {', '.join(FIELDS)})")
    user, device = body.get("user"), body.get("device")
    if (user is None) == (device is None):
        raise bad("user", "name exactly one of user and device")
    kind = body.get("kind")
    if kind not in rw.KINDS:
        raise bad("kind", f"one of {', '.join(rw.KINDS)}")
    alg = body.get("alg")
    if alg is not None and alg not in rw.ALGS:
        raise bad("alg", f"one of {', '.join(rw.ALGS)}")
    fmt = body.get("format", "jws")
    if fmt not in rw.FORMATS or (kind == "auth" and fmt != "jws"):
        raise bad("format", "jws or cms for sign; auth answers are jws")
    data = digest = None
    if kind == "auth":
        for name in ("data", "hash"):
            if name in body:
                raise bad(name, "an auth request signs the server's challenge: no data or hash")
    else:
        if ("data" in body) == ("hash" in body):
            raise bad("data", "a sign request carries either data or hash")
        if "data" in body:
            data = _b64u(body["data"], "data", rw.MAX_DATA)
        else:
            digest = _b64u(body["hash"], "hash", 64)
            if len(digest) not in rw.HASH_BY_LENGTH:
                raise bad("hash", "a SHA-256, SHA-384 or SHA-512 digest (32, 48 or 64 bytes)")
            if fmt == "jws":
                raise bad("hash", "a JWS signs the data itself: send data, or ask for format cms")
    ttl = body.get("ttl", rw.DEFAULT_TTL)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not rw.TTL_RANGE[0] <= ttl <= rw.TTL_RANGE[1]:
        raise bad("ttl", f"whole seconds, {rw.TTL_RANGE[0]} to {rw.TTL_RANGE[1]}")
    return RequestInput(
        user=_name(user, "user") if user is not None else None,
        device=_name(device, "device") if device is not None else None,
        kind=kind,
        alg=alg,
        format=fmt,
        data=data,
        hash=digest,
        metadata=_metadata(body.get("metadata", [])),
        ttl=ttl,
        callback=_callback(body.get("callback")),
    )
