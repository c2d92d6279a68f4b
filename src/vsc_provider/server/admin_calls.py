"""The admin's calls in one table: the HTTP API serves each at its route (behind the admin token), and
`vsc server ... --database` runs the same ones in-process on the storage (admin_local.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vsc_provider.provisioning import request_wire, wire
from vsc_provider.server import admin, relying_parties, requests
from vsc_provider.server.state import IdentityServer

Handler = Callable[[IdentityServer, dict[str, str], Any], dict[str, Any]]


@dataclass(frozen=True)
class AdminCall:
    method: str
    path: str  # a route: {name} stands for one path segment
    run: Handler  # (server, path parameters, JSON body or None) -> the answer
    status: int = 200
    body_limit: int = 0  # bytes of JSON body it reads; 0: it reads none

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when METHOD and PATH are this call's, else None."""
        if method != self.method:
            return None
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path)
        found = re.fullmatch(pattern, path)
        return None if found is None else found.groupdict()


def _as_admin_rp(srv: IdentityServer) -> relying_parties.RelyingParty:
    return relying_parties.admin(srv)  # the admin asks as the server's own relying party


ADMIN_CALLS: tuple[AdminCall, ...] = (
    AdminCall("POST", "/admin/activations", lambda s, _, b: admin.create_activation(s, b), 201, wire.MAX_BODY),
    AdminCall("GET", "/admin/devices", lambda s, _, __: {"devices": admin.devices(s)}),
    AdminCall("GET", "/admin/devices/{device}", lambda s, p, _: admin.device(s, p["device"])),
    AdminCall(
        "POST", "/admin/devices/{device}/{action}", lambda s, p, _: admin.device_action(s, p["device"], p["action"])
    ),
    AdminCall("POST", "/admin/relying-parties", lambda s, _, b: relying_parties.create(s, b), 201, wire.MAX_BODY),
    AdminCall(
        "POST",
        "/admin/requests",
        lambda s, _, b: requests.create(s, _as_admin_rp(s), b),
        201,
        request_wire.MAX_RP_BODY,
    ),
    AdminCall("GET", "/admin/requests/{id}", lambda s, p, _: requests.get(s, _as_admin_rp(s), p["id"])),
    AdminCall("POST", "/admin/requests/{id}/cancel", lambda s, p, _: requests.cancel(s, _as_admin_rp(s), p["id"])),
)


def find(method: str, path: str) -> tuple[AdminCall, dict[str, str]] | None:
    for call in ADMIN_CALLS:
        params = call.match(method, path)
        if params is not None:
            return call, params
    return None
