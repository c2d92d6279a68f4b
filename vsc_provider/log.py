"""Logging set-up shared by the module and the CLI: VSC_LOG=path|stderr, VSC_DEBUG=1 traces every call.

Nothing logged anywhere carries a PIN or key bytes: callers log names, handles and return values only.
"""

from __future__ import annotations

import logging
import os
import sys

TRACE = False
_configured = False


def configure_from_environment() -> None:
    global TRACE, _configured
    if _configured:
        return
    _configured = True
    TRACE = os.environ.get("VSC_DEBUG", "") not in ("", "0")
    target = os.environ.get("VSC_LOG", "")
    handler: logging.Handler
    if target and target != "stderr":
        handler = logging.FileHandler(target)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s vsc[%(process)d] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("vsc")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if TRACE else logging.WARNING)
    root.propagate = False
