"""The package is what the kernels inline: checked on the built kernels, by static analysis.

(a) Every module of imet_utils/ is inlined into some built kernel: build-time and test-only code lives
    elsewhere (kernel_build/, synth/, bench/).
(b) Nothing inlined is dead: every top-level function, class and constant that the package brings into a
    built kernel is reachable from that kernel's own code (its ``main()`` call and the other top-level
    statements that run), through the names the reachable code uses, in at least one built kernel; the kernel's
    own helpers in their kernel. A module is inlined whole, so a module both kernels share may carry names only
    one of them uses (the train kernel's file names in the submit kernel); a name no kernel reaches belongs
    outside the package (kernel_build/ for build time, tests or bench for the rest). No allow-list.
(c) No import cycle among the modules of imet_utils, kernel_build or synth, counting imports made inside
    functions too (an import moved into a function hides a cycle; it doesn't remove it).
(d) The layers point one way: imet_utils imports neither kernel_build nor synth (the kernels carry no build code).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import kernel_build

ROOT = Path(__file__).resolve().parents[1]
BANNER = re.compile(r"^# =+ (.+?) =+$")
INLINED = re.compile(r"^imet_utils/(\w+)\.py \(inlined\)$")
# Top-level statements that define a name; every other top-level statement runs, so it is a root.
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
KERNEL_CODE = "kernel"  # the "module" of a kernel's own code (CONFIG, main, its helpers)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> dict[str, str]:
    """Built kernel file name -> source, from a default build into a temporary folder."""
    built = kernel_build.build(tmp_path_factory.mktemp("build"))
    codes = {kernel.code_path().name: kernel.code_path().read_text() for kernel in built}
    assert len(codes) >= 2, codes.keys()
    return codes


def _sections(code: str) -> list[tuple[int, str]]:
    """(first line, title) of each banner-headed section of a built kernel, in order."""
    return [(i, m.group(1)) for i, line in enumerate(code.splitlines(), 1) if (m := BANNER.match(line))]


def _inlined_modules(code: str) -> list[str]:
    return [m.group(1) for _, title in _sections(code) if (m := INLINED.match(title))]


def _module_at(sections: list[tuple[int, str]], lineno: int) -> str | None:
    """The imet_utils module whose inlined section holds ``lineno``; None for the kernel's own code."""
    module = None
    for first, title in sections:
        if first > lineno:
            break
        m = INLINED.match(title)
        module = m.group(1) if m else None
    return module


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def unreachable_names(code: str) -> set[str]:
    """``module.name`` (``kernel.name`` for the kernel's own code) for each top-level name a built kernel defines
    that its code never reaches: a walk over the names used, from the top-level statements that aren't
    definitions."""
    tree = ast.parse(code)
    sections = _sections(code)
    definitions: dict[str, ast.stmt] = {}
    roots: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, DEFINITIONS):
            definitions.update(dict.fromkeys(_defined_names(node), node))
        else:
            roots.append(node)
    reached: set[str] = set()
    todo = list(roots)
    while todo:
        for n in ast.walk(todo.pop()):
            if isinstance(n, ast.Name) and n.id in definitions and n.id not in reached:
                reached.add(n.id)
                todo.append(definitions[n.id])
    return {
        f"{_module_at(sections, node.lineno) or KERNEL_CODE}.{name}"
        for name, node in definitions.items()
        if name not in reached
    }


def test_every_package_module_is_inlined_into_some_kernel(kernels):
    inlined = {m for code in kernels.values() for m in _inlined_modules(code)}
    package = {p.stem for p in (ROOT / "imet_utils").glob("*.py") if p.stem != "__init__"}
    assert inlined, "no inlined-module banner found: has the built kernels' layout changed?"
    assert not package - inlined, f"in imet_utils/ but in no kernel: {sorted(package - inlined)}"


def test_nothing_inlined_is_unreachable_from_kernel_code(kernels):
    inlined = {name: {KERNEL_CODE, *_inlined_modules(code)} for name, code in kernels.items()}
    unreachable = {name: unreachable_names(code) for name, code in kernels.items()}
    dead = set()
    for kernel, names in unreachable.items():
        for qualified in names:
            module = qualified.split(".")[0]
            if module == KERNEL_CODE:
                dead.add(f"{kernel}: {qualified}")
            elif all(qualified in unreachable[k] for k in kernels if module in inlined[k]):
                dead.add(qualified)
    assert not dead, f"reached from no kernel's code (move package names out of imet_utils): {sorted(dead)}"


def test_the_reachability_walk_sees_dead_code():
    code = "\n".join(
        [
            "def main():",
            "    used()",
            "def unused_kernel_helper():",
            "    return 0",
            "# ==== imet_utils/m.py (inlined) ====",
            "LIMIT = 3",
            "def used():",
            "    return LIMIT",
            "def helper_of_dead():",
            "    return 1",
            "def dead():",
            "    return helper_of_dead() + dead()",
            "# ==== run the steps ====",
            "main()",
        ]
    )
    assert unreachable_names(code) == {"m.dead", "m.helper_of_dead", "kernel.unused_kernel_helper"}


def _internal_imports(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that ``path`` imports anywhere in it (``__init__`` for the package itself)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == package:
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add((node.module or "__init__").split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package:
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (module -> modules it imports) as a path that ends where it starts; None if none."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


@pytest.mark.parametrize("package", ["imet_utils", "kernel_build", "synth"])
def test_no_import_cycles(package):
    graph = {
        path.stem: _internal_imports(path, package) - {path.stem} for path in sorted((ROOT / package).glob("*.py"))
    }
    assert len(graph) > 1
    cycle = import_cycle(graph)
    assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle)}"


def test_the_package_imports_no_build_or_generator_code():
    outside = {}
    for path in sorted((ROOT / "imet_utils").glob("*.py")):
        for package in ("kernel_build", "synth"):
            if _internal_imports(path, package):
                outside.setdefault(path.name, []).append(package)
    assert not outside, f"imet_utils modules importing build or generator code: {outside}"


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
    ],
)
def test_the_cycle_finder(graph, cycle):
    assert import_cycle(graph) == cycle
