"""/v1/status and /v1/delete: a device asks what the server holds for it, or ends its identity."""

from __future__ import annotations

from typing import Any

from vsc_provider.server.state import IdentityServer


def status(srv: IdentityServer, body: Any) -> dict[str, Any]:
    v = srv.verify(body, "/v1/status", new_key=False)
    assert v.device is not None
    return {"state": v.device.state, "renew": v.device.renew}


def delete(srv: IdentityServer, body: Any) -> dict[str, Any]:
    _, dev = srv.verify_active(body, "/v1/delete")
    srv.db.end_device(dev.id, "deleted")
    return {"state": "deleted"}
