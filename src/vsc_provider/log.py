"""Logging set-up shared by the module and the CLI: VSC_LOG=path|stderr, VSC_DEBUG=1 traces every call.

Nothing logged anywhere carries a PIN or key bytes: callers log names, handles and return values only.

`logging` costs about 10 ms to import (with `traceback`, `string`, `weakref`) and every host pays it at
C_Initialize, yet a module that works logs nothing unless asked to. So the module's loggers are `Logger`
proxies that import and configure `logging` the first time something is written.
"""

from __future__ import annotations

import os
from typing import Any

TRACE = False
_wanted = False  # configure_from_environment() was called: install the handler when logging starts
_installed = False


def configure_from_environment() -> None:
    """Read VSC_DEBUG now (the hot path tests TRACE). Asked-for logging (VSC_DEBUG, VSC_LOG) is set up at
    once, so that every `vsc` logger, plain `logging` ones included, writes there; otherwise the handler is
    installed at the first log line."""
    global TRACE, _wanted
    _wanted = True
    TRACE = os.environ.get("VSC_DEBUG", "") not in ("", "0")
    if TRACE or os.environ.get("VSC_LOG"):
        _install()


def _install() -> None:
    global _installed
    if _installed:
        return
    import logging
    import sys

    target = os.environ.get("VSC_LOG", "")
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if target and target != "stderr":
        try:
            handler = logging.FileHandler(target)
        except OSError as exc:  # an unwritable VSC_LOG must not turn a log line into a failure
            print(f"vsc: cannot open VSC_LOG {target!r} ({exc}); logging to stderr", file=sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s vsc[%(process)d] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("vsc")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if TRACE else logging.WARNING)
    root.propagate = False
    _installed = True


class Logger:
    """A named logger that imports `logging` on first use; same calls as logging.Logger's."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def _get(self) -> Any:
        if self._logger is None:
            import logging

            if _wanted:
                _install()
            self._logger = logging.getLogger(self.name)
        return self._logger

    def debug(self, msg: str, *args: object) -> None:
        self._get().debug(msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self._get().info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self._get().warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self._get().error(msg, *args)

    def exception(self, msg: str, *args: object) -> None:
        self._get().exception(msg, *args)


def get(name: str) -> Logger:
    return Logger(name)
