"""An example policy for the vsc agent: requests from relying parties that are not on a list are rejected at
once; the others are left to the user.

Install it by naming it (`VSC_POLICY=rp_allowlist:policy` with this directory on PYTHONPATH), or as an entry
point of your own package (docs/policies.md). The list is `VSC_ALLOWED_RPS`, comma-separated relying-party
names as the identity server registered them.
"""

from __future__ import annotations

import os

from vsc_provider.requests.model import Decision, PendingRequest


def allowed() -> set[str]:
    return {name.strip() for name in os.environ.get("VSC_ALLOWED_RPS", "").split(",") if name.strip()}


def policy(request: PendingRequest) -> Decision:
    if request.rp not in allowed():
        return Decision("reject", reason=f"relying party {request.rp!r} is not on this machine's list")
    return Decision("ask")
