"""Identifiers the server hands out that people type on command lines (devices, requests, relying parties)."""

from __future__ import annotations

import secrets


def typed_id(nbytes: int = 16) -> str:
    """NBYTES random bytes, base64url, never starting with '-': an id is typed on command lines (`vsc server
    device action ID ...`, `vsc requests approve ID`), where a leading '-' reads as an option (1 id in 64 did)."""
    while True:
        made = secrets.token_urlsafe(nbytes)
        if not made.startswith("-"):
            return made
