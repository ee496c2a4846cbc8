"""The imports of poso_sim show its layers: read from the source (AST), every import, at module top or inside a
function, is checked against the layer table of docs/architecture.md ("Imports and layers")."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "poso_sim"

#: Modules at the top of the package that every layer may use (stdlib/numpy helpers, the error types).
BASE_MODULES = {"poso_sim", "poso_sim.errors", "poso_sim.common", "poso_sim.htmlkit"}

#: The poso_sim packages each package may import ("base" = BASE_MODULES). Everything else at the top of the
#: package (cli, __main__, progress, ...) is the face, as are report and sweep: the face may import anything.
ALLOWED = {
    "base": set(),
    "nlp": {"base"},
    "cases": {"base", "nlp"},
    "solvers": {"base", "cases", "nlp"},
    "kkt": {"base", "nlp"},
    "protocol": {"base", "cases", "nlp"},
    "sim": {"base"},
    "scenarios": {"base", "cases", "nlp", "solvers", "kkt", "protocol", "sim"},
}
FACE = {"report", "sweep", "face"}

#: Third-party packages the certificate may use besides the standard library.
KKT_THIRD_PARTY = {"numpy", "scipy", "highspy", "qdldl"}

#: Imports that break the rules today, in modules whose rework is under way elsewhere (module, imported package);
#: none. The "never"s of docs/architecture.md (nlp -> cases, protocol -> solvers/kkt) cannot be listed here.
PENDING: set[tuple[str, str]] = set()

#: Modules whose function-local imports of other packages are not yet commented or moved to the top (see
#: test_lazy_imports_say_why), being reworked elsewhere.
PENDING_LAZY: set[str] = set()


@dataclass(frozen=True)
class Edge:
    src: str  # importing module
    dst: str  # imported module (poso_sim.*) or top-level third-party name
    line: int
    lazy: bool  # inside a function (or any block), not at module level
    commented: bool  # a comment on the import's line or the line above
    type_only: bool = False  # under ``if TYPE_CHECKING:``: never executed


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _commented(lines: list[str], i: int) -> bool:
    """A comment on line ``i``, or on the line above the block of import lines that holds it."""
    if "#" in lines[i]:
        return True
    while i > 0 and lines[i - 1].strip().startswith(("from ", "import ")):
        i -= 1
        if "#" in lines[i]:
            return True
    return i > 0 and lines[i - 1].strip().startswith("#")


def _edges(name: str, path: Path) -> list[Edge]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for n in tree.body:  # imports under a module-level try/if are still module-level
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(c) for c in ast.walk(n) if isinstance(c, (ast.Import, ast.ImportFrom))}
    type_only = {id(c) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
                 for c in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        else:
            continue
        commented = _commented(lines, node.lineno - 1)
        for t in targets:
            out.append(Edge(name, t, node.lineno, id(node) not in top, commented, id(node) in type_only))
    return out


EDGES = [e for name, path in MODULES.items() for e in _edges(name, path)]


def layer(module: str) -> str:
    """The layer name of a poso_sim module."""
    if module in BASE_MODULES:
        return "base"
    parts = module.split(".")
    if len(parts) == 2 and f"poso_sim.{parts[1]}" in MODULES and not (ROOT / parts[1]).is_dir():
        return "face"  # a module at the top of the package: cli, __main__, ...
    return parts[1]


def _internal(edges):
    return [e for e in edges if e.dst.split(".")[0] == "poso_sim" and layer(e.src) != layer(e.dst)]


def test_the_walk_sees_the_package():
    assert {"poso_sim.nlp.problems", "poso_sim.kkt.cli", "poso_sim.scenarios.runner"} <= set(MODULES)
    layers = {layer(m) for m in MODULES}
    assert set(ALLOWED) | FACE >= layers, layers - set(ALLOWED) - FACE
    # the walk finds lazy imports too: the registry imports the compiler inside a function
    assert any(e.src == "poso_sim.nlp.problems" and e.dst == "poso_sim.nlp.compiler" and e.lazy for e in EDGES)


def test_the_compiled_problem_never_imports_pyomo_by_a_file_boundary():
    """A verifier loads poso_sim.nlp.compiled: no import of Pyomo there, not even inside a function, and none of
    the modules that import it (the compiler, the walker)."""
    pyomo_side = {"poso_sim.nlp.compiler", "poso_sim.nlp.walker"}
    assert any(e.src == "poso_sim.nlp.compiler" and e.dst.startswith("pyomo") and not e.lazy for e in EDGES)
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in EDGES if e.src in ("poso_sim.nlp.compiled", "poso_sim.nlp.solution")
           and (e.dst.split(".")[0] == "pyomo" or e.dst in pyomo_side)]
    assert not bad, bad


def test_every_import_points_down_the_layers():
    bad = []
    for e in _internal(EDGES):
        src, dst = layer(e.src), layer(e.dst)
        if src in FACE or (e.src, dst) in PENDING:
            continue
        if dst not in ALLOWED[src]:
            bad.append(f"{e.src}:{e.line} ({src}) imports {e.dst} ({dst})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for e in _internal(EDGES):
        graph.setdefault(layer(e.src), set()).add(layer(e.dst))
    # depth-first search for a back edge
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n: str, stack: list[str]) -> bool:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycle.extend(stack[stack.index(m):] + [n, m] if m in stack else [n, m])
                return True
            if state.get(m) is None and visit(m, stack + [n]):
                return True
        state[n] = 2
        return False

    for n in sorted(graph):
        if state.get(n) is None and visit(n, []):
            break
    assert not cycle, "cycle between packages: " + " -> ".join(cycle)


def test_the_generic_layers_know_no_case_and_the_protocol_no_solver():
    """The two "never"s of docs/architecture.md, with no pending exception: nlp imports no case (the packaged
    problems are named by "module:function" strings), the protocol imports neither the solvers nor the
    certificate."""
    forbidden = {"nlp": {"cases", "solvers", "kkt"}, "protocol": {"solvers", "kkt"}}
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in _internal(EDGES)
           if layer(e.dst) in forbidden.get(layer(e.src), ())]
    assert not bad, "\n".join(bad)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (ROOT / parts[-1]).is_dir() else "top"


def _cycles_inside_packages() -> list[tuple[frozenset[str], list[str]]]:
    """Each strongly connected set of modules of one package (imports at the top and inside functions alike,
    not those under ``if TYPE_CHECKING:``), with one cycle through it: ``[a, b, ..., a]``."""
    graph: dict[str, set[str]] = {}
    for e in EDGES:
        if e.dst in MODULES and e.dst != e.src and not e.type_only and _package(e.src) == _package(e.dst):
            graph.setdefault(e.src, set()).add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[tuple[frozenset[str], list[str]]] = []

    def strong(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = set()
            while True:
                w = stack.pop()
                members.add(w)
                if w == v:
                    break
            if len(members) > 1:
                out.append((frozenset(members), _one_cycle(graph, min(members), members)))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _one_cycle(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside ``members`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, set()) & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]


#: Cycles inside a package that are known and being removed elsewhere (the modules that reach each other). The test
#: fails on any other cycle, and on an entry here that is no longer a cycle, so the list only shrinks.
PENDING_CYCLES: set[frozenset[str]] = set()


def test_no_cycle_inside_any_package():
    """No two modules of one package import each other, directly or around a cycle (the solver wing reaches its
    recipe through the registry; a generic module never imports a wing)."""
    cycles = _cycles_inside_packages()
    found = {members for members, _ in cycles}
    new = [" -> ".join(cycle) + f" (modules: {', '.join(sorted(members))})" for members, cycle in cycles
           if members not in PENDING_CYCLES]
    assert not new, "import cycles inside a package:\n" + "\n".join(new)
    gone = [sorted(c) for c in PENDING_CYCLES if c not in found]
    assert not gone, f"no longer a cycle, remove from PENDING_CYCLES: {gone}"


def test_the_cycle_search_finds_a_cycle_and_names_it():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _one_cycle(graph, "a", {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_the_certificate_imports_only_nlp_numpy_scipy():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    for e in EDGES:
        if layer(e.src) != "kkt" or e.src in {m for m, _ in PENDING}:
            continue
        top = e.dst.split(".")[0]
        if top == "poso_sim":
            if layer(e.dst) not in {"kkt", "nlp", "base"}:
                bad.append(f"{e.src}:{e.line} imports {e.dst}")
        elif top not in stdlib and top not in KKT_THIRD_PARTY:
            bad.append(f"{e.src}:{e.line} imports {e.dst}")
    assert not bad, "\n".join(bad)


def test_the_kernel_knows_nothing_of_poso_and_the_protocol_does_no_io():
    for e in EDGES:
        if layer(e.src) == "sim" and e.dst.startswith("poso_sim"):
            assert layer(e.dst) in {"sim", "base"}, f"{e.src}:{e.line} imports {e.dst}"
        if layer(e.src) == "protocol":
            assert e.dst.split(".")[0] not in {"asyncio", "socket", "subprocess", "poso_sim.sim"}, (
                f"{e.src}:{e.line} imports {e.dst}"
            )
            assert layer(e.dst) != "sim" if e.dst.startswith("poso_sim") else True


def test_lazy_imports_say_why():
    """A function-local import of another poso_sim package (or of a heavy third-party package) carries a comment
    saying why it is not at the module top (Pyomo, CasADi, matplotlib, pandas are heavy; a cycle is not a reason:
    there are none)."""
    bad = [
        f"{e.src}:{e.line} imports {e.dst} inside a function without saying why"
        for e in _internal(EDGES)
        if e.lazy and not e.commented and e.src not in PENDING_LAZY
    ]
    assert not bad, "\n".join(bad)
    stale = PENDING_LAZY - {e.src for e in _internal(EDGES) if e.lazy and not e.commented}
    assert not stale, f"nothing pending any more in {sorted(stale)}: remove from PENDING_LAZY"


@pytest.mark.parametrize("module", ["poso_sim.nlp", "poso_sim.nlp.solution", "poso_sim.kkt", "poso_sim.kkt.cli",
                                    "poso_sim.nlp.problems"])
def test_light_modules_import_without_pyomo(module):
    import subprocess

    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'pyomo', 'pandas', 'matplotlib'}}))"
    env = {"PYTHONPATH": str(ROOT.parent), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_the_solver_route_names_no_wing():
    """The generic solver modules never import a problem family's wing: a recipe is reached by its registry name."""
    generic = {"poso_sim.solvers", "poso_sim.solvers.api", "poso_sim.solvers.pipeline", "poso_sim.solvers.view",
               "poso_sim.solvers.backend", "poso_sim.solvers.cache", "poso_sim.solvers.ipopt",
               "poso_sim.solvers.casadi_ipopt"}
    wings = ("poso_sim.solvers.ies", "poso_sim.solvers.trading")
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in EDGES if e.src in generic and e.dst.startswith(wings)]
    assert not bad, bad
