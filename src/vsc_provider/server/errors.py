"""The one way a handler refuses a request: ProtocolError, turned into a JSON error answer by the app."""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """A refused request: HTTP status, a machine-readable code and a sentence for people."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.extra = status, error, detail, extra
