"""How `vsc setup ...` commands write the one file they own: idempotently, and removed again with --undo."""

from __future__ import annotations

from pathlib import Path


def write_or_remove(path: Path, text: str, undo: bool) -> list[str]:
    """Write `text` to `path` (or with `undo` remove it); the changes made, as lines for the user."""
    if undo:
        if not path.exists():
            return []
        path.unlink()
        return [f"removed {path}"]
    if path.exists() and path.read_text() == text:
        return []
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [f"{'updated' if existed else 'wrote'} {path}"]
