"""The import graph of lab/, drawn from the code (ast; nothing is imported).

    python bench/import_graph.py            # counts, the package cycle, the worst module cycles
    python bench/import_graph.py --json     # the same as JSON

Counts: modules, internal imports (module level and inside functions), cycles between modules
(strongly connected components of more than one module), cycles between the packages directly
under lab/ (lab.data, lab.nets, ...), imports that climb LAYERS (a lower layer importing a higher
one), and lines of code. Issue 13 asks for no cycle and no upward import; this measures how far
the tree is from that.
"""
from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab"

#: the intended order, highest first (issue 13's proposal): a package may import only packages below it
LAYERS = [
    ["cli", "__main__"],
    ["viz"],
    ["probes"],
    ["zoo", "runs"],
    ["methods", "kd", "dd"],
    ["interop"],
    ["metrics", "losses", "diffusion", "nets", "data"],
    ["trainable"],
    ["io", "config", "errors", "version", "__init__"],
]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, modules: set[str]) -> list[tuple[str, bool, int]]:
    """(target module, inside a function, line) for every import of a lab module in ``path`` (an import
    statement naming several objects of one module counts once)."""
    mod = module_name(path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    out = []

    def target(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node, in_func: bool):
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    t = target(a.name) if a.name.startswith("lab") else None
                    if t and t != mod:
                        out.append((t, in_func, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(mod, is_pkg, child)
                if base.startswith("lab"):  # one import per (statement, target module)
                    ts = {target(f"{base}.{a.name}") or target(base) for a in child.names}
                    for t in sorted(t for t in ts if t and t != mod):
                        out.append((t, in_func, child.lineno))
            visit(child, f)

    visit(tree, False)
    return out


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(pkg: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if pkg in names:
            return i
    return None


def measure() -> dict:
    files = sorted(LAB.rglob("*.py"))
    modules = {module_name(p) for p in files}
    edges, in_func, upward = defaultdict(set), 0, []
    n_imports = 0
    for p in files:
        mod = module_name(p)
        for t, f, line in imports(p, modules):
            n_imports += 1
            in_func += f
            edges[mod].add(t)
            a, b = package(mod), package(t)
            la, lb = layer_of(a), layer_of(b)
            if a != b and la is not None and lb is not None and lb < la and a != "__init__":
                upward.append(f"{p.relative_to(ROOT)}:{line} {mod} -> {t}")
    pkg_edges = defaultdict(set)
    for a, ts in edges.items():
        for b in ts:
            if package(a) != package(b) and package(a) != "__init__":
                pkg_edges[package(a)].add(package(b))
    mod_cycles = sccs(edges)
    return {
        "modules": len(modules),
        "lines": sum(len(p.read_text().splitlines()) for p in files),
        "internal_imports": n_imports,
        "imports_inside_functions": in_func,
        "module_cycles": len(mod_cycles),
        "modules_in_cycles": sum(len(c) for c in mod_cycles),
        "largest_module_cycle": max((len(c) for c in mod_cycles), default=0),
        "package_cycles": sccs(pkg_edges),
        "upward_imports": len(upward),
        "upward_examples": upward[:15],
        "module_cycle_members": mod_cycles,
    }


def main(argv: list[str]) -> int:
    m = measure()
    if "--json" in argv:
        print(json.dumps(m, indent=2))
        return 0
    for k in ("modules", "lines", "internal_imports", "imports_inside_functions", "module_cycles",
              "modules_in_cycles", "largest_module_cycle", "upward_imports"):
        print(f"{k:<26} {m[k]}")
    for c in m["package_cycles"]:
        print(f"package cycle: {' <-> '.join(c)}")
    for u in m["upward_examples"]:
        print(f"upward: {u}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
