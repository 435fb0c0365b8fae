"""The build: every kernel of the plan written to ``<out>/<slug>/`` with its metadata, then checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kernel_build.kaggle_cli import check_no_secrets
from kernel_build.kernel import (
    METADATA_FILE,
    SOURCES,
    Build,
    BuildError,
    Kernel,
    content_hash,
    embed_content_hash,
    plan_kernels,
)
from kernel_build.metadata import check_build, kernel_metadata, load_base_metadata, write_metadata
from kernel_build.notebook import validate_notebook
from kernel_build.render import inline_kernel
from kernel_build.settings import full_config, kernel_values


def build(
    out_dir: Path,
    *,
    train_overrides: dict | None = None,
    submit_overrides: dict | None = None,
    base: dict | None = None,
    split_folds: bool = False,
    notebook: bool = False,
    check: bool = True,
) -> Build:
    """Writes ``<out_dir>/<slug>/`` (the kernel and its metadata) for every kernel.

    Args:
        out_dir: the build folder.
        train_overrides, submit_overrides: config overrides (``--set``, ``--set-submit``).
        base: the user's metadata (default: the top-level metadata file).
        split_folds: one train kernel per fold, ``<slug>-f<k>``, each training only its fold.
        notebook: write .ipynb notebooks instead of scripts.
        check: fail on metadata problems (``--check`` lists them instead).

    Returns:
        The kernels, train kernel(s) first.
    """
    base = base or load_base_metadata()
    for path in SOURCES.values():
        check_no_secrets(path.read_text(), str(path))
    train_values = kernel_values("train", train_overrides or {})
    train_config = full_config("train", train_values)
    competition = train_config["competition"]
    plan = plan_kernels(base, out_dir, train_config["folds"] if split_folds else ())
    submit_values = kernel_values(
        "submit", {"train_kernels": [k.id for k in plan.train], "competition": competition, **(submit_overrides or {})}
    )
    slugs = {k.slug for k in plan}
    for stale in Path(out_dir).glob(f"*/{METADATA_FILE}"):
        if stale.parent.name not in slugs:  # e.g. per-fold kernels of an earlier --split-folds build
            shutil.rmtree(stale.parent)
    for kernel in plan:
        if kernel.role == "submit":
            values = submit_values
        else:
            values = train_values if kernel.fold is None else {**train_values, "folds": [kernel.fold]}
        code_file = _write_code(kernel, values, notebook=notebook)
        meta = kernel_metadata(
            base,
            kernel,
            plan,
            code_file,
            notebook=notebook,
            competition=competition,
            resume_from=train_config["resume_from"],
            train_kernels=submit_values.get("train_kernels", ()),
        )
        check_no_secrets(json.dumps(meta), str(kernel.metadata_path))
        write_metadata(kernel, meta)
        # the kernel carries its own content hash (the one the orchestrator compares) into its run_status.json
        if embed_content_hash(kernel) != content_hash(kernel) or kernel.embedded_hash() != content_hash(kernel):
            raise BuildError(f"kernel {kernel.slug}: its CONTENT_HASH line doesn't hold its content hash")
    problems = check_build(plan, competition=competition) if check else []
    if problems:
        raise BuildError("the built metadata has problems:\n  " + "\n  ".join(problems))
    return plan


def _write_code(kernel: Kernel, values: dict[str, object], *, notebook: bool) -> str:
    """Writes the kernel's code file into its (fresh) folder; returns its name."""
    if kernel.folder.exists():
        shutil.rmtree(kernel.folder)
    kernel.folder.mkdir(parents=True)
    source = inline_kernel(kernel.role, values)
    if notebook:
        nb = source.notebook()
        validate_notebook(nb, f"kernel {kernel.slug}")
        code_file, text = f"{kernel.slug}.ipynb", json.dumps(nb, indent=1) + "\n"
    else:
        code_file, text = f"{kernel.slug}.py", source.script()
    check_no_secrets(text, f"kernel {kernel.slug}")
    (kernel.folder / code_file).write_text(text)
    return code_file
