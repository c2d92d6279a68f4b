"""An OATH seed for a card at activation: made here (secrets, as many bytes as the HMAC's hash), stored sealed
with the device (db_otp.py), and sent in the activation answer in a JWE to the device key, as escrowed keys
are; the device stores it on the card as an OTP key named issuer:user (docs/protocol.md, "One-time passwords")."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from vsc_provider.server import jose
from vsc_provider.server.db_otp import OtpSeed
from vsc_provider.server.otp_setting import SEED_BYTES, OtpSetting
from vsc_provider.server.profiles import Profile
from vsc_provider.server.state import IdentityServer


def setting_for(srv: IdentityServer, profile: Profile, code: str | None) -> OtpSetting | None:
    """The setting the activation code was made with, else the profile's; None: no seed."""
    stored = srv.db.activation_otp(code) if code is not None else None
    return OtpSetting.parse(json.loads(stored)) if stored is not None else profile.otp


def issuer_for(srv: IdentityServer, profile: Profile, setting: OtpSetting) -> str:
    """The setting's issuer, else the profile's branding name, else the server's host name."""
    if setting.issuer:
        return setting.issuer
    named = (profile.branding or {}).get("name")
    return (named or urlsplit(srv.public_url()).hostname or "vsc identity server").replace(":", " ")[:64]


def new_seed(srv: IdentityServer, device_id: str, profile: Profile, setting: OtpSetting) -> OtpSeed:
    return OtpSeed(
        device=device_id,
        kind=setting.type,
        algorithm=setting.algorithm,
        digits=setting.digits,
        period=setting.period,
        issuer=issuer_for(srv, profile, setting),
        seed=secrets.token_bytes(SEED_BYTES[setting.algorithm]),
        steps=setting.steps,
        resync=setting.resync if setting.type == "hotp" else 0,
    )


def answer(jwk: dict[str, Any], seed: OtpSeed, user: str) -> dict[str, Any]:
    """The activation answer's `otp`: what the card computes, its names, and the seed in a JWE to the device key."""
    out: dict[str, Any] = {
        "type": seed.kind,
        "algorithm": seed.algorithm,
        "digits": seed.digits,
        "issuer": seed.issuer,
        "account": user,
        "secret": jose.jwe_to(jwk, seed.seed),
    }
    if seed.kind == "totp":
        out["period"] = seed.period
    else:
        out["counter"] = 0
    return out
