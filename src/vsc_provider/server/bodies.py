"""The JSON bodies the server reads, over HTTP (app.py) and in an admin command's own process
(admin_local.py), under the same rules: at most the call's limit of bytes, and JSON the protocol uses
(wire.sound_json: bounded nesting, valid Unicode)."""

from __future__ import annotations

import json
from typing import Any

from vsc_provider.provisioning import wire
from vsc_provider.server.errors import ProtocolError


def too_large(limit: int) -> ProtocolError:
    return ProtocolError(413, "too_large", f"bodies are at most {limit} bytes")


def parse(raw: bytes, limit: int) -> Any:
    """The body RAW as the server reads it: 413 beyond LIMIT bytes, 400 unless it is sound JSON."""
    if len(raw) > limit:
        raise too_large(limit)
    try:
        return wire.sound_json(json.loads(raw))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(400, "malformed", "the body is not JSON the protocol uses") from None


def encode(body: Any) -> bytes:
    """BODY as the admin's HTTP client sends it (compact UTF-8 JSON), a lone surrogate kept for parse to refuse."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
