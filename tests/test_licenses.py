"""`vsc licenses`: the project first, then exactly the installed run-time closure of its requirements (computed
here independently with packaging's parser), each with the licence its metadata states."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import run_vsc
from vsc_provider import licenses


def closure() -> set[str]:
    """Installed distributions vsc-provider needs at run time (no extras of its own; extras its requirements
    ask for are followed)."""
    found: dict[str, set[str]] = {}
    todo: list[tuple[str, set[str]]] = [("vsc-provider", set())]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in found and extras <= found[key]:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.setdefault(key, set()).update(extras)
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in sorted(found[key])] or [{"extra": ""}]
            if req.marker is None or any(Marker(str(req.marker)).evaluate(env) for env in envs):
                todo.append((req.name, set(req.extras)))
    return set(found)


def test_licenses_lists_the_project_first_then_its_runtime_closure():
    rows = json.loads(run_vsc("licenses", "--json").stdout)
    assert rows[0] == {"name": "vsc-provider", "version": metadata.version("vsc-provider"), "license": "Apache-2.0"}
    names = [canonicalize_name(r["name"]) for r in rows]
    assert len(names) == len(set(names))
    assert set(names) == closure()
    assert names[1:] == sorted(names[1:])
    by_name = {canonicalize_name(r["name"]): r for r in rows}
    crypto = by_name["cryptography"]
    assert crypto["version"] == metadata.version("cryptography")
    assert crypto["license"] == metadata.metadata("cryptography")["License-Expression"]
    assert "Apache-2.0" in crypto["license"]
    # Packages only the tests need, and extras nobody asked for, are not run-time dependencies.
    for absent in ("pytest", "python-pkcs11", "mypy", "h2", "trio"):
        assert absent not in by_name
    for row in rows:
        assert row["license"] and row["license"] != "unknown", row
    text = run_vsc("licenses").stdout.splitlines()
    assert text[0].split() == ["vsc-provider", metadata.version("vsc-provider"), "Apache-2.0"]
    assert len(text) == len(rows)


def dist(tmp_path: Path, name: str, fields: str) -> metadata.Distribution:
    info = tmp_path / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{fields}")
    return metadata.PathDistribution(info)


def test_licence_fields_in_order_of_preference(tmp_path):
    both = dist(tmp_path, "a", "License-Expression: MIT OR Apache-2.0\nLicense: MIT\n")
    assert licenses.license_of(both) == "MIT OR Apache-2.0"
    short = dist(tmp_path, "b", "License: BSD\nClassifier: License :: OSI Approved :: MIT License\n")
    assert licenses.license_of(short) == "BSD"
    long_text = "Copyright (c) someone\n        Permission is hereby granted, free of charge, to any person"
    classified = dist(
        tmp_path, "c", f"License: {long_text}\nClassifier: License :: OSI Approved :: BSD License\nClassifier: X :: Y\n"
    )
    assert licenses.license_of(classified) == "BSD License"
    only_text = dist(tmp_path, "d", f"License: {long_text}\n")
    assert licenses.license_of(only_text) == "Copyright (c) someone ..."
    assert licenses.license_of(dist(tmp_path, "e", "License: UNKNOWN\n")) == "unknown"


def test_requirements_follow_markers_and_asked_extras(tmp_path):
    d = dist(
        tmp_path,
        "f",
        "Requires-Dist: base>=1\n"
        'Requires-Dist: old; python_version < "3.0"\n'
        "Requires-Dist: Fancy_Thing[Extra1,x2]; extra == 'fancy'\n"
        "Requires-Dist: other; extra == 'other'\n",
    )
    assert licenses.requirements(d, frozenset()) == [("base", frozenset())]
    assert licenses.requirements(d, frozenset({"fancy"})) == [
        ("base", frozenset()),
        ("fancy-thing", frozenset({"extra1", "x2"})),
    ]
