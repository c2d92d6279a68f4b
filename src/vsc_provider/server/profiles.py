"""Activation profiles: which keys a card gets, in which form, and whether it may work offline.

The built-in profiles cover the protocol's cases; a server operator can replace them with a
`profiles.json` file in the data directory (same shape as `Profile.to_json`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vsc_provider.provisioning import wire


@dataclass(frozen=True)
class KeyRequest:
    id: str
    usage: str
    type: str
    format: str = "certificate"

    def __post_init__(self) -> None:
        if self.usage not in wire.KEY_USAGES or self.type not in wire.KEY_TYPES or self.format not in wire.KEY_FORMATS:
            raise ValueError(f"bad key request {self}")
        if self.format == "imported" and not self.type.startswith("rsa"):
            raise ValueError("imported keys are RSA")


@dataclass(frozen=True)
class Profile:
    name: str
    keys: tuple[KeyRequest, ...]
    offline: bool = True
    pin_min_length: int = 6
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keys": [asdict(k) for k in self.keys],
            "offline": self.offline,
            "pin_min_length": self.pin_min_length,
        }


def _p(name: str, keys: list[tuple[str, str, str, str]], offline: bool = True) -> Profile:
    return Profile(name, tuple(KeyRequest(*k) for k in keys), offline)


BUILTIN = {
    p.name: p
    for p in (
        _p("default", [("auth", "auth", "rsa2048", "certificate"), ("sign", "sign", "p256", "certificate")]),
        _p("light", [("auth", "auth", "p256", "certificate")]),
        _p("online", [("auth", "auth", "rsa2048", "certificate")], offline=False),
        _p("escrow", [("auth", "auth", "p256", "certificate"), ("enc", "encryption", "rsa2048", "imported")]),
        _p("raw", [("api", "sign", "p256", "jwk")]),
    )
}


def load(data: Path) -> dict[str, Profile]:
    path = data / "profiles.json"
    if not path.exists():
        return dict(BUILTIN)
    out = {}
    for item in json.loads(path.read_text()):
        out[item["name"]] = Profile(
            item["name"],
            tuple(KeyRequest(**k) for k in item["keys"]),
            bool(item.get("offline", True)),
            int(item.get("pin_min_length", 6)),
        )
    return out
