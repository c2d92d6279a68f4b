"""The administrator's API (/admin/...), behind the bearer token in admin.json: activation links, the
device list, and delete / renew / unblock of one device."""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from starlette.requests import Request

from vsc_provider.provisioning import wire
from vsc_provider.server.activation import ACTIVATION_TTL, drop_unconfirmed
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.otp_setting import OtpSetting
from vsc_provider.server.state import IdentityServer


def check_admin(srv: IdentityServer, request: Request) -> None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:].encode(), srv.admin_token.encode()):
        raise ProtocolError(401, "unauthorized", "admin requests carry the bearer token from admin.json")


def create_activation(srv: IdentityServer, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(400, "malformed", "expected a JSON object")
    user, profile = body.get("user"), body.get("profile", "default")
    if not isinstance(user, str) or not 1 <= len(user) <= 64 or not user.isprintable():
        raise ProtocolError(400, "bad_user", "user is 1 to 64 printable characters")
    if not isinstance(profile, str) or profile not in srv.profiles:
        raise ProtocolError(400, "bad_profile", f"profile is one of {', '.join(sorted(srv.profiles))}")
    otp = None
    if body.get("otp") is not None:  # an OATH seed for this card, whatever the profile says
        try:
            otp = OtpSetting.parse(body["otp"])
        except ValueError as exc:
            raise ProtocolError(400, "bad_otp", str(exc)) from None
    code = secrets.token_urlsafe(18)
    srv.db.add_activation(code, user, profile, ACTIVATION_TTL, otp=None if otp is None else json.dumps(otp.to_json()))
    link = wire.ActivationLink(srv.public_url(), code, srv.link_pin)
    out = {"link": str(link), "user": user, "profile": profile, "expires_in": ACTIVATION_TTL}
    if otp is not None:
        out["otp"] = otp.to_json()
    return out


def devices(srv: IdentityServer) -> list[dict[str, Any]]:
    drop_unconfirmed(srv)
    return srv.db.devices()


def device(srv: IdentityServer, device_id: str) -> dict[str, Any]:
    """One device as the admin sees it, with its registered TPM key when it has one."""
    found = srv.db.devices(device_id)
    if not found:
        raise ProtocolError(404, "unknown_device", "no such device")
    return found[0]


def device_action(srv: IdentityServer, device_id: str, action: str) -> dict[str, Any]:
    if srv.db.device(device_id) is None:
        raise ProtocolError(404, "unknown_device", "no such device")
    if action == "delete":
        srv.db.end_device(device_id, "deleted")
    elif action == "renew":
        srv.db.set_device(device_id, renew=1)
    elif action == "unblock":
        # the server's counter now; the card's own at its next contact (when the server holds its SO PIN)
        srv.db.set_device(
            device_id, pin_failures=0, pin_blocked_until=0.0, unblock=int(srv.db.so_pin(device_id) is not None)
        )
        srv.db.otp_unblock(device_id)  # and the wrong-code counter of its OATH seed
    else:
        raise ProtocolError(404, "unknown_action", "actions: delete, renew, unblock")
    return {"device": device_id, "done": action}
