"""The package's layers, read from its source with `ast`: no import cycles, the token layer at the bottom, SQL
only in the storage modules, and the card store reached only through the token layer.

Every `import` and `from ... import` counts, those inside functions too (a late import is still a
dependency). `native/glue.py` lives outside the package and is not part of the graph.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import vsc_provider

PACKAGE = Path(vsc_provider.__file__).resolve().parent
ROOT = "vsc_provider"
# All that the token layer (the card model, the card service, the store) may import, directly or through the
# modules it imports: itself, the PKCS#11 vocabulary (ck/), and three leaves of the package root.
TOKEN_MAY_IMPORT = (f"{ROOT}.token", f"{ROOT}.ck", f"{ROOT}.config", f"{ROOT}.log", f"{ROOT}.sqlite_file")


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


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def outside_allowed(edges: dict[str, set[str]], layer: str, allowed: tuple[str, ...]) -> list[str]:
    """Each import by LAYER's modules, or by what they reach through imports, of a module not in ALLOWED."""
    reached = [m for m in edges if within(m, (layer,))]
    seen = set(reached)
    wrong = []
    while reached:
        module = reached.pop()
        for target in sorted(edges.get(module, ())):
            if not within(target, allowed):
                wrong.append(f"{module} imports {target}")
            elif target not in seen:
                seen.add(target)
                reached.append(target)
    return sorted(wrong)


def test_the_token_layer_imports_only_what_is_below_it() -> None:
    token = f"{ROOT}.token"
    # the check itself, on made-up graphs: a front end imported directly, or through an allowed leaf
    oath = {f"{token}.engine": {f"{token}.store", f"{ROOT}.oath.codes"}, f"{token}.store": {f"{ROOT}.sqlite_file"}}
    assert outside_allowed(oath, token, TOKEN_MAY_IMPORT) == [f"{token}.engine imports {ROOT}.oath.codes"]
    through = {f"{token}.engine": {f"{ROOT}.config"}, f"{ROOT}.config": {f"{ROOT}.cli_support"}}
    assert outside_allowed(through, token, TOKEN_MAY_IMPORT) == [f"{ROOT}.config imports {ROOT}.cli_support"]
    edges = graph()
    assert f"{ROOT}.sqlite_file" in edges[f"{token}.store"]
    wrong = outside_allowed(edges, token, TOKEN_MAY_IMPORT)
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


# A string constant (docstrings aside) that starts an SQL statement: a keyword then a space (`"DELETE"` alone is an
# HTTP method), or a whole transaction statement.
SQL_STATEMENT = re.compile(
    r"\s*(?:(SELECT|INSERT|UPDATE|DELETE|REPLACE|PRAGMA|CREATE|ALTER|DROP|LISTEN|NOTIFY|SAVEPOINT|RELEASE)\s"
    r"|(BEGIN|COMMIT|ROLLBACK)(?:\s+(?:IMMEDIATE|EXCLUSIVE|DEFERRED|TRANSACTION))?\s*;?\s*$)"
)
# Where SQL lives: the card store (the store and the audit log's stored form), the identity server's storage
# modules, and the one SQLite opener both use.
SQL_HOMES = (f"{ROOT}.token.store", f"{ROOT}.token.audit_store", f"{ROOT}.sqlite_file")
SQL_HOME_PREFIX = f"{ROOT}.server.db"  # server/db.py and server/db_*.py
# The push bus between server instances listens on its own PostgreSQL connection: LISTEN is all it says
# (its NOTIFY goes through server/db_backend.py).
SQL_ALLOWED = {f"{ROOT}.server.push_bus": {"LISTEN"}}


def sql_statements(source: str) -> list[tuple[int, str]]:
    """(line, keyword) of each SQL statement written as a string constant in SOURCE, docstrings left out."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            match = SQL_STATEMENT.match(node.value)
            if match:
                found.append((node.lineno, match.group(1) or match.group(2)))
    return sorted(found)


def test_sql_lives_only_in_the_storage_modules() -> None:
    # the check itself: statements found in plain and f-strings, not in docstrings, prose or HTTP methods
    sample = '''"""SELECT a FROM b is how the docstring puts it."""
def f(db, n):
    """DELETE FROM x, says this docstring."""
    db.execute("BEGIN")
    db.execute(f"PRAGMA busy_timeout={n}")
    db.execute("UPDATE t SET a = ? WHERE id = ?", (1, 2))
    return ("DELETE", "Select one card", "COMMIT")
'''
    assert sql_statements(sample) == [(4, "BEGIN"), (5, "PRAGMA"), (6, "UPDATE"), (7, "COMMIT")]
    found = {name: sql_statements(path.read_text()) for name, path in modules().items()}
    assert {kw for _, kw in found[f"{ROOT}.token.store"]} >= {"SELECT", "INSERT", "BEGIN", "PRAGMA"}
    wrong = sorted(
        f"{name}:{line} {keyword}"
        for name, statements in found.items()
        if name not in SQL_HOMES and not name.startswith(SQL_HOME_PREFIX)
        for line, keyword in statements
        if keyword not in SQL_ALLOWED.get(name, ())
    )
    assert not wrong, "SQL outside the storage modules: " + "; ".join(wrong)


# Outside token/, the engine's store may be named only for its file's path (in a message); the one other use is
# pkcs11/state.py holding the store's connection lock across fork(), so no thread is inside SQLite when the child
# is made (the lock, not the store's contents).
STORE_USES_ALLOWED = {"path"}
STORE_USE_EXCEPTIONS = {(f"{ROOT}.pkcs11.state", "lock")}


def store_uses(source: str) -> list[tuple[int, str]]:
    """(line, what follows) of each `<x>.store` in SOURCE: the attribute taken from it (`transaction`, `lock`...),
    or "" when the store itself is passed or kept."""
    tree = ast.parse(source)
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "store":
            parent = parents.get(id(node))
            found.append((node.lineno, parent.attr if isinstance(parent, ast.Attribute) else ""))
    return sorted(found)


def test_front_ends_reach_the_store_only_through_the_token_layer() -> None:
    # the check itself: a transaction opened, the store passed on, its path named
    sample = """with ctx.engine.store.transaction() as db:
    pass
sealed_pin.read(eng.store, card)
print(engine.store.path)
"""
    assert store_uses(sample) == [(1, "transaction"), (3, ""), (4, "path")]
    token = f"{ROOT}.token"
    wrong = sorted(
        f"{name}:{line} .store{'.' + after if after else ''}"
        for name, path in modules().items()
        if not within(name, (token,))
        for line, after in store_uses(path.read_text())
        if after not in STORE_USES_ALLOWED and (name, after) not in STORE_USE_EXCEPTIONS
    )
    assert not wrong, "the store reached outside token/: " + "; ".join(wrong)
