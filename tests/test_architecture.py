"""The shape of the house, checked by reading every module's imports with `ast`: no cycles between
modules, no import from a lower layer to a higher one, a framework-free domain, and environment
variables read only by the composition root (`entrypoints/`)."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("domain", "application", "projections", "adapters", "web", "entrypoints")
# Lower index = lower layer. adapters and projections sit side by side: adapters may read
# projections (views), projections never import adapters.
LAYER = {"domain": 0, "application": 1, "projections": 2, "adapters": 3, "web": 4, "entrypoints": 5}
DOMAIN_MAY_IMPORT = {"eventsourcing.domain"}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (resolved to a module of the project when it is one)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(name: str) -> str | None:
    """The project module an import names (`a.b.c` may be module `a.b` with attribute `c`)."""
    known = modules()
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def imports() -> tuple[Import, ...]:
    found = []
    for source, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
            else:
                continue
            for name in names:
                found.append(Import(source, _resolve(name) or name, node.lineno))
    return tuple(found)


def internal_edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for imp in imports():
        if imp.target in graph and imp.target != imp.source and not imp.source.startswith(imp.target + "."):
            # importing one's own package's __init__ is not an edge of the graph (Python runs it first anyway)
            graph[imp.source].add(imp.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(internal_edges()) == []


def test_no_upward_imports():
    upward = []
    for imp in imports():
        top_source, top_target = imp.source.split(".")[0], imp.target.split(".")[0]
        if top_target in LAYER and LAYER[top_target] > LAYER[top_source]:
            upward.append(f"{imp.source}:{imp.line} imports {imp.target}")
        if top_source == "projections" and top_target == "adapters":
            upward.append(f"{imp.source}:{imp.line} imports {imp.target} (projections stay below adapters)")
    assert upward == []


def test_domain_imports_only_the_standard_library_and_eventsourcing_domain():
    stdlib = sys.stdlib_module_names
    foreign = []
    for imp in imports():
        if not imp.source.startswith("domain"):
            continue
        top = imp.target.split(".")[0]
        if top == "domain" or top in stdlib or top == "__future__" or imp.target == "":
            continue
        if any(imp.target == allowed or imp.target.startswith(allowed + ".") for allowed in DOMAIN_MAY_IMPORT):
            continue
        foreign.append(f"{imp.source}:{imp.line} imports {imp.target}")
    assert foreign == []


def test_only_entrypoints_read_the_environment():
    readers = []
    for name, path in modules().items():
        if name.startswith("entrypoints"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb") and (
                isinstance(node.value, ast.Name) and node.value.id == "os"
            ):
                readers.append(f"{name}:{node.lineno} os.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name in ("environ", "getenv", "environb") for a in node.names
            ):
                readers.append(f"{name}:{node.lineno} from os import …")
    assert readers == []


def test_the_checks_see_the_whole_tree():
    # guards the checks above against passing vacuously (a moved folder, a parse that finds nothing)
    assert len(modules()) > 60
    assert any(i.source.startswith("web") and i.target.startswith("application") for i in imports())
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
