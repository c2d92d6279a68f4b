"""A card's server binding (server URL, TLS pin and certificate, device id, sealed device key) is kept in
the store as JSON; a MAC under the machine's device key, bound to the card's serial, makes an edited
binding detectable, so nobody with write access to the store alone can point a card at another server.

A binding without a MAC is refused like an edited one. The one exception is a store from before binding MACs,
told by the store's schema version (token/store.py: MACED_SCHEMA), not by a flag in the store: the engine MACs
such a store's bindings once and raises its schema version in the same transaction. A flag row could be
deleted by whoever edits the binding, and then the next start would MAC the edited binding.
What remains: someone who can write the store could also lower its schema version; telling that apart from a
genuine old store needs a record outside the store, which there is not yet."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

MAC_FIELD = "mac"
# The meta row the first MAC-ing versions set once every binding carried a MAC (schema 1); read only to upgrade
# such a store to MACED_SCHEMA without MAC-ing anything, then deleted.
META_KEY = "binding_mac"


def _mac(device_key: bytes, serial: str, binding: dict[str, Any]) -> str:
    body = {k: v for k, v in binding.items() if k != MAC_FIELD}
    message = (
        b"vsc-binding-1:" + serial.encode() + b":" + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    )
    return hmac.new(device_key, message, hashlib.sha256).hexdigest()


def sealed(device_key: bytes, serial: str, binding: dict[str, Any]) -> dict[str, Any]:
    """The binding with its MAC (recomputed: call it on every write)."""
    return {**binding, MAC_FIELD: _mac(device_key, serial, binding)}


def intact(device_key: bytes, serial: str, binding: dict[str, Any]) -> bool:
    given = binding.get(MAC_FIELD)
    return isinstance(given, str) and hmac.compare_digest(given, _mac(device_key, serial, binding))


TAMPERED = "tampered"


def checked(device_key: bytes, serial: str, binding: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored binding as the card may use it: as stored when its MAC holds, else marked
    `state: tampered` (every server call refuses such a card) and logged."""
    if not binding or intact(device_key, serial, binding):
        return binding
    from vsc_provider import log as vlog

    vlog.get("vsc.token").error("card %s: its server binding was changed outside vsc; it is not used", serial)
    return {**binding, "state": TAMPERED}
