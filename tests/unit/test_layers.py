"""The package's shape, checked: no import cycle, no layer importing one above it, no module
too long to hold in mind without a written reason (docs/ARCHITECTURE.md).

`python -m tests.unit.test_layers` prints the measures (cycles, upward imports, depth,
sizes) that the architecture notes quote.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "singlerun"
MAX_LINES = 300
# Lowest first. A module may import its own layer and those below it, never one above.
# Modules not named here are in layer "shared" (the vocabulary every layer uses).
LAYERS = ("shared", "store", "supervision", "operator", "run", "cli")
LAYER_OF = {
    "singlerun.store": "store",
    "singlerun.signals": "supervision",
    "singlerun.watchdog": "supervision",
    "singlerun.supervise": "supervision",
    "singlerun.spawn": "supervision",
    "singlerun.standby": "supervision",
    "singlerun.attempts": "supervision",
    "singlerun.ticker": "supervision",
    "singlerun.runner": "run",
    "singlerun.runconfig": "run",
    "singlerun.taking": "run",
    "singlerun.bookkeeping": "run",
    "singlerun.stopping": "run",
    "singlerun.status": "operator",
    "singlerun.render": "operator",
    "singlerun.monitor": "operator",
    "singlerun.metrics": "operator",
    "singlerun.summary": "operator",
    "singlerun.commands": "cli",
    "singlerun.monitoring_commands": "cli",
    "singlerun.options": "cli",
    "singlerun.cli": "cli",
    "singlerun.cligroup": "cli",
    "singlerun.launch": "cli",
    "singlerun.argvmask": "cli",
    "singlerun.__main__": "cli",
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    for prefix in sorted(LAYER_OF, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYER_OF[prefix]
    return "shared"


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.Module, typing_too: bool) -> set[str]:
    """The module names a tree imports, with or without those under `if TYPE_CHECKING:`."""
    hidden: set[int] = set()
    if not typing_too:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _type_checking(node):
                hidden.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@cache
def imports(typing_too: bool = False) -> dict[str, set[str]]:
    """Each module's imports of the package's modules: at import time, in functions
    (lazily), and with `typing_too` under `if TYPE_CHECKING:`."""
    known = modules()
    return {
        module: {
            name
            for name in _imported(ast.parse(path.read_text()), typing_too)
            if name in known and name != module
        }
        for module, path in known.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted(
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if rank[layer(b)] > rank[layer(a)]
        and not (a.startswith("singlerun.store") and b == "singlerun.store")
    )


def depth(graph: dict[str, set[str]]) -> int:
    """The longest chain of imports (cycles cut)."""
    memo: dict[str, int] = {}

    def longest(v: str, seen: frozenset[str]) -> int:
        if v in memo:
            return memo[v]
        best = 1 + max((longest(w, seen | {v}) for w in graph[v] if w not in seen), default=0)
        memo[v] = best
        return best

    return max(longest(v, frozenset()) for v in graph)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _has_reason(path: Path) -> bool:
    """A long module says why at its top: a line of its docstring starting 'Long:'."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return any(line.startswith("Long:") for line in doc.splitlines())


def test_no_import_cycle_even_for_types() -> None:
    assert cycles(imports(typing_too=True)) == []


def test_no_layer_imports_one_above_it() -> None:
    assert upward(imports()) == []


def test_the_store_layer_knows_nothing_of_running_a_job() -> None:
    banned = ("singlerun.runner", "singlerun.cli", "singlerun.supervise", "singlerun.commands")
    offenders = [
        (a, b)
        for a, targets in imports(typing_too=True).items()
        if a.startswith("singlerun.store")
        for b in targets
        if b.startswith(banned)
    ]
    assert offenders == []


def test_no_module_is_long_without_a_reason() -> None:
    long = [
        (name, _lines(path))
        for name, path in modules().items()
        if _lines(path) > MAX_LINES and not _has_reason(path)
    ]
    assert long == []


def report() -> str:
    runtime, typed = imports(), imports(typing_too=True)
    sizes = sorted(((_lines(p), n) for n, p in modules().items()), reverse=True)
    rows = [
        f"modules: {len(sizes)}, lines: {sum(s for s, _ in sizes)}",
        f"import cycles (run time): {cycles(runtime) or 'none'}",
        f"import cycles (with type-only imports): {cycles(typed) or 'none'}",
        f"upward imports: {upward(runtime) or 'none'}",
        f"longest import chain: {depth(runtime)} modules",
        f"modules over {MAX_LINES} lines: "
        + (", ".join(f"{n} ({s})" for s, n in sizes if s > MAX_LINES) or "none"),
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    print(report())
