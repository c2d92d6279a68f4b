"""`vsc setup url-handler`: make the desktop send personal:// links to `vsc open` (an xdg desktop entry for
x-scheme-handler/personal, made the default with xdg-mime). Idempotent; `--undo` removes both.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

DESKTOP_FILE = "vsc-personal.desktop"
MIME_TYPE = "x-scheme-handler/personal"


class UrlHandlerError(click.ClickException):
    pass


def applications_dir() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "applications"


def mimeapps_list() -> Path:
    """Where `xdg-mime default` records the user's choice (the freedesktop mime-apps spec's user file)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")) / "mimeapps.list"


def vsc_command() -> list[str]:
    """How the desktop should start this `vsc`: the console script beside this interpreter, else the one on
    PATH, else the interpreter running the CLI module."""
    beside = Path(sys.executable).parent / "vsc"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("vsc")
    return [found] if found else [sys.executable, "-m", "vsc_provider.cli"]


def _exec_arg(arg: str) -> str:
    """One argument of a desktop entry's Exec key, quoted as the Desktop Entry Specification asks."""
    arg = arg.replace("%", "%%")  # % starts a field code (%u)
    if not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`"):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    # The key's value is itself a string with escapes: each backslash is written twice again.
    return '"' + escaped.replace("\\", "\\\\") + '"'


def desktop_entry() -> str:
    command = " ".join(_exec_arg(a) for a in vsc_command())
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=vsc personal:// links\n"
        "Comment=Activate virtual smart cards and approve requests from personal:// links\n"
        f"Exec={command} open %u\n"
        # A terminal: an activation link asks for the new card's PIN there.
        "Terminal=true\n"
        "NoDisplay=true\n"
        f"MimeType={MIME_TYPE};\n"
    )


def _run(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if result.returncode != 0:
        raise UrlHandlerError(f"{' '.join(cmd)} failed: {(result.stdout + result.stderr).strip()}")
    return result.stdout.strip()


def _xdg_mime() -> str:
    path = shutil.which("xdg-mime")
    if path is None:
        raise UrlHandlerError("xdg-mime not found: install xdg-utils (Debian: apt-get install xdg-utils)")
    return path


def _refresh_cache(directory: Path) -> None:
    """The mimeinfo.cache that some desktops read instead of the entries (when desktop-file-utils is there)."""
    tool = shutil.which("update-desktop-database")
    if tool is not None:
        _run([tool, str(directory)])


def _read_mimeapps(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    if path.exists():
        parser.read(path)
    return parser


def _is_default() -> bool:
    """Our entry is the user's recorded choice (a desktop may find it through its MimeType alone, but a choice
    recorded for another program would win there)."""
    parser = _read_mimeapps(mimeapps_list())
    section = "Default Applications"
    return parser.has_option(section, MIME_TYPE) and parser.get(section, MIME_TYPE).split(";")[0] == DESKTOP_FILE


def _forget_default() -> bool:
    """Remove our entry as the handler of personal:// from mimeapps.list (xdg-mime has no command for it),
    editing only those lines so that the user's other choices and comments stay as they are."""
    path = mimeapps_list()
    if not path.exists():
        return False
    kept: list[str] = []
    section = ""
    changed = False
    for line in path.read_text().splitlines(keepends=True):
        text = line.strip()
        if text.startswith("["):
            section = text
        name, sep, value = text.partition("=")
        if section in ("[Default Applications]", "[Added Associations]") and sep and name.strip() == MIME_TYPE:
            entries = [d for d in value.split(";") if d.strip()]
            rest = [d for d in entries if d.strip() != DESKTOP_FILE]
            if rest != entries:
                changed = True
                if rest:
                    kept.append(f"{MIME_TYPE}={';'.join(rest)};\n")
                continue
        kept.append(line)
    if changed:
        path.write_text("".join(kept))
    return changed


def install(undo: bool = False) -> list[str]:
    """Write (or remove) the desktop entry and the default handler; the list of changes made."""
    xdg_mime = _xdg_mime()
    directory = applications_dir()
    target = directory / DESKTOP_FILE
    if undo:
        changes: list[str] = []
        if _forget_default():
            changes.append(f"removed {DESKTOP_FILE} as the handler of {MIME_TYPE} from {mimeapps_list()}")
        if target.exists():
            target.unlink()
            _refresh_cache(directory)
            changes.append(f"removed {target}")
        return changes
    changes = []
    text = desktop_entry()
    if not (target.exists() and target.read_text() == text):
        existed = target.exists()
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        _refresh_cache(directory)
        changes.append(f"{'updated' if existed else 'wrote'} {target}")
    if not _is_default():
        _run([xdg_mime, "default", DESKTOP_FILE, MIME_TYPE])
        changes.append(f"made {DESKTOP_FILE} the handler of {MIME_TYPE} (xdg-mime default)")
    return changes


@click.command("url-handler")
@click.option("--undo", is_flag=True, help="remove the desktop entry and the handler")
def setup_url_handler(undo: bool) -> None:
    """Send personal:// links from the browser and other programs to `vsc open`."""
    changes = install(undo)
    if not changes:
        click.echo(f"nothing to change for {MIME_TYPE}")
    for change in changes:
        click.echo(change)
