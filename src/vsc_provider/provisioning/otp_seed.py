"""An OATH seed the server sent at activation (a JWE to the device key, like an escrowed key) stored on the
card as an OTP key named issuer:user, as `vsc otp add` stores one: `vsc otp list/code` and PKCS#11's
CKM_HOTP / CKM_VSC_TOTP see it, and the server verifies its codes for relying parties."""

from __future__ import annotations

from typing import Any

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.token import otp, otp_keys
from vsc_provider.token.engine import Card, Engine


def install(eng: Engine, card: Card, dev: DeviceKey, entry: Any) -> str | None:
    """Store the activation answer's `otp` on the card (the user logged in); its name, or None without one."""
    if entry is None:
        return None
    try:
        spec = otp.OtpSpec(
            str(entry["type"]),
            str(entry["algorithm"]),
            int(entry["digits"]),
            period=int(entry.get("period", 30)),
            counter=int(entry.get("counter", 0)),
        ).check()
        issuer, account, sealed = str(entry["issuer"]), str(entry["account"]), str(entry["secret"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CKRError(C.CKR_DEVICE_ERROR, "the server's OTP seed is not in the protocol's form") from None
    obj = otp_keys.add(eng, card, spec, dev.open(sealed), issuer, account)
    return otp_keys.display_name(obj)
