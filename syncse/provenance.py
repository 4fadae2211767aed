"""What a result depends on beyond its config: the library's own code and the versions it runs on.

A trained model is reused, and a checkpoint resumed, only under the code that made it
(`syncse.train`): the key holds `code_fingerprint("syncse.train")`, the sha256 of the source of
every `syncse` module that training imports (directly or not, found by walking the import
statements, those inside functions too) and the versions of torch, transformers and
sentence-transformers. Any edit to those files, a comment too, makes the next run train afresh.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
LIBRARIES = ("torch", "transformers", "sentence-transformers")  # distributions whose version changes results


def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of `module` ("syncse.train"): a module file or a package's `__init__.py`; None if neither."""
    parts = module.split(".")[1:]
    if not parts:
        return package_dir / "__init__.py" if (package_dir / "__init__.py").is_file() else None
    relative = Path(*parts)
    for candidate in (package_dir / relative.with_suffix(".py"), package_dir / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(module: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """`module` and every module of its package that it imports, directly or through another, sorted.

    Raises:
        ValueError: `module` has no source file under `package_dir`.
    """
    package = package_dir.name
    if module_file(module, package_dir) is None:
        raise ValueError(f"{module}: no source file under {package_dir}")
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        path = module_file(current, package_dir)
        is_package = path is not None and path.name == "__init__.py"
        for name in _imports(ast.parse(path.read_text(encoding="utf-8")), current, is_package):
            if name.split(".")[0] == package and name not in seen and module_file(name, package_dir) is not None:
                todo.append(name)
    return sorted(seen)


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an AST imports: `import a.b`, `from a import b` (as `a` and `a.b`), relative forms resolved."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ""
            if node.level:  # from . import x: relative to the module's package
                parent = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(parent[: len(parent) - node.level + 1])
            source = ".".join(part for part in (base, node.module or "") if part)
            names += [source, *(f"{source}.{alias.name}" for alias in node.names)]
    return names


def code_fingerprint(module: str, package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """The modules `module` runs on (names and one sha256 over their sources) and the library versions."""
    modules = imported_modules(module, package_dir)
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode() + b"\0" + module_file(name, package_dir).read_bytes() + b"\0")
    versions = {library: importlib.metadata.version(library) for library in LIBRARIES}
    return {"modules": ",".join(modules), "sources_sha256": digest.hexdigest(), **versions}
