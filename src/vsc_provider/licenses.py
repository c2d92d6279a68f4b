"""`vsc licenses`: vsc-provider and every installed package it needs at run time, with version and licence,
read from the installed packages' metadata (Requires-Dist followed recursively).

A requirement counts when its package is installed and it applies here: its environment marker holds, and a
requirement under an extra (`; extra == "socks"`) only when the requirer was asked for that extra. Markers are
evaluated with `packaging` when it is installed; without it, only the extra part of a marker is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from importlib import metadata

import click

PROJECT = "vsc-provider"
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;(.*))?$")
_EXTRA_IN_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_LONG_LICENSE = 80  # a License field longer than this (or over several lines) is the licence's text itself


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    license: str


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_holds(marker: str, extras: frozenset[str]) -> bool:
    try:
        from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
    except ImportError:
        wanted = _EXTRA_IN_MARKER.findall(marker)
        return not wanted or any(normalise(e) in extras for e in wanted)
    try:
        parsed = Marker(marker)
        return any(parsed.evaluate({"extra": extra}) for extra in (sorted(extras) or [""]))
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        wanted = _EXTRA_IN_MARKER.findall(marker)
        return not wanted or any(normalise(e) in extras for e in wanted)


def requirements(dist: metadata.Distribution, extras: frozenset[str]) -> list[tuple[str, frozenset[str]]]:
    """The (name, extras asked for) that `dist`, installed with `extras`, requires here."""
    found: list[tuple[str, frozenset[str]]] = []
    for text in dist.requires or []:
        match = _REQUIREMENT.match(text)
        if match is None:
            continue
        name, asked, marker = match.groups()
        if marker and not _marker_holds(marker.strip(), extras):
            continue
        wanted = frozenset(normalise(e) for e in (asked or "").split(",") if e.strip())
        found.append((normalise(name), wanted))
    return found


def _field(meta: metadata.PackageMetadata, name: str) -> str:
    values = meta.get_all(name) or []
    return str(values[0]).strip() if values else ""


def license_of(dist: metadata.Distribution) -> str:
    """License-Expression (SPDX), else a short License field, else the licence classifiers, else the License
    field's first line."""
    meta = dist.metadata
    expression = _field(meta, "License-Expression")
    if expression:
        return expression
    text = _field(meta, "License")
    if text.upper() == "UNKNOWN":
        text = ""
    if text and "\n" not in text and len(text) <= _LONG_LICENSE:
        return text
    classifiers = [
        c.split("::")[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::") and c.split("::")[-1].strip() != "OSI Approved"
    ]
    if classifiers:
        return "; ".join(classifiers)
    if text:
        return text.splitlines()[0].strip()[:_LONG_LICENSE] + " ..."
    return "unknown"


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def collect() -> list[Dependency]:
    """The project first, then every installed run-time dependency by name."""
    root = metadata.distribution(PROJECT)
    seen: dict[str, tuple[metadata.Distribution, set[str]]] = {normalise(PROJECT): (root, set())}
    todo: list[tuple[str, frozenset[str]]] = requirements(root, frozenset())
    while todo:
        name, extras = todo.pop()
        if name in seen:
            dist, done = seen[name]
            extras = extras - done
            if not extras:
                continue
        else:
            found = _installed(name)
            if found is None:
                continue
            dist, done = found, set()
            seen[name] = (dist, done)
        done |= extras
        todo.extend(requirements(dist, extras))
    rows = [
        Dependency(str(dist.metadata["Name"]), dist.version, license_of(dist))
        for key, (dist, _) in sorted(seen.items())
        if key != normalise(PROJECT)
    ]
    return [Dependency(str(root.metadata["Name"]), root.version, license_of(root)), *rows]


@click.command("licenses")
@click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts)")
def licenses(as_json: bool) -> None:
    """vsc-provider and every installed package it uses at run time, with version and licence."""
    rows = collect()
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    width = max(len(r.name) for r in rows)
    version_width = max(len(r.version) for r in rows)
    for r in rows:
        click.echo(f"{r.name:<{width}}  {r.version:<{version_width}}  {r.license}")
