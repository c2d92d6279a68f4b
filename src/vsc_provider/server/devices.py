"""/v1/status and /v1/delete: a device asks what the server holds for it, or ends its identity."""

from __future__ import annotations

import os
import time
from typing import Any

from vsc_provider.server import jose
from vsc_provider.server.db import Device
from vsc_provider.server.state import IdentityServer


def renew_window() -> float:
    """Seconds before a certificate's notAfter from which the server asks the card to renew
    (VSC_SERVER_RENEW_DAYS, default 30 days)."""
    return float(os.environ.get("VSC_SERVER_RENEW_DAYS", "30")) * 86400.0


def wants_renewal(srv: IdentityServer, dev: Device) -> bool:
    """The admin's renew flag, or a certificate of the device's that expires within renew_window() (its
    notAfter as stored when it was issued)."""
    return dev.renew or srv.db.expiring(dev.id, time.time() + renew_window())


def status(srv: IdentityServer, body: Any) -> dict[str, Any]:
    v = srv.verify(body, "/v1/status", new_key=False)
    assert v.device is not None
    dev = v.device
    renew = dev.state == "active" and wants_renewal(srv, dev)
    answer: dict[str, Any] = {"state": dev.state, "renew": renew}
    if dev.state == "active" and srv.db.unblock_pending(dev.id):
        if v.payload.get("unblocked") is True:  # the card cleared its counter with what it got last time
            srv.db.set_device(dev.id, unblock=0)
        else:
            so_pin = srv.db.so_pin(dev.id)
            if so_pin is not None:
                answer["unblock"] = jose.jwe_to(dev.jwk, so_pin)
    return answer


def delete(srv: IdentityServer, body: Any) -> dict[str, Any]:
    _, dev = srv.verify_active(body, "/v1/delete")
    srv.db.end_device(dev.id, "deleted")
    return {"state": "deleted"}
