#!/usr/bin/env python
"""Builds the iMet Kaggle kernels: one self-contained .py each, imet_utils inlined as readable source.

    python build_kernel.py                      # writes build/<train-slug>/ and build/<submit-slug>/
    python build_kernel.py --set epochs=4       # override a train config field (repeatable)
    python build_kernel.py --run-local          # build, then run both built kernels locally on generated data
    python build_kernel.py --run-local --data-dir DIR --work-dir W

Every build also points the top-level kernel-metadata.json's code_file (and kernel_type) at the built train
kernel of its id, so `kaggle kernels push` in the repo root pushes what was built.
Building is text work: this script imports neither TensorFlow nor kaggle.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

ROOT = Path(__file__).resolve().parent
PACKAGE = "imet_utils"
KERNELS = {"train": ROOT / "kernels" / "train.py", "submit": ROOT / "kernels" / "submit.py"}
BASE_METADATA = ROOT / "kernel-metadata.json"
CONFIG_START = "# ==== CONFIG"
CONFIG_END = "# ==== END CONFIG ===="

# The local run: a small backbone and image size on CPU, no downloads. BatchNorm
# momentum 0.9, because with the default 0.99 the moving statistics lag far behind
# after the few dozen steps a local run makes, and inference-mode outputs are garbage.
LOCAL_TRAIN = {"model": "tiny-cnn", "weights": None, "image_size": 64, "batch_size": 32, "epochs": 8,
               "lr": 2e-3, "bn_momentum": 0.9, "mixed_precision": False, "time_budget_hours": 1.0}
LOCAL_SUBMIT = {"batch_size": 64}


class BuildError(Exception):
    """The build can't produce a correct kernel; the message says why."""


# --------------------------------------------------------------------------- inlining
def _package_modules() -> Dict[str, Path]:
    return {p.stem: p for p in sorted((ROOT / PACKAGE).glob("*.py")) if p.stem != "__init__"}


def _internal_imports(tree: ast.AST) -> List[Tuple[ast.ImportFrom, str]]:
    """Every ``from imet_utils.X import ...`` (or relative) statement, anywhere in the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node, node.module or ""))
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                found.append((node, node.module[len(PACKAGE) + 1:]))
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in node.names):
            raise BuildError(f"line {node.lineno}: use 'from {PACKAGE}.module import name', "
                             f"not 'import {PACKAGE}...' (the inlined kernel has no package)")
    return found


def _strip_internal_imports(source: str, name: str) -> Tuple[str, Set[str], Set[str]]:
    """Removes internal imports; returns (source, modules it needs, names it imports from them)."""
    tree = ast.parse(source, filename=name)
    lines = source.splitlines()
    needs: Set[str] = set()
    imported: Set[str] = set()
    for node, module in sorted(_internal_imports(tree), key=lambda x: -x[0].lineno):
        if not module:
            raise BuildError(f"{name}:{node.lineno}: import from the package's modules, e.g. 'from .data import x'")
        needs.add(module.split(".")[0])
        for a in node.names:
            if a.asname and a.asname != a.name:
                raise BuildError(f"{name}:{node.lineno}: 'import {a.name} as {a.asname}' can't be inlined")
            imported.add(a.name)
        first, last = node.lineno - 1, node.end_lineno - 1
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        # `pass` keeps a function whose only statement was the import valid.
        lines[first:last + 1] = [f"{indent}pass  # inlined: {lines[first].strip()[:80]}"]
    return "\n".join(lines) + "\n", needs, imported


def _top_level_names(tree: ast.Module) -> Dict[str, str]:
    """Name -> kind for what a module defines or imports at its top level."""
    names: Dict[str, str] = {}
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
                isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            for a in node.names:
                key = (a.asname or a.name).split(".")[0]
                # `import a.b` binds `a`, as `import a` does
                what = a.name if a.asname or isinstance(node, ast.ImportFrom) else key
                names[key] = f"import {getattr(node, 'module', None) or ''}:{what}"
    return names


def _strip_main_block(source: str) -> str:
    """Drops a module's ``if __name__ == "__main__":`` block (a CLI), which must not run in a kernel."""
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in reversed(tree.body):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
            del lines[node.lineno - 1: node.end_lineno]
    return "\n".join(lines).rstrip() + "\n"


def _strip_future(source: str) -> str:
    return re.sub(r"^from __future__ import annotations\n", "", source, flags=re.M)


def _closure(needs: Set[str], modules: Dict[str, Path]) -> List[str]:
    """The needed modules and their dependencies, dependencies first."""
    deps: Dict[str, Set[str]] = {}
    todo = list(needs)
    while todo:
        m = todo.pop()
        if m in deps:
            continue
        if m not in modules:
            raise BuildError(f"{PACKAGE}.{m} does not exist")
        _, d, _ = _strip_internal_imports(modules[m].read_text(), f"{PACKAGE}/{m}.py")
        deps[m] = d
        todo.extend(d)
    order: List[str] = []
    visiting: Set[str] = set()

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


def _split_kernel(source: str, path: Path) -> Tuple[str, str, str]:
    """Kernel source -> (docstring, config block, body)."""
    start, end = source.find(CONFIG_START), source.find(CONFIG_END)
    if start < 0 or end < 0:
        raise BuildError(f"{path}: no config block between '{CONFIG_START}' and '{CONFIG_END}'")
    end += len(CONFIG_END)
    return source[:start].rstrip() + "\n", source[start:end] + "\n", source[end:].lstrip("\n")


def render_overrides(overrides: Dict[str, object]) -> str:
    return "".join(f"CONFIG[{k!r}] = {v!r}  # build_kernel.py override\n" for k, v in overrides.items())


@dataclasses.dataclass
class KernelSource:
    """One built kernel, in parts: a script joins them; a notebook makes cells of them."""

    name: str
    doc: str
    config: str
    package: List[Tuple[str, str]]  # (module path, source)
    body: str

    def script(self) -> str:
        package = "\n".join(f"# {'=' * 30} {m} (inlined) {'=' * 30}\n{src}" for m, src in self.package)
        return (self.doc + "from __future__ import annotations\n\n" + self.config + "\n" + package
                + f"\n# {'=' * 30} kernel: {self.name} {'=' * 30}\n" + self.body)

    def notebook(self) -> dict:
        """nbformat 4: the docstring as markdown, the config cell, the package in one cell, then the steps."""
        cells = [_cell("markdown", _doc_markdown(self.doc)), _cell("code", self.config.strip())]
        cells.append(_cell("markdown", f"## The `{PACKAGE}` package, inlined\n"
                                       f"Modules: {', '.join(m for m, _ in self.package)}."))
        cells.append(_cell("code", "from __future__ import annotations\n\n" + "\n".join(
            f"# {'=' * 20} {m} {'=' * 20}\n{src}" for m, src in self.package).strip()))
        for kind, text in _split_cells(self.body):
            cells.append(_cell(kind, text))
        for i, cell in enumerate(cells):  # nbformat 4.5 wants a unique id on every cell; stable across builds
            cell["id"] = f"cell-{i:02d}"
        return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                            "name": "python3"},
                                             "language_info": {"name": "python"}},
                "nbformat": 4, "nbformat_minor": 5}


def _cell(kind: str, text: str) -> dict:
    cell = {"cell_type": kind, "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _doc_markdown(doc: str) -> str:
    text = ast.literal_eval(doc.strip()) if doc.strip() else ""
    first, _, rest = text.partition("\n")
    return f"# {first}\n{rest}"


def _split_cells(body: str) -> List[Tuple[str, str]]:
    """``# %%`` starts a code cell and ``# %% [markdown]`` a markdown cell (its lines lose their ``# ``)."""
    cells: List[Tuple[str, List[str]]] = [("code", [])]
    for line in body.splitlines():
        if line.startswith("# %% [markdown]"):
            cells.append(("markdown", []))
        elif line.startswith("# %%"):
            cells.append(("code", []))
        elif cells[-1][0] == "markdown":
            cells[-1][1].append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            cells[-1][1].append(line)
    return [(k, "\n".join(lines).strip("\n")) for k, lines in cells if "\n".join(lines).strip()]


def inline_kernel(kernel: Path, overrides: Optional[Dict[str, object]] = None) -> KernelSource:
    """Builds one kernel: docstring, config block (+ overrides), the package it needs, the kernel body."""
    modules = _package_modules()
    doc, config_block, body = _split_kernel(kernel.read_text(), kernel)
    body, needs, _ = _strip_internal_imports(_strip_future(body), kernel.name)
    order = _closure(needs, modules)
    seen: Dict[str, Tuple[str, str]] = {}
    package = []
    for m in order:
        src, _, _ = _strip_internal_imports(modules[m].read_text(), f"{PACKAGE}/{m}.py")
        src = _strip_future(_strip_main_block(src))
        _check_names(seen, _top_level_names(ast.parse(src)), f"{PACKAGE}/{m}.py")
        package.append((f"{PACKAGE}/{m}.py", src))
    _check_names(seen, _top_level_names(ast.parse(body)), kernel.name)
    config = config_block.replace(CONFIG_END, render_overrides(overrides or {}) + CONFIG_END)
    source = KernelSource(name=kernel.name, doc=doc, config=config, package=package, body=body)
    compile(source.script(), kernel.name, "exec")
    return source


def _check_names(seen: Dict[str, Tuple[str, str]], names: Dict[str, str], where: str) -> None:
    """Two modules may import the same thing, but never define (or import) one name differently."""
    for name, kind in names.items():
        if name in seen and (seen[name][0] != kind or kind == "def"):
            raise BuildError(f"name clash when inlining: {name!r} in {where} and in {seen[name][1]}")
        seen.setdefault(name, (kind, where))


# --------------------------------------------------------------------------- secrets
def _known_secrets() -> List[str]:
    secrets = []
    if os.environ.get("KAGGLE_KEY"):
        secrets.append(os.environ["KAGGLE_KEY"])
    if os.environ.get("KAGGLE_API_TOKEN"):
        secrets.append(os.environ["KAGGLE_API_TOKEN"])
    dirs = [os.environ.get("KAGGLE_CONFIG_DIR"), str(Path.home() / ".kaggle"), str(Path.home() / ".config" / "kaggle")]
    for d in filter(None, dirs):
        f = Path(d) / "kaggle.json"
        try:
            key = json.loads(f.read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            continue
        if key:
            secrets.append(str(key))
    return [s for s in secrets if len(s) >= 8]


def check_no_secrets(text: str, where: str) -> None:
    for secret in _known_secrets():
        if secret in text:
            raise BuildError(f"{where} would carry your Kaggle API key; remove it from the sources and config")
    m = re.search(r"""["']key["']\s*:\s*["'][0-9a-f]{32}["']""", text)
    if m:
        raise BuildError(f"{where} holds what looks like kaggle.json content ({m.group(0)[:12]}...); remove it")


# --------------------------------------------------------------------------- metadata
def _slugify(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def load_base_metadata(path: Path = BASE_METADATA) -> dict:
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: {e}") from None
    if "/" not in str(meta.get("id", "")):
        raise BuildError(f"{path}: 'id' must be owner/slug, got {meta.get('id')!r}")
    return meta


def kernel_ids(base: dict, split_folds: Sequence[int] = ()) -> Dict[str, Tuple[str, str]]:
    """Role -> (id, title): "train" (or "train-f<k>" for each split fold) and "submit"."""
    owner, slug = base["id"].split("/", 1)
    title = base.get("title") or slug
    sub_slug = slug[: -len("-train")] + "-submit" if slug.endswith("-train") else slug + "-submit"
    sub_title = title[: -len("train")] + "submit" if title.lower().endswith("train") else title + " submit"
    ids = {}
    if split_folds:
        for k in split_folds:
            ids[f"train-f{k}"] = (f"{owner}/{slug}-f{k}", f"{title}-f{k}")
    else:
        ids["train"] = (f"{owner}/{slug}", title)
    ids["submit"] = (f"{owner}/{sub_slug}", sub_title)
    return ids


def train_roles(ids: Dict[str, Tuple[str, str]]) -> List[str]:
    return [r for r in ids if r.startswith("train")]


def kernel_metadata(base: dict, role: str, ids: Dict[str, Tuple[str, str]], code_file: str, *,
                    notebook: bool = False, resume_from: Optional[str] = None,
                    competition: Optional[str] = None, train_kernels: Sequence[str] = ()) -> dict:
    kid, title = ids[role]
    meta = dict(base)
    meta.update(id=kid, title=title, code_file=code_file, kernel_type="notebook" if notebook else "script")
    if competition:  # the config's competition is the one the kernels read
        meta["competition_sources"] = [competition]
    if role.startswith("train") and resume_from:
        meta["kernel_sources"] = sorted(set(base.get("kernel_sources", [])) | {resume_from})
    if role == "submit":
        meta["enable_internet"] = False
        needed = {ids[r][0] for r in train_roles(ids)} | {k for k in (train_kernels or []) if "/" in k}
        meta["kernel_sources"] = sorted(set(base.get("kernel_sources", [])) | needed)
    return meta


# --------------------------------------------------------------------------- build
def _parse_overrides(pairs: Sequence[str], role: str) -> Dict[str, object]:
    """``key=value`` strings -> dict, type-checked against the config dataclass (imports imet_utils.config only)."""
    from imet_utils.config import ConfigError, SubmitConfig, TrainConfig, parse_override

    cls = TrainConfig if role == "train" else SubmitConfig
    flag = "--set-submit" if role == "submit" else "--set"
    out = {}
    for p in pairs:
        try:
            k, v = parse_override(cls, p)
        except ConfigError as e:
            raise BuildError(f"{flag} {p}: {e}") from None
        out[k] = v
    return out


def kernel_config(role: str) -> dict:
    """The CONFIG block of a kernel source, as a dict (its values must be literals)."""
    _, block, _ = _split_kernel(KERNELS[role].read_text(), KERNELS[role])
    call = ast.parse(block).body[0].value
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "dict"):
        raise BuildError(f"{KERNELS[role]}: the config block must be CONFIG = dict(key=literal, ...)")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def check_config(role: str, overrides: Dict[str, object]) -> Dict[str, object]:
    """Validates the kernel's CONFIG block with the overrides applied, as the kernel will at its start.

    Setting ``n_folds`` alone also sets ``folds`` to all of them.
    """
    from imet_utils.config import ConfigError, SubmitConfig, TrainConfig, from_dict

    overrides = dict(overrides)
    if role == "train" and "n_folds" in overrides and "folds" not in overrides:
        overrides["folds"] = list(range(int(overrides["n_folds"])))
    try:
        from_dict(TrainConfig if role == "train" else SubmitConfig, {**kernel_config(role), **overrides})
    except ConfigError as e:
        raise BuildError(f"{role} kernel config: {e}") from None
    return overrides


def build(out_dir: Path, *, train_overrides: Optional[Dict] = None, submit_overrides: Optional[Dict] = None,
          base: Optional[dict] = None, split_folds: bool = False, notebook: bool = False,
          check: bool = True) -> Dict[str, Path]:
    """Writes build/<slug>/ (the kernel and its kernel-metadata.json) for every kernel.

    Args:
        out_dir: the build folder.
        train_overrides, submit_overrides: config overrides (``--set``, ``--set-submit``).
        base: the user's metadata (default: kernel-metadata.json).
        split_folds: one train kernel per fold, ``<slug>-f<k>``, each training only its fold.
        notebook: write .ipynb notebooks instead of scripts.
        check: fail on metadata problems (``--check`` lists them instead).

    Returns:
        Role ("train", or "train-f<k>", and "submit") -> folder, train kernels first.
    """
    base = base or load_base_metadata()
    train_overrides = check_config("train", train_overrides or {})
    folds = from_train_config(train_overrides)["folds"] if split_folds else ()
    ids = kernel_ids(base, folds)
    train_ids = [ids[r][0] for r in train_roles(ids)]
    overrides = {r: train_overrides for r in train_roles(ids)}
    if split_folds:
        overrides = {f"train-f{k}": {**train_overrides, "folds": [k]} for k in folds}
    competition = from_train_config(train_overrides)["competition"]
    overrides["submit"] = check_config("submit", {"train_kernels": train_ids, "competition": competition,
                                                  **(submit_overrides or {})})
    slugs = {kid.split("/", 1)[1] for kid, _ in ids.values()}
    for stale in Path(out_dir).glob("*/kernel-metadata.json"):
        if stale.parent.name not in slugs:  # e.g. per-fold kernels of an earlier --split-folds build
            shutil.rmtree(stale.parent)
    folders = {}
    for role, (kid, _) in ids.items():
        slug = kid.split("/", 1)[1]
        folder = Path(out_dir) / slug
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        source = inline_kernel(KERNELS["submit" if role == "submit" else "train"], overrides[role])
        if notebook:
            nb = source.notebook()
            validate_notebook(nb, f"kernel {slug}")
            code_file, text = f"{slug}.ipynb", json.dumps(nb, indent=1) + "\n"
        else:
            code_file, text = f"{slug}.py", source.script()
        check_no_secrets(text, f"kernel {slug}")
        (folder / code_file).write_text(text)
        meta = kernel_metadata(base, role, ids, code_file, notebook=notebook,
                               resume_from=train_overrides.get("resume_from"), competition=competition,
                               train_kernels=overrides["submit"].get("train_kernels", ()))
        check_no_secrets(json.dumps(meta), f"{folder}/kernel-metadata.json")
        (folder / "kernel-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        folders[role] = folder
    problems = check_build(folders, competition=competition) if check else []
    if problems:
        raise BuildError("the built metadata has problems:\n  " + "\n  ".join(problems))
    return folders


def from_train_config(overrides: Dict[str, object]) -> dict:
    """The train kernel's effective config: its CONFIG block with the overrides applied."""
    return {**kernel_config("train"), **overrides}


# --------------------------------------------------------------------------- check
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
BOOL_KEYS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")


def _owner_slug(value: object, what: str, problems: List[str], where: str) -> Optional[str]:
    parts = str(value).split("/")
    if not isinstance(value, str) or len(parts) != 2 or not all(parts):
        problems.append(f"{where}: {what} {value!r} must be owner/slug")
        return None
    return parts[1]


def check_metadata(meta_path: Path, *, role: str, train_ids: Sequence[str] = (),
                   competition: Optional[str] = None) -> List[str]:
    """The kaggle CLI's own rules and this project's, one line per problem.

    Args:
        meta_path: a built kernel-metadata.json.
        role: "train..." or "submit".
        train_ids: ids of the train kernels the submit kernel needs.
        competition: the competition slug the kernels read.
    """
    where = str(meta_path)
    try:
        meta = json.loads(Path(meta_path).read_text())
    except (OSError, ValueError) as e:
        return [f"{where}: not readable JSON ({e})"]
    problems: List[str] = []
    kid = meta.get("id")
    if not isinstance(kid, str) or kid.count("/") != 1:
        problems.append(f"{where}: id {kid!r} must be owner/slug, with no version")
    else:
        slug = kid.split("/")[1]
        if len(slug) < 5:
            problems.append(f"{where}: the slug of id {kid!r} must have at least 5 characters")
        if not SLUG_RE.match(slug):
            problems.append(f"{where}: slug {slug!r} may hold only lowercase letters, digits and '-'")
        title = meta.get("title")
        if not isinstance(title, str) or len(title) < 5:
            problems.append(f"{where}: title {title!r} must have at least 5 characters")
        elif _slugify(title) != slug:
            problems.append(f"{where}: title {title!r} resolves to slug {_slugify(title)!r}, not {slug!r}")
    code = meta.get("code_file")
    if not code or not (Path(meta_path).parent / str(code)).is_file():
        problems.append(f"{where}: code_file {code!r} does not exist next to it")
    if meta.get("language") != "python":
        problems.append(f"{where}: language must be 'python', got {meta.get('language')!r}")
    if meta.get("kernel_type") not in ("script", "notebook"):
        problems.append(f"{where}: kernel_type must be 'script' or 'notebook', got {meta.get('kernel_type')!r}")
    elif meta.get("kernel_type") == "notebook" and not str(code).endswith(".ipynb"):
        problems.append(f"{where}: a notebook kernel's code_file must be an .ipynb, got {code!r}")
    for key in BOOL_KEYS:
        if key in meta and not isinstance(meta[key], bool):
            problems.append(f"{where}: {key} must be true or false (a JSON boolean), got {meta[key]!r}")
    for key in ("dataset_sources", "kernel_sources", "competition_sources", "model_sources"):
        if not isinstance(meta.get(key, []), list):
            problems.append(f"{where}: {key} must be a list")
    for src in meta.get("dataset_sources", []) or []:
        _owner_slug(src, "dataset source", problems, where)
    for src in meta.get("kernel_sources", []) or []:
        _owner_slug(src, "kernel source", problems, where)
    for src in meta.get("model_sources", []) or []:
        parts = str(src).split("/")
        if len(parts) != 5 or not all(parts) or not parts[4].isdigit():
            problems.append(f"{where}: model source {src!r} must be owner/model/framework/variation/version")
    comps = meta.get("competition_sources") or []
    if not comps:
        problems.append(f"{where}: competition_sources is empty; the kernels need the competition data")
    elif competition and competition not in comps:
        problems.append(f"{where}: competition_sources {comps} lacks {competition!r}, which the config reads")
    if meta.get("enable_gpu") is True and not meta.get("machine_shape"):
        problems.append(f"{where}: enable_gpu without machine_shape (enable_gpu alone has landed on a P100); "
                        f"set e.g. \"machine_shape\": \"NvidiaTeslaT4\"")
    if role == "submit":
        if meta.get("enable_internet") is not False:
            problems.append(f"{where}: the submit kernel must have enable_internet: false")
        missing = sorted(set(train_ids) - set(meta.get("kernel_sources") or []))
        if missing:
            problems.append(f"{where}: kernel_sources lacks the train kernel(s) {missing}")
    return problems


def check_build(folders: Dict[str, Path], competition: Optional[str] = None) -> List[str]:
    """Checks every built kernel's metadata; returns one line per problem."""
    train_ids = []
    for role, folder in folders.items():
        try:
            meta = json.loads((folder / "kernel-metadata.json").read_text())
        except (OSError, ValueError):
            continue
        if role.startswith("train"):
            train_ids.append(meta.get("id"))
    if competition is None:
        try:
            competition = kernel_config("train").get("competition")
        except BuildError:
            pass
    problems = []
    for role, folder in folders.items():
        problems += check_metadata(folder / "kernel-metadata.json", role=role, train_ids=train_ids,
                                   competition=competition)
    return problems


def built_folders(out_dir: Path) -> Dict[str, Path]:
    """Role -> folder of what is in the build folder now (submit kernels end in -submit)."""
    folders = {}
    for meta in sorted(Path(out_dir).glob("*/kernel-metadata.json")):
        folder = meta.parent
        role = "submit" if folder.name.endswith("-submit") else f"train:{folder.name}"
        folders[role] = folder
    return dict(sorted(folders.items(), key=lambda kv: kv[0] == "submit"))


# --------------------------------------------------------------------------- the top-level kernel-metadata.json
def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def _set_json_keys(text: str, updates: Dict[str, object]) -> str:
    """``text`` (a JSON object) with ``updates`` applied, changing only those values' text where it can."""
    expected = {**json.loads(text), **updates}
    new = text
    for key, value in updates.items():
        pattern = re.compile(r'("%s"\s*:\s*)("(?:[^"\\]|\\.)*"|null)' % re.escape(key))
        if len(pattern.findall(new)) != 1:
            break
        new = pattern.sub(lambda m: m.group(1) + json.dumps(value, ensure_ascii=False), new)
    else:
        try:
            if json.loads(new) == expected:
                return new
        except ValueError:
            pass
    return json.dumps(expected, indent=2, ensure_ascii=False) + "\n"


def point_top_level(meta_path: Path, out_dir: Path, *, notebook: bool, split_folds: bool) -> str:
    """Points the user's kernel-metadata.json at what was built, so a plain ``kaggle kernels push`` in its
    folder pushes the built train kernel of its id; returns a line that says what it points at.

    Only ``code_file`` (relative to the file's folder, as the kaggle CLI resolves it) and ``kernel_type``
    change; the other keys keep their order and text. A ``--split-folds`` build has no kernel with the base
    id, so ``code_file`` names where that kernel would be, and a plain push stops with "Source file not
    found" before sending anything. A build folder outside the file's folder leaves the file alone.
    """
    meta_path, out_dir = Path(meta_path), Path(out_dir)
    if not _inside(out_dir, meta_path.parent):
        return (f"{meta_path} left as it is: the build folder {out_dir} is outside its folder, so a plain "
                f"`kaggle kernels push` there doesn't push this build")
    text = meta_path.read_text()
    meta = json.loads(text)
    kid = meta["id"]
    slug = kid.split("/", 1)[1]
    target = out_dir / slug / f"{slug}{'.ipynb' if notebook else '.py'}"
    code_file = target.resolve().relative_to(meta_path.parent.resolve()).as_posix()
    updates = {"code_file": code_file, "kernel_type": "notebook" if notebook else "script"}
    if any(meta.get(k) != v for k, v in updates.items()):
        meta_path.write_text(_set_json_keys(text, updates))
    if split_folds:
        return _split_note(meta_path, kid)
    return (f"{meta_path.name}: code_file {code_file!r}, kernel_type {updates['kernel_type']!r}: a plain "
            f"`kaggle kernels push` in {meta_path.parent} pushes {kid}, as `python build_kernel.py --push train` does")


def _split_note(meta_path: Path, kid: str) -> str:
    return (f"{meta_path.name}: a --split-folds build has no kernel {kid} (its train kernels are {kid}-f<k>), so a "
            f"plain `kaggle kernels push` in {meta_path.parent} stops with 'Source file not found' and pushes "
            f"nothing; push the per-fold kernels and the submit kernel with: python build_kernel.py --push")


def check_top_level(meta_path: Path, out_dir: Path, *,
                    competition: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """Checks the user's kernel-metadata.json as a plain ``kaggle kernels push`` in its folder would use it.

    Besides the kaggle CLI's rules (``check_metadata``), its ``code_file`` must be the built train kernel of
    its id in ``out_dir``, and its other settings those of that kernel's built metadata.

    Returns:
        (problems, notes): one line each; a note says why a check does not apply.
    """
    meta_path, out_dir = Path(meta_path), Path(out_dir)
    where = str(meta_path)
    if not _inside(out_dir, meta_path.parent):
        return [], [f"{where} not checked: the build folder {out_dir} is outside its folder"]
    problems = check_metadata(meta_path, role="train", competition=competition)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return problems, []
    kid = meta.get("id")
    if not isinstance(kid, str) or kid.count("/") != 1 or not all(kid.split("/")):
        return problems, []
    slug = kid.split("/")[1]
    built_dir = out_dir / slug
    if not (built_dir / "kernel-metadata.json").is_file():
        folds = [p for p in out_dir.glob(f"{slug}-f*/kernel-metadata.json")
                 if re.fullmatch(re.escape(slug) + r"-f\d+", p.parent.name)]
        if folds:
            return [p for p in problems if not p.startswith(f"{where}: code_file ")], [_split_note(meta_path, kid)]
        problems.append(f"{where}: no kernel {kid} is built in {out_dir}; run python build_kernel.py, which "
                        f"builds it and points code_file at it")
        return problems, []
    try:
        built = json.loads((built_dir / "kernel-metadata.json").read_text())
    except ValueError as e:
        return problems + [f"{built_dir / 'kernel-metadata.json'}: not readable JSON ({e})"], []
    expected = built_dir / str(built.get("code_file"))
    code = meta.get("code_file")
    if code and (meta_path.parent / str(code)).resolve() != expected.resolve():
        missing = "" if (meta_path.parent / str(code)).is_file() else " (no such file)"
        problems = [p for p in problems if not p.startswith(f"{where}: code_file ")]
        problems.append(f"{where}: code_file {code!r}{missing} is not the built kernel of {kid}, "
                        f"{os.path.relpath(expected, meta_path.parent)}; run python build_kernel.py, which points "
                        f"code_file at it")
    for key in sorted((set(meta) | set(built)) - {"code_file"}, key=lambda k: (k != "id", k)):
        if meta.get(key) != built.get(key):
            problems.append(f"{where}: {key} is {meta.get(key)!r} here but {built.get(key)!r} in the built kernel "
                            f"{built_dir.name}, so a plain `kaggle kernels push` here would push other settings "
                            f"than the build; push with python build_kernel.py --push train (or rebuild, after a "
                            f"hand edit)")
    return problems, []


# --------------------------------------------------------------------------- push
CREDENTIALS_HINT = ("no Kaggle credentials: put kaggle.json in ~/.kaggle/ (or KAGGLE_CONFIG_DIR), or set "
                    "KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN")


def _has_credentials() -> bool:
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    dirs = [os.environ.get("KAGGLE_CONFIG_DIR"), str(Path.home() / ".kaggle"), str(Path.home() / ".config/kaggle")]
    return any((Path(d) / f).is_file() for d in filter(None, dirs) for f in ("kaggle.json", "access_token"))


def _kaggle(args: List[str]) -> Tuple[bool, str]:
    """Runs the kaggle CLI; success needs exit 0 and no "error" in its output (it exits 0 on a push error)."""
    exe = shutil.which("kaggle")
    if exe is None:
        raise BuildError("the kaggle CLI is not on PATH: pip install kaggle")
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    if re.search(r"could not find kaggle\.json|unauthorized|401", output, re.I):
        raise BuildError(CREDENTIALS_HINT)
    return proc.returncode == 0 and "error" not in output.lower(), output


def push(folders: Dict[str, Path], which: str = "all") -> None:
    """Pushes the train kernel(s), then the submit kernel, stopping at the first failure."""
    if not _has_credentials():
        raise BuildError(CREDENTIALS_HINT)
    ids = {}
    for role, folder in folders.items():
        if which != "all" and not role.startswith(which):
            continue
        ids[role] = json.loads((folder / "kernel-metadata.json").read_text())["id"]
        ok, output = _kaggle(["kernels", "push", "-p", str(folder)])
        print(output)
        if not ok:
            raise BuildError(f"kaggle kernels push -p {folder} failed: {output.splitlines()[-1] if output else ''}")
        print(f"pushed {ids[role]}: https://www.kaggle.com/code/{ids[role]}")
    train = [k for r, k in ids.items() if r != "submit"]
    print("\nnext:")
    if train:
        print("  1. wait for the train kernel(s) to finish: python build_kernel.py --status")
    print("  2. run the submit kernel once they have: python build_kernel.py --push submit "
          "(or 'Save version' on its page)")
    sub = ids.get("submit") or "<you>/<slug>-submit"
    print(f"  3. submit: kaggle competitions submit imet-2019-fgvc6 -k {sub} -f submission.csv -v <version> "
          f"-m 'message'")


def status(folders: Dict[str, Path]) -> None:
    if not _has_credentials():
        raise BuildError(CREDENTIALS_HINT)
    for folder in folders.values():
        kid = json.loads((folder / "kernel-metadata.json").read_text())["id"]
        ok, output = _kaggle(["kernels", "status", kid])
        print(output if ok else f"{kid}: {output}")


# --------------------------------------------------------------------------- notebooks, as Kaggle runs them
EXECUTE_NOTEBOOK = "--execute-notebook"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def validate_notebook(nb: dict, where: str) -> None:
    """Fails unless ``nb`` is valid nbformat 4.5 (cell ids included): Kaggle runs notebooks through papermill."""
    try:
        import nbformat
        from nbformat import ValidationError
    except ImportError:  # building needs no Jupyter; the tests and a notebook --run-local do have nbformat
        return
    try:
        with warnings.catch_warnings():
            # nbformat only warns of a missing or duplicate cell id (and "repairs" it); papermill needs them
            warnings.simplefilter("error")
            nbformat.validate(nbformat.from_dict(nb))
    except (ValidationError, Warning) as e:
        raise BuildError(f"{where}: not a valid nbformat {nb.get('nbformat')}.{nb.get('nbformat_minor')} "
                         f"notebook: {getattr(e, 'message', e)}") from None


def executed_notebook_path(path: Path) -> Path:
    """Where ``execute_notebook`` saves the executed copy, outputs included: beside the notebook."""
    return Path(path).with_name(Path(path).stem + ".executed.ipynb")


def _describe_cell(nb: dict, index: int) -> str:
    cells = nb["cells"]
    heading = next((ANSI_ESCAPE.sub("", "".join(c["source"])).strip().splitlines()[0]
                    for c in reversed(cells[:index]) if c["cell_type"] == "markdown" and "".join(c["source"]).strip()),
                   None)
    count = cells[index].get("execution_count")
    return (f"cell {index + 1} of {len(cells)} (id {cells[index].get('id')!r}, In [{count if count else ' '}]"
            + (f", under {heading!r})" if heading else ")"))


def _error_text(error: dict) -> Tuple[str, str]:
    """(one line "Name: value", the traceback as plain text) of an error output or an error execute reply."""
    line = f"{error.get('ename')}: {error.get('evalue')}"
    return line, ANSI_ESCAPE.sub("", "\n".join(error.get("traceback") or [line]))


def _notebook_failure(path: Path) -> Optional[str]:
    """The failed cell of ``path``'s executed copy, named, with its exception; None if there is none."""
    try:
        nb = json.loads(executed_notebook_path(path).read_text())
    except (OSError, ValueError):
        return None
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if out.get("output_type") == "error":
                return (f"{Path(path).name} failed in {_describe_cell(nb, i)}: {_error_text(out)[0]} "
                        f"(traceback above; executed notebook: {executed_notebook_path(path)})")
    return None


def execute_notebook(path: Path, output: Optional[Path] = None, *, cwd: Optional[Path] = None,
                     startup_timeout: int = 300) -> Path:
    """Runs a notebook as Kaggle does: papermill's way, nbclient driving an IPython kernel in its own process.

    The kernel runs this Python (sys.executable), whatever kernelspecs are installed, with this process's
    environment, in ``cwd`` (default: the current folder), with no time limit per cell. What the cells print
    is echoed as it comes, and the executed notebook is saved after every cell, so it can be opened even
    after a failure.

    Args:
        path: the notebook.
        output: where the executed copy goes (default: ``executed_notebook_path(path)``, beside it).
        cwd: the kernel's working folder.
        startup_timeout: seconds to wait for the kernel to start.

    Returns:
        The executed copy's path.

    Raises:
        BuildError: naming the cell that failed and its exception; the cell's traceback is printed first.
    """
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    path = Path(path)
    output = Path(output) if output else executed_notebook_path(path)
    nb = nbformat.read(path, as_version=4)
    failed: Dict[str, object] = {}

    class EchoingClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):  # noqa: D102 (nbclient's hook)
            if msg["msg_type"] == "stream":
                stream = sys.stderr if msg["content"].get("name") == "stderr" else sys.stdout
                stream.write(msg["content"].get("text", ""))
                stream.flush()
            return super().output(outs, msg, display_id, cell_index)

    def save(**_):
        nbformat.write(nb, output)

    def on_error(cell_index, execute_reply, **_):
        failed.update(index=cell_index, error=execute_reply["content"])

    with tempfile.TemporaryDirectory(prefix="imet-kernelspec-") as specs:
        # A kernelspec of our own: an installed "python3" spec may start another interpreter than this one.
        (Path(specs) / "python3").mkdir()
        (Path(specs) / "python3" / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python", "metadata": {"supported_encryption": ["curve"]},
            "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}}))
        specs_manager = KernelSpecManager(kernel_dirs=[specs], ensure_native_kernel=False)
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs_manager,
                                transport_encryption="auto")  # ipykernel warns of a plain TCP kernel
        client = EchoingClient(nb, km=km, kernel_name="python3", timeout=None, startup_timeout=startup_timeout,
                               resources={"metadata": {"path": str(Path(cwd or Path.cwd()).resolve())}},
                               on_cell_executed=save, on_cell_error=on_error)
        try:
            client.execute(cleanup_kc=True)  # shut the kernel down at the end, though we made its manager
        except CellExecutionError:
            line, traceback = _error_text(failed.get("error") or {})
            print(traceback, file=sys.stderr, flush=True)
            raise BuildError(f"{path.name} failed in {_describe_cell(nb, int(failed.get('index', 0)))}: {line} "
                             f"(executed notebook: {output})") from None
        except DeadKernelError as e:
            raise BuildError(f"{path.name}: the Jupyter kernel died ({e}); executed notebook: {output}") from None
        finally:
            save()
    return output


# --------------------------------------------------------------------------- local run
BLOCKED_PACKAGES = ("efficientnet", "albumentations")


def _blocker_dir(work: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes the packages Kaggle's offline image lacks unimportable."""
    d = work / "offline_image"
    d.mkdir(parents=True, exist_ok=True)
    for name in BLOCKED_PACKAGES:
        (d / f"{name}.py").write_text(
            f"raise ImportError('{name} is not available in the offline submit kernel (simulated)')\n")
    return d


def _kaggle_dir(work: Path, role: str, inputs: Dict[str, Path], fresh: bool) -> Path:
    root = work / role / "kaggle"
    if fresh and root.exists():
        shutil.rmtree(root)
    (root / "working").mkdir(parents=True, exist_ok=True)
    for name, target in inputs.items():
        link = root / "input" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(target).resolve(), target_is_directory=True)
    return root


def _run_kernel(command: List[str], root: Path, *, extra_pythonpath: Optional[Path] = None) -> None:
    """Runs a ``_runnable`` command as its own process, in ``root``/working with IMET_KAGGLE_ROOT=``root``."""
    env = dict(os.environ)
    env["IMET_KAGGLE_ROOT"] = str(root)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = str(extra_pythonpath) if extra_pythonpath else ""
    name = Path(command[-1]).name
    print(f"\n$ python {' '.join(command)}  (kaggle root {root})", flush=True)
    start = time.time()
    proc = subprocess.run([sys.executable, *command], cwd=root / "working", env=env)
    if proc.returncode != 0:
        failed = _notebook_failure(Path(command[-1])) if EXECUTE_NOTEBOOK in command else None
        raise BuildError(failed or f"{name} failed with exit code {proc.returncode} (see its log above)")
    print(f"{name} finished in {time.time() - start:.0f}s", flush=True)


def _score_local(data_dir: Path, submission: Path) -> None:
    """If the data holds solution.csv (generated data does), prints the submission's F2 and the constant floor."""
    solution = data_dir / "solution.csv"
    if not solution.is_file():
        return
    import pandas as pd
    from imet_utils.data import multi_hot, read_labels, read_train
    from imet_utils.metrics import best_constant_f2, f2_score

    n = read_labels(data_dir / "labels.csv").n_classes
    truth = read_train(solution, n)
    sub = pd.read_csv(submission, dtype=str, keep_default_na=False)
    pred = [[int(t) for t in s.split()] for s in sub.set_index("id").loc[truth["id"], "attribute_ids"]]
    y = multi_hot(list(truth["labels"]), n)
    print(f"test F2 of submission.csv: {f2_score(y, multi_hot(pred, n)):.4f} "
          f"(best constant prediction: {best_constant_f2(y):.4f})")


def _runnable(folder: Path, work: Path) -> List[str]:
    """The command line (run with sys.executable) for a built kernel: its script, or, for a notebook,
    ``build_kernel.py --execute-notebook``, which runs it through a Jupyter kernel as Kaggle's papermill does."""
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    code = folder / meta["code_file"]
    if code.suffix != ".ipynb":
        return [str(code)]
    return [str(ROOT / "build_kernel.py"), EXECUTE_NOTEBOOK, str(code)]


def run_local(*, data_dir: Optional[Path], work: Path, train_overrides: Dict, submit_overrides: Dict,
              resume: bool, split_folds: bool = False, notebook: bool = False) -> Path:
    """Builds with the local config, then runs the built train kernel(s) and submit kernel as separate
    processes, each in its own simulated /kaggle; the train outputs are the submit kernel's inputs."""
    start = time.time()
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if data_dir is None:
        data_dir = work / "data"
        if not (data_dir / "sample_submission.csv").is_file():
            from imet_utils.generate import generate_competition

            print(f"generating a small iMet-format competition in {data_dir}", flush=True)
            generate_competition(data_dir)
    data_dir = Path(data_dir).resolve()
    folders = build(work / "build", train_overrides={**LOCAL_TRAIN, **train_overrides},
                    submit_overrides={**LOCAL_SUBMIT, **submit_overrides}, split_folds=split_folds,
                    notebook=notebook)
    competition = from_train_config(train_overrides)["competition"]
    submit_inputs = {competition: data_dir}
    for role, folder in folders.items():
        if role == "submit":
            continue
        root = _kaggle_dir(work, folder.name, {competition: data_dir}, fresh=not resume)
        _run_kernel(_runnable(folder, work), root)
        submit_inputs[folder.name] = root / "working"
    submit_root = _kaggle_dir(work, "submit", submit_inputs, fresh=True)
    _run_kernel(_runnable(folders["submit"], work), submit_root, extra_pythonpath=_blocker_dir(work))
    submission = submit_root / "working" / "submission.csv"
    print(f"\nsubmission: {submission}")
    _score_local(data_dir, submission)
    print(f"local run took {time.time() - start:.0f}s")
    return submission


# --------------------------------------------------------------------------- CLI
def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Build, check, run locally and push the iMet Kaggle kernels.")
    p.add_argument("--out", type=Path, default=ROOT / "build", help="build folder (default: build/)")
    p.add_argument("--metadata", type=Path, default=BASE_METADATA, help="base metadata (kernel-metadata.json)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train config field, e.g. --set epochs=4 --set folds=[0,1]")
    p.add_argument("--set-submit", dest="submit_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a submit config field, e.g. --set-submit tta=4")
    p.add_argument("--split-folds", action="store_true", help="one train kernel per fold: <slug>-f0, -f1, ...")
    p.add_argument("--notebook", action="store_true", help="build .ipynb notebooks instead of scripts")
    p.add_argument("--check", action="store_true", help="check the built metadata; exit 1 with one line per problem")
    p.add_argument("--push", nargs="?", const="all", choices=["all", "train", "submit"],
                   help="build, check, then kaggle kernels push the train kernel(s) and the submit kernel")
    p.add_argument("--status", action="store_true", help="kaggle kernels status for each built kernel")
    p.add_argument("--run-local", action="store_true", help="build, then run the built kernels locally")
    p.add_argument("--data-dir", type=Path, help="an iMet-format competition folder (default: generate one)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "local_run", help="local run folder")
    p.add_argument("--resume", action="store_true", help="--run-local: keep the train output and resume it")
    p.add_argument(EXECUTE_NOTEBOOK, type=Path, metavar="NOTEBOOK",
                   help="run one notebook as Kaggle does (papermill's nbclient and an IPython kernel), in the "
                        "current folder, saving the executed copy beside it as <name>.executed.ipynb")
    args = p.parse_args(argv)
    try:
        if args.execute_notebook:
            execute_notebook(args.execute_notebook)
            return 0
        train_overrides = _parse_overrides(args.sets, "train")
        submit_overrides = _parse_overrides(args.submit_sets, "submit")
        if args.status:
            status(built_folders(args.out))
            return 0
        if args.run_local:
            run_local(data_dir=args.data_dir, work=args.work_dir, train_overrides=train_overrides,
                      submit_overrides=submit_overrides, resume=args.resume, split_folds=args.split_folds,
                      notebook=args.notebook)
            return 0
        if args.check and not (args.sets or args.submit_sets or args.split_folds or args.notebook) \
                and built_folders(args.out):
            folders = built_folders(args.out)  # check what is there, as built
        else:
            start = time.time()
            folders = build(args.out, train_overrides=train_overrides, submit_overrides=submit_overrides,
                            base=load_base_metadata(args.metadata), split_folds=args.split_folds,
                            notebook=args.notebook, check=not args.check)
            for role, folder in folders.items():
                print(f"built {role} kernel: {folder}/")
            print(point_top_level(args.metadata, args.out, notebook=args.notebook, split_folds=args.split_folds))
            print(f"({time.time() - start:.2f}s)")
        competition = from_train_config(train_overrides)["competition"]
        problems = check_build(_roles_for_check(folders), competition=competition)
        top_problems, notes = check_top_level(args.metadata, args.out, competition=competition)
        if args.check:
            for line in problems + top_problems:
                print(line)
            for line in notes:
                print(f"note: {line}")
            problems += top_problems
            print(f"{len(problems)} problem(s) in {len(folders)} kernel(s)")
            return 1 if problems else 0
        for line in top_problems:
            print(f"warning: {line}")
        if args.push:
            push(folders, args.push)
        else:
            print(f"next: python build_kernel.py --push   (or kaggle kernels push -p {next(iter(folders.values()))})")
    except BuildError as e:
        print(f"build_kernel.py: error: {e}", file=sys.stderr)
        return 2
    return 0


def _roles_for_check(folders: Dict[str, Path]) -> Dict[str, Path]:
    return {("submit" if r == "submit" else r if r.startswith("train") else f"train:{r}"): f
            for r, f in folders.items()}


if __name__ == "__main__":
    sys.exit(main())
