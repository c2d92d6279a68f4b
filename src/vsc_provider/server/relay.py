"""The push relay as the identity server uses it (`vsc server run --push-relay URL`): each device's topic,
and the opaque notification ("n requests are waiting", a JWE to the device key) posted when a request is
made, through the relay's own client (vsc_provider.relay.client.post_notification), with the relay's post
token from VSC_RELAY_POST_TOKEN when it wants one. The relay stores nothing and never sees a request
(docs/protocol.md, "Push relay")."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsc_provider.provisioning import wire
from vsc_provider.relay.client import post_notification
from vsc_provider.server import jose

NOTIFY_TIMEOUT = 3.0


@dataclass(frozen=True)
class Relay:
    url: str
    secret: bytes  # the HMAC key of the topics, DATA/relay-secret
    token: str | None = None  # the relay's post token (VSC_RELAY_POST_TOKEN), if it wants one

    @classmethod
    def load(cls, data: Path, url: str) -> Relay:
        path = data / "relay-secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        return cls(url.rstrip("/"), path.read_bytes(), os.environ.get("VSC_RELAY_POST_TOKEN") or None)

    def topic(self, device_id: str) -> str:
        """b64u HMAC-SHA256 of the device id: the relay cannot tell which device or server it serves."""
        return wire.b64u(hmac.new(self.secret, device_id.encode(), hashlib.sha256).digest())

    def for_device(self, device_id: str) -> dict[str, str]:
        return {"url": self.url, "topic": self.topic(device_id)}

    def notification(self, device_jwk: dict[str, Any], waiting: int) -> str:
        """The JWE to the device key of {"waiting": n, "iat"} that is posted to its topic."""
        return jose.jwe_to(device_jwk, wire.canonical({"waiting": waiting, "iat": int(time.time())}))

    def post(self, device_id: str, jwe: str) -> None:
        """Post a notification to the device's topic (blocking; RelayError when refused or unreachable)."""
        post_notification(self.url, self.topic(device_id), jwe, self.token, NOTIFY_TIMEOUT)
