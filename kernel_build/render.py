"""A built kernel, in reading order.

The script: docstring, CONFIG (every field), ``main()`` (the kernel's step cells, their headings as comments),
the kernel's imports and helpers, the inlined package under its module banners, and ``main()`` called last.
The notebook: docstring, CONFIG, the package in one cell, then the kernel's cells under their headings (cells
run in order, so the steps come after what they use).
"""

from __future__ import annotations

import ast
import dataclasses
import io
import symtable
import tokenize

from kernel_build.inline import (
    Names,
    check_names,
    inline_package,
    strip_future,
    strip_internal_imports,
    top_level_names,
)
from kernel_build.kernel import HASH_CONSTANT, PACKAGE, SOURCES, BuildError
from kernel_build.settings import config_block, split_source

CELL = "# %%"
MARKDOWN_CELL = "# %% [markdown]"
MAIN_DOC = '"""The kernel\'s steps. Its helpers and the inlined package are defined below; main() runs last."""'


def _banner(text: str, width: int = 30) -> str:
    return f"# {'=' * width} {text} {'=' * width}"


@dataclasses.dataclass
class KernelSource:
    """One built kernel, in parts: a script joins them; a notebook makes cells of them."""

    name: str  # the source's file name, e.g. train.py
    doc: str
    config: str  # the generated CONFIG block
    package: list[tuple[str, str]]  # (module path, source)
    definitions: str  # the source's imports and helper functions (its internal imports removed)
    steps: str  # the source's step cells, as in the source

    def script(self) -> str:
        parts = [
            f"{self.doc}from __future__ import annotations\n\n{self.config}",
            f"def main() -> None:\n    {MAIN_DOC}\n{_indent(_script_cells(self.steps, headings=True))}",
            f"{_banner(f'kernel: {self.name}, its imports and helpers')}\n"
            f"{_script_cells(self.definitions, headings=False)}",
            *(f"{_banner(f'{m} (inlined)')}\n{src}" for m, src in self.package),
            f"{_banner('run the steps')}\nmain()\n",
        ]
        return "\n\n".join(part.rstrip("\n") + "\n" for part in parts)

    def notebook(self) -> dict:
        """nbformat 4.5: the docstring as markdown, the config cell, the package in one cell, then the cells."""
        cells = [_cell("markdown", _doc_markdown(self.doc)), _cell("code", self.config.strip())]
        cells.append(
            _cell("markdown", f"## The `{PACKAGE}` package, inlined\nModules: {', '.join(m for m, _ in self.package)}.")
        )
        cells.append(
            _cell(
                "code",
                "from __future__ import annotations\n\n"
                + "\n".join(f"{_banner(m, 20)}\n{src}" for m, src in self.package).strip(),
            )
        )
        for kind, text in split_cells(self.definitions + "\n" + self.steps):
            cells.append(_cell(kind, text))
        for i, cell in enumerate(cells):  # nbformat 4.5 wants a unique id on every cell; stable across builds
            cell["id"] = f"cell-{i:02d}"
        return {
            "cells": cells,
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }


def _cell(kind: str, text: str) -> dict:
    cell = {"cell_type": kind, "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _doc_markdown(doc: str) -> str:
    text = ast.literal_eval(doc.strip()) if doc.strip() else ""
    first, _, rest = text.partition("\n")
    return f"# {first}\n{rest}"


def split_cells(body: str) -> list[tuple[str, str]]:
    """``# %%`` starts a code cell and ``# %% [markdown]`` a markdown cell (its lines lose their ``# ``)."""
    cells: list[tuple[str, list[str]]] = [("code", [])]
    for line in body.splitlines():
        if line.startswith(MARKDOWN_CELL):
            cells.append(("markdown", []))
        elif line.startswith(CELL):
            cells.append(("code", []))
        elif cells[-1][0] == "markdown":
            cells[-1][1].append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            cells[-1][1].append(line)
    return [(k, "\n".join(lines).strip("\n")) for k, lines in cells if "\n".join(lines).strip()]


def _script_cells(code: str, *, headings: bool) -> str:
    """Cells as script text: code cells as they are, markdown cells as ``# `` comments over the code they head
    (or dropped, without ``headings``)."""
    parts: list[str] = []
    for kind, text in split_cells(code):
        if kind == "markdown":
            if headings:
                parts.append("\n".join(f"# {line}".rstrip() for line in text.splitlines()) + "\n")
        else:
            parts.append(text + "\n\n")
    return "".join(parts).rstrip("\n") + "\n"


def _indent(code: str) -> str:
    """``code`` indented one level, except the inner lines of multi-line strings (their text must not change)."""
    inside: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    return "\n".join(
        line if i in inside or not line.strip() else "    " + line for i, line in enumerate(code.splitlines(), 1)
    )


def _split_steps(body: str, name: str) -> tuple[str, str]:
    """The kernel body -> (definitions, steps): the steps are the cells after its last function or class."""
    tree = ast.parse(body, filename=name)
    lines = body.splitlines()
    last = max((n.end_lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))), default=0)
    start = next((i for i in range(last, len(lines)) if lines[i].startswith(CELL)), None)
    if start is None:
        raise BuildError(f"{name}: no '{CELL}' step cell after the last function definition")
    return "\n".join(lines[:start]).rstrip("\n") + "\n", "\n".join(lines[start:]).rstrip("\n") + "\n"


def _check_definitions(definitions: str, steps: str, package_names: set[str], name: str) -> None:
    """What the script layout needs of the source: before the steps, only imports, definitions and constants,
    none of which uses a package name when it runs (the package is defined after them); and no helper reads a
    name that a step assigns (the steps run inside ``main()``, so their names are not globals)."""
    tree = ast.parse(definitions, filename=name)
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)):
            raise BuildError(
                f"{name}:{node.lineno}: only imports, definitions and constants may come before the "
                f"steps; move '{ast.unparse(node)[:60]}' into a step cell"
            )
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):  # what runs when it is defined
            now = [*node.decorator_list, *getattr(node, "bases", [])]
            if isinstance(node, ast.FunctionDef):
                now += node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
        else:
            now = [node.value] if getattr(node, "value", None) is not None else []
        used = {n.id for e in now for n in ast.walk(e) if isinstance(n, ast.Name)} & package_names
        if used:
            raise BuildError(
                f"{name}:{node.lineno}: '{ast.unparse(node).splitlines()[0][:60]}' uses "
                f"{sorted(used)} before the inlined package defines it; use it inside a function"
            )
    assigned = {n.id for n in ast.walk(ast.parse(steps)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    risky = assigned - set(top_level_names(tree)) - package_names
    tables = symtable.symtable(definitions, name, "exec").get_children()
    while tables:
        table = tables.pop()
        read = [
            s.get_name() for s in table.get_symbols() if s.is_global() and s.is_referenced() and s.get_name() in risky
        ]
        if read:
            raise BuildError(
                f"{name}: {table.get_name()} reads {read}, which a step assigns; pass it as an "
                f"argument (the steps run inside main(), so their names are not globals)"
            )
        tables.extend(table.get_children())


def _take_hash_line(body: str, name: str) -> tuple[str, str]:
    """The source's ``CONTENT_HASH = ""`` line, taken out of its body to stand under the CONFIG block (the build
    writes the kernel's content hash into it once the kernel is written: ``kernel.embed_content_hash``)."""
    lines = body.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith(f'{HASH_CONSTANT} = ""')]
    if len(at) != 1:
        raise BuildError(
            f'{name}: needs one top-level line {HASH_CONSTANT} = "" (found {len(at)}): the build writes the '
            "kernel's content hash there, and its run_status.json records it"
        )
    return "".join(lines[: at[0]] + lines[at[0] + 1 :]), lines[at[0]].rstrip("\n") + "\n"


def inline_kernel(role: str, values: dict[str, object]) -> KernelSource:
    """Builds one kernel from its source: docstring, the generated CONFIG block (``values`` over the defaults),
    the package it needs, its helpers and its steps."""
    path = SOURCES[role]
    source = path.read_text()
    doc, _, body = split_source(source, path)
    body, hash_line = _take_hash_line(body, path.name)
    body, needs = strip_internal_imports(strip_future(body), path.name)
    seen: Names = {}
    package = inline_package(needs, seen)
    package_names = set(seen)
    check_names(seen, top_level_names(ast.parse(body)), path.name)
    definitions, steps = _split_steps(body, path.name)
    _check_definitions(definitions, steps, package_names, path.name)
    kernel = KernelSource(
        name=path.name,
        doc=doc,
        config=config_block(role, values) + hash_line,
        package=package,
        definitions=definitions,
        steps=steps,
    )
    compile(kernel.script(), path.name, "exec")
    return kernel
