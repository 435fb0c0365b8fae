#!/usr/bin/env python
"""Builds the iMet Kaggle kernels: one self-contained .py each, imet_utils inlined as readable source.

    python build_kernel.py                      # writes build/<train-slug>/ and build/<submit-slug>/
    python build_kernel.py --set epochs=4       # override a train config field (repeatable)
    python build_kernel.py --run-local          # build, then run both built kernels locally on generated data
    python build_kernel.py --run-local --data-dir DIR --work-dir W

Building is text work: this script imports neither TensorFlow nor kaggle.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
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
                names[key] = f"import {getattr(node, 'module', None) or ''}:{a.name}"
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


def inline_kernel(kernel: Path, overrides: Optional[Dict[str, object]] = None) -> str:
    """Builds one kernel's source: docstring, config block (+ overrides), the package, the kernel body."""
    modules = _package_modules()
    doc, config_block, body = _split_kernel(kernel.read_text(), kernel)
    body, needs, _ = _strip_internal_imports(_strip_future(body), kernel.name)
    order = _closure(needs, modules)
    seen: Dict[str, Tuple[str, str]] = {}
    parts = []
    for m in order:
        src, _, _ = _strip_internal_imports(modules[m].read_text(), f"{PACKAGE}/{m}.py")
        src = _strip_future(_strip_main_block(src))
        _check_names(seen, _top_level_names(ast.parse(src)), f"{PACKAGE}/{m}.py")
        parts.append(f"# {'=' * 30} {PACKAGE}/{m}.py (inlined) {'=' * 30}\n{src}")
    _check_names(seen, _top_level_names(ast.parse(body)), kernel.name)
    text = (doc + "from __future__ import annotations\n\n" + config_block.replace(
        CONFIG_END, render_overrides(overrides or {}) + CONFIG_END) + "\n"
            + "\n".join(parts) + f"\n# {'=' * 30} kernel: {kernel.name} {'=' * 30}\n" + body)
    compile(text, kernel.name, "exec")
    return text


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


def kernel_ids(base: dict) -> Dict[str, Tuple[str, str]]:
    """Role -> (id, title) for the train and submit kernels."""
    owner, slug = base["id"].split("/", 1)
    title = base.get("title") or slug
    sub_slug = slug[: -len("-train")] + "-submit" if slug.endswith("-train") else slug + "-submit"
    sub_title = title[: -len("train")] + "submit" if title.lower().endswith("train") else title + " submit"
    return {"train": (f"{owner}/{slug}", title), "submit": (f"{owner}/{sub_slug}", sub_title)}


def kernel_metadata(base: dict, role: str, code_file: str, resume_from: Optional[str] = None) -> dict:
    ids = kernel_ids(base)
    kid, title = ids[role]
    meta = dict(base)
    meta.update(id=kid, title=title, code_file=code_file)
    if role == "train" and resume_from:
        meta["kernel_sources"] = sorted(set(base.get("kernel_sources", [])) | {resume_from})
    if role == "submit":
        meta["enable_internet"] = False
        meta["kernel_sources"] = sorted(set(base.get("kernel_sources", [])) | {ids["train"][0]})
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
          base: Optional[dict] = None) -> Dict[str, Path]:
    """Writes build/<slug>/<slug>.py and kernel-metadata.json for both kernels; returns role -> folder."""
    base = base or load_base_metadata()
    ids = kernel_ids(base)
    submit_overrides = {"train_kernels": [ids["train"][0]], **(submit_overrides or {})}
    overrides = {"train": check_config("train", train_overrides or {}),
                 "submit": check_config("submit", submit_overrides)}
    folders = {}
    for role, src in KERNELS.items():
        kid, _ = ids[role]
        slug = kid.split("/", 1)[1]
        folder = Path(out_dir) / slug
        folder.mkdir(parents=True, exist_ok=True)
        text = inline_kernel(src, overrides[role])
        check_no_secrets(text, f"kernel {slug}")
        (folder / f"{slug}.py").write_text(text)
        meta = kernel_metadata(base, role, f"{slug}.py", resume_from=overrides["train"].get("resume_from"))
        check_no_secrets(json.dumps(meta), f"{folder}/kernel-metadata.json")
        (folder / "kernel-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        folders[role] = folder
    return folders


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


def _run_kernel(script: Path, root: Path, *, extra_pythonpath: Optional[Path] = None) -> None:
    env = dict(os.environ)
    env["IMET_KAGGLE_ROOT"] = str(root)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = str(extra_pythonpath) if extra_pythonpath else ""
    print(f"\n$ python {script}  (kaggle root {root})", flush=True)
    start = time.time()
    proc = subprocess.run([sys.executable, str(script)], cwd=root / "working", env=env)
    if proc.returncode != 0:
        raise BuildError(f"{script.name} failed with exit code {proc.returncode} (see its log above)")
    print(f"{script.name} finished in {time.time() - start:.0f}s", flush=True)


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


def run_local(*, data_dir: Optional[Path], work: Path, train_overrides: Dict, submit_overrides: Dict,
              resume: bool) -> Path:
    """Builds with the local config, then runs the built train and submit kernels as separate processes."""
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
    base = load_base_metadata()
    folders = build(work / "build", train_overrides={**LOCAL_TRAIN, **train_overrides},
                    submit_overrides={**LOCAL_SUBMIT, **submit_overrides}, base=base)
    competition = {**{"competition": "imet-2019-fgvc6"}, **train_overrides}["competition"]
    train_slug = folders["train"].name
    train_root = _kaggle_dir(work, "train", {competition: data_dir}, fresh=not resume)
    _run_kernel(folders["train"] / f"{train_slug}.py", train_root)
    submit_root = _kaggle_dir(work, "submit", {competition: data_dir, train_slug: train_root / "working"}, fresh=True)
    _run_kernel(folders["submit"] / f"{folders['submit'].name}.py", submit_root,
                extra_pythonpath=_blocker_dir(work))
    submission = submit_root / "working" / "submission.csv"
    print(f"\nsubmission: {submission}")
    _score_local(data_dir, submission)
    print(f"local run took {time.time() - start:.0f}s")
    return submission


# --------------------------------------------------------------------------- CLI
def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Build (and run locally) the iMet Kaggle kernels.")
    p.add_argument("--out", type=Path, default=ROOT / "build", help="build folder (default: build/)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train config field, e.g. --set epochs=4 --set folds=[0,1]")
    p.add_argument("--set-submit", dest="submit_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a submit config field, e.g. --set-submit tta=4")
    p.add_argument("--run-local", action="store_true", help="build, then run both kernels locally")
    p.add_argument("--data-dir", type=Path, help="an iMet-format competition folder (default: generate one)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "local_run", help="local run folder")
    p.add_argument("--resume", action="store_true", help="--run-local: keep the train output and resume it")
    args = p.parse_args(argv)
    try:
        train_overrides = _parse_overrides(args.sets, "train")
        submit_overrides = _parse_overrides(args.submit_sets, "submit")
        if args.run_local:
            run_local(data_dir=args.data_dir, work=args.work_dir, train_overrides=train_overrides,
                      submit_overrides=submit_overrides, resume=args.resume)
            return 0
        start = time.time()
        folders = build(args.out, train_overrides=train_overrides, submit_overrides=submit_overrides)
        for role, folder in folders.items():
            print(f"built {role} kernel: {folder}/")
        print(f"({time.time() - start:.2f}s) next: kaggle kernels push -p {folders['train']}")
    except BuildError as e:
        print(f"build_kernel.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
