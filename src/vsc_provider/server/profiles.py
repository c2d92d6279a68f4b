"""Activation profiles: which keys a card gets, in which form, whether it may work offline, the branding
(name, logo, colour) its cards show on requests, and the OATH seed it may get (otp_setting.py).

The built-in profiles cover the protocol's cases; a server operator can replace them with a
`profiles.json` file in the data directory (same shape as `Profile.to_json`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vsc_provider.provisioning import wire
from vsc_provider.server.otp_setting import OtpSetting


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


DEFAULT_COLOUR = "#1f5fa8"
MAX_LOGO = 64 * 1024  # characters of the logo's data: URI
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_LOGO_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,", "data:image/gif;base64,")


def check_branding(branding: Any) -> dict[str, str]:
    """A profile's branding: {"name" (1..100 characters), "colour" ("#rrggbb"), "logo" (a data: URI of a
    PNG, JPEG or GIF)}, each optional; ValueError otherwise."""
    if not isinstance(branding, dict) or not set(branding) <= {"name", "logo", "colour"}:
        raise ValueError("branding is an object with name, logo and colour")
    name, logo, colour = branding.get("name"), branding.get("logo"), branding.get("colour")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 100 or not name.isprintable()):
        raise ValueError("branding.name is 1 to 100 printable characters")
    if colour is not None and (not isinstance(colour, str) or not _COLOUR.fullmatch(colour)):
        raise ValueError("branding.colour is #rrggbb")
    if logo is not None and (not isinstance(logo, str) or len(logo) > MAX_LOGO or not logo.startswith(_LOGO_PREFIXES)):
        raise ValueError(f"branding.logo is a data:image/(png|jpeg|gif);base64 URI of at most {MAX_LOGO} characters")
    return dict(branding)


@dataclass(frozen=True)
class Profile:
    name: str
    keys: tuple[KeyRequest, ...]
    offline: bool = True
    pin_min_length: int = 6
    extra: dict[str, Any] = field(default_factory=dict)
    branding: dict[str, str] | None = None  # None: the server's default (branding_for)
    otp: OtpSetting | None = None  # an OATH seed provisioned to each card at activation

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "keys": [asdict(k) for k in self.keys],
            "offline": self.offline,
            "pin_min_length": self.pin_min_length,
        }
        if self.branding is not None:
            out["branding"] = dict(self.branding)
        if self.otp is not None:
            out["otp"] = self.otp.to_json()
        return out

    def branding_for(self, server_name: str) -> dict[str, str]:
        """What a card of this profile shows on requests: the profile's branding, the server's name and the
        default colour where it says nothing."""
        return {"name": server_name, "colour": DEFAULT_COLOUR, **(self.branding or {})}


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
            branding=check_branding(item["branding"]) if "branding" in item else None,
            otp=OtpSetting.parse(item["otp"]) if "otp" in item else None,
        )
    return out
