"""What bounds an unauthenticated client: stateless nonces (nothing stored until a signed request spends
one), a token bucket per client address, and a separate, slower bucket for wrong activation codes.

On SQLite (one process) the buckets live in this process; on PostgreSQL they live in the database
(limits_shared.py), so several instances refuse a client at the same total as one. Nonces are checked by a
key derived from the escrow key, which every instance shares through the data directory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict
from typing import Protocol

from vsc_provider.provisioning import wire
from vsc_provider.server.db_backend import Backend
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.limits_shared import SharedBuckets

_MAC_BYTES = 16
_MAX_CLIENTS = 10_000  # buckets kept at most: the least recently seen go first


class NonceMint:
    """Nonces that prove themselves: expiry, randomness and a MAC, so issuing one writes nothing."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"vsc-nonce-key", hashlib.sha256).digest()

    def new(self, ttl: float = wire.NONCE_TTL) -> str:
        body = struct.pack(">Q", int(time.time() + ttl)) + secrets.token_bytes(16)
        return wire.b64u(body + hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES])

    def expiry(self, nonce: str) -> float | None:
        """When a nonce this server made expires; None for a forged, damaged or expired one."""
        try:
            raw = wire.unb64u(nonce)
        except ValueError:
            return None
        if len(raw) != 24 + _MAC_BYTES:
            return None
        body, mac = raw[:24], raw[24:]
        if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]):
            return None
        expires = float(struct.unpack(">Q", body[:8])[0])
        return expires if expires >= time.time() else None


class Bucket(Protocol):
    local: bool  # True: in this process, cheap enough to call on the event loop

    def check(self, client: str) -> None: ...

    def take(self, client: str) -> None: ...


class Buckets:
    """Token buckets by client in this process: `rate` tokens a second up to `burst`; take() refuses with
    429 when empty."""

    local = True

    def __init__(self, rate: float, burst: float, error: str, detail: str) -> None:
        self.rate, self.burst, self.error, self.detail = rate, burst, error, detail
        self._lock = threading.Lock()
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, client: str, now: float) -> float:
        tokens, since = self._state.get(client, (self.burst, now))
        return min(self.burst, tokens + (now - since) * self.rate)

    def _refuse_when_empty(self, level: float) -> None:
        if level < 1.0:
            raise ProtocolError(429, self.error, self.detail, retry_after=(1.0 - level) / self.rate)

    def check(self, client: str) -> None:
        """Refuse (429) while the client's bucket is empty, taking nothing."""
        with self._lock:
            level = self._level(client, time.monotonic())
        self._refuse_when_empty(level)

    def take(self, client: str) -> None:
        """Take one token, or refuse (429) when there is none."""
        now = time.monotonic()
        with self._lock:
            level = self._level(client, now)
            self._refuse_when_empty(level)
            self._state[client] = (level - 1.0, now)
            self._state.move_to_end(client)
            while len(self._state) > _MAX_CLIENTS:
                self._state.popitem(last=False)


def _pair(name: str, default: str) -> tuple[float, float]:
    rate, burst = (float(x) for x in os.environ.get(name, default).split(","))
    return rate, burst


def _buckets(backend: Backend | None, name: str, variable: str, default: str, error: str, detail: str) -> Bucket:
    rate, burst = _pair(variable, default)
    if backend is None:
        return Buckets(rate, burst, error, detail)
    return SharedBuckets(backend, name, rate, burst, error, detail)


class Limits:
    """The server's limits. VSC_SERVER_RATE_LIMIT="rate,burst" (requests a second per client address,
    default 50,200) and VSC_SERVER_CODE_LIMIT="rate,burst" (wrong activation codes, default one every
    6 s after 10) tune them. `shared`: the database several instances share (PostgreSQL), which then
    holds the buckets; None keeps them in this process."""

    def __init__(self, secret: bytes, shared: Backend | None = None) -> None:
        self.nonces = NonceMint(secret)
        self.requests = _buckets(
            shared, "requests", "VSC_SERVER_RATE_LIMIT", "50,200", "rate_limited", "too many requests: slow down"
        )
        self.codes = _buckets(
            shared,
            "codes",
            "VSC_SERVER_CODE_LIMIT",
            "0.1667,10",
            "too_many_codes",
            "too many unknown activation codes from this address: wait",
        )
