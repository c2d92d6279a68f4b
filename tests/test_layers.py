"""The package's layers, read from its source with `ast`: no import cycles, and the token layer at the bottom.

Every `import` and `from ... import` counts, those inside functions too (a late import is still a
dependency). `native/glue.py` lives outside the package and is not part of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vsc_provider

PACKAGE = Path(vsc_provider.__file__).resolve().parent
ROOT = "vsc_provider"
# What the token layer (the card model, the card service, the store) must never import.
ABOVE_TOKEN = ("pkcs11", "minidriver", "piv", "provisioning", "server", "api", "cli", "clients", "demo")


def module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The package module that an imported name refers to (`a.b.c` may be the function c of module a.b)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            # `from a import b` names module a.b when that is a module, else something inside a
            targets = [f"{prefix}.{alias.name}" for alias in node.names] or [prefix]
        for target in targets:
            if not target.startswith(ROOT):
                continue
            hit = resolve(target, known)
            if hit is not None and hit != name:
                found.add(hit)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_graph_sees_late_imports() -> None:
    # the check itself: modules found, edges read, a cycle recognised
    edges = graph()
    assert "vsc_provider.token.engine" in edges
    assert "vsc_provider.pkcs11.state" in edges["vsc_provider.pkcs11.general"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(g) for g in found)


def test_the_token_layer_imports_no_front_end() -> None:
    banned = tuple(f"{ROOT}.{name}" for name in ABOVE_TOKEN)
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module.startswith(f"{ROOT}.token")
        for target in targets
        if any(target == b or target.startswith(b + ".") for b in banned)
    )
    assert not wrong, "; ".join(wrong)


def test_the_python_api_and_provisioning_use_the_card_service_not_pkcs11() -> None:
    # api.py, certify.py (under the CLI) and provisioning/ reach cards through token/service.py and
    # token/access.py: no PKCS#11 sessions, handles or output buffers
    users = (f"{ROOT}.api", f"{ROOT}.certify", f"{ROOT}.provisioning")
    banned = f"{ROOT}.pkcs11"
    edges = graph()
    assert "vsc_provider.token.access" in edges[f"{ROOT}.api"]
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in edges.items()
        if any(module == u or module.startswith(u + ".") for u in users)
        for target in targets
        if target == banned or target.startswith(banned + ".")
    )
    assert not wrong, "; ".join(wrong)


def test_the_minidriver_card_edge_is_a_front_end_beside_pkcs11() -> None:
    # minidriver/ reaches cards through the card service (token/service.py, token/access.py) like api.py does:
    # never through PKCS#11's sessions and handles, the Python API, the CLI or the identity server
    edges = graph()
    md = f"{ROOT}.minidriver"
    assert f"{ROOT}.token.service" in edges[f"{md}.signing"]
    assert f"{ROOT}.token.access" in edges[f"{md}.auth"]
    banned = tuple(f"{ROOT}.{name}" for name in ("pkcs11", "api", "cli", "server", "requests"))
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in edges.items()
        if module == md or module.startswith(md + ".")
        for target in targets
        if any(target == b or target.startswith(b + ".") for b in banned)
    )
    assert not wrong, "; ".join(wrong)


def test_the_push_relay_imports_nothing_else_of_the_package() -> None:
    # relay/ runs apart from the identity server (often on another machine) and only ever sees topics and
    # opaque JWEs: no server, token, provisioning or card code may come in; the one shared helper, the web
    # service glue both servers use, is a leaf that imports nothing of the package itself
    relay = f"{ROOT}.relay"
    shared = f"{ROOT}.web_service"
    edges = graph()
    assert f"{relay}.hub" in edges[f"{relay}.app"]
    assert not edges[shared], f"{shared} must stay a leaf: it imports {sorted(edges[shared])}"
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in edges.items()
        if module == relay or module.startswith(relay + ".")
        for target in targets
        if not (target == relay or target.startswith(relay + ".") or target == shared)
    )
    assert not wrong, "; ".join(wrong)


def test_the_piv_card_edge_is_a_front_end_over_the_card_service() -> None:
    # piv/ answers APDUs from the card service (token/service.py, token/access.py): never through PKCS#11,
    # the Python API, the CLI module, the identity server, pending requests or the minidriver card edge
    edges = graph()
    piv = f"{ROOT}.piv"
    assert f"{ROOT}.token.service" in edges[f"{piv}.keys"]
    assert f"{ROOT}.token.access" in edges[f"{piv}.pins"]
    banned = tuple(f"{ROOT}.{name}" for name in ("pkcs11", "api", "cli", "server", "requests", "minidriver"))
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in edges.items()
        if module == piv or module.startswith(piv + ".")
        for target in targets
        if any(target == b or target.startswith(b + ".") for b in banned)
    )
    assert not wrong, "; ".join(wrong)
