"""The library's import graph has no circle: every module imports only modules below it.

An AST walk over `syncse/**/*.py`; an import inside a function counts as much as one at the top
(deferring an import hides a circle from Python, not from the design).
"""

from __future__ import annotations

import ast
from pathlib import Path

import syncse

PACKAGE_DIR = Path(syncse.__file__).resolve().parent


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    """`syncse/llm/client.py` -> `syncse.llm.client`; a package's `__init__.py` is the package."""
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE_DIR) -> set[str]:
    """The modules of `modules` that the file at `path` names in an import statement, anywhere in it.

    `from a import b` imports module `a.b` when there is one, else the name `b` of module `a`.
    A package's parents, which Python imports first, are not counted: a package's `__init__` that
    re-exports its modules would otherwise close a circle with each of them.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return (found & modules) - {name}


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Each module of the package under `root` -> the package's modules it imports."""
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in paths}
    return {module_name(path, root): imports_of(path, modules, root) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as its path (`a -> b -> a`), or None (a depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_library_has_no_import_circle() -> None:
    graph = import_graph()
    assert {"syncse.config", "syncse.llm"} <= set(graph)  # the walk found the library
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_a_circle_is_found_with_its_path_even_through_a_deferred_import(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("from pkg.sub.b import B\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("def f():\n    from pkg import c\n")
    (root / "sub" / "b.py").write_text("from . import d\nB = 1\n")
    (root / "c.py").write_text("import os\nfrom .sub.b import B\n")
    (root / "sub" / "d.py").write_text("from ..a import f\n")
    graph = import_graph(root)
    assert graph == {"pkg": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.a": {"pkg.c"}, "pkg.sub.b": {"pkg.sub.d"},
                     "pkg.c": {"pkg.sub.b"}, "pkg.sub.d": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.sub.b", "pkg.sub.d", "pkg.a", "pkg.c", "pkg.sub.b"]
    (root / "sub" / "d.py").write_text("import pkg.c as c\n")  # `pkg.a` no longer closes the circle
    assert find_cycle(import_graph(root)) == ["pkg.sub.b", "pkg.sub.d", "pkg.c", "pkg.sub.b"]
    (root / "sub" / "d.py").write_text("X = 1\n")
    assert find_cycle(import_graph(root)) is None
