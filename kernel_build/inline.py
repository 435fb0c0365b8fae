"""Inlining imet_utils: the modules a kernel imports, and theirs, as readable source with their imports removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kernel_build.kernel import PACKAGE, ROOT, BuildError

Names = dict[str, tuple[str, str]]  # name -> (kind, where), for the name-clash check


def package_modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted((ROOT / PACKAGE).glob("*.py")) if p.stem != "__init__"}


def _internal_imports(tree: ast.AST) -> list[tuple[ast.ImportFrom, str]]:
    """Every ``from imet_utils.X import ...`` (or relative) statement, anywhere in the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node, node.module or ""))
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                found.append((node, node.module[len(PACKAGE) + 1 :]))
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in node.names):
            raise BuildError(
                f"line {node.lineno}: use 'from {PACKAGE}.module import name', "
                f"not 'import {PACKAGE}...' (the inlined kernel has no package)"
            )
    return found


def strip_internal_imports(source: str, name: str) -> tuple[str, set[str]]:
    """Removes the package's imports; returns (source, the modules it needs).

    A top-level import becomes a comment; one inside a function becomes ``pass``, which keeps a function whose
    only statement it was valid.
    """
    tree = ast.parse(source, filename=name)
    lines = source.splitlines()
    needs: set[str] = set()
    for node, module in sorted(_internal_imports(tree), key=lambda x: -x[0].lineno):
        if not module:
            raise BuildError(f"{name}:{node.lineno}: import from the package's modules, e.g. 'from .data import x'")
        needs.add(module.split(".")[0])
        for a in node.names:
            if a.asname and a.asname != a.name:
                raise BuildError(f"{name}:{node.lineno}: 'import {a.name} as {a.asname}' can't be inlined")
        first, last = node.lineno - 1, node.end_lineno - 1
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        if indent:
            lines[first : last + 1] = [f"{indent}pass  # inlined: {lines[first].strip()[:80]}"]
        else:
            lines[first : last + 1] = [
                f"# inlined: {line}" if i == first else f"#          {line}"
                for i, line in enumerate(lines[first : last + 1], first)
            ]
    return "\n".join(lines) + "\n", needs


def top_level_names(tree: ast.Module) -> dict[str, str]:
    """Name -> kind for what a module defines or imports at its top level."""
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = "def"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names[n.id] = "def"
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and not (
            isinstance(node, ast.ImportFrom) and node.module == "__future__"
        ):
            for a in node.names:
                key = (a.asname or a.name).split(".")[0]
                # `import a.b` binds `a`, as `import a` does
                what = a.name if a.asname or isinstance(node, ast.ImportFrom) else key
                names[key] = f"import {getattr(node, 'module', None) or ''}:{what}"
    return names


def check_names(seen: Names, names: dict[str, str], where: str) -> None:
    """Two modules may import the same thing, but never define (or import) one name differently."""
    for name, kind in names.items():
        if name in seen and (seen[name][0] != kind or kind == "def"):
            raise BuildError(f"name clash when inlining: {name!r} in {where} and in {seen[name][1]}")
        seen.setdefault(name, (kind, where))


def strip_main_block(source: str) -> str:
    """Drops a module's ``if __name__ == "__main__":`` block (a CLI), which must not run in a kernel."""
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in reversed(tree.body):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
        ):
            del lines[node.lineno - 1 : node.end_lineno]
    return "\n".join(lines).rstrip() + "\n"


def strip_future(source: str) -> str:
    """The built kernel has one ``from __future__ import annotations``, at its top."""
    return re.sub(r"^from __future__ import annotations\n", "", source, flags=re.M)


def _closure(needs: set[str], modules: dict[str, Path]) -> list[str]:
    """The needed modules and their dependencies, dependencies first."""
    deps: dict[str, set[str]] = {}
    todo = list(needs)
    while todo:
        m = todo.pop()
        if m in deps:
            continue
        if m not in modules:
            raise BuildError(f"{PACKAGE}.{m} does not exist")
        _, deps[m] = strip_internal_imports(modules[m].read_text(), f"{PACKAGE}/{m}.py")
        todo.extend(deps[m])
    order: list[str] = []
    visiting: set[str] = set()

    def visit(m: str) -> None:
        if m in order:
            return
        if m in visiting:
            raise BuildError(f"import cycle through {PACKAGE}.{m}")
        visiting.add(m)
        for d in sorted(deps[m]):
            visit(d)
        visiting.discard(m)
        order.append(m)

    for m in sorted(deps):
        visit(m)
    return order


def inline_package(needs: set[str], seen: Names) -> list[tuple[str, str]]:
    """(module path, source) of the modules in ``needs`` and their dependencies, dependencies first, ready to
    be pasted into one file; ``seen`` collects their top-level names and refuses a clash."""
    modules = package_modules()
    package = []
    for m in _closure(needs, modules):
        where = f"{PACKAGE}/{m}.py"
        src, _ = strip_internal_imports(modules[m].read_text(), where)
        src = strip_future(strip_main_block(src))
        check_names(seen, top_level_names(ast.parse(src)), where)
        package.append((where, src))
    return package
