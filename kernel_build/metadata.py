"""Each kernel's metadata: derived from the user's file, and checked against the kaggle CLI's rules and ours."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from kernel_build.kernel import BASE_METADATA, Build, BuildError, Kernel

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
BOOL_KEYS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")


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


def kernel_metadata(
    base: dict,
    kernel: Kernel,
    plan: Build,
    code_file: str,
    *,
    notebook: bool,
    competition: str,
    resume_from: str | None = None,
    train_kernels: Sequence[str] = (),
) -> dict:
    """The user's metadata, made this kernel's: its id, title and code file, the configured competition; the
    submit kernel offline and sourcing every train kernel (and ``train_kernels`` given as owner/slug)."""
    meta = dict(base)
    meta.update(
        id=kernel.id,
        title=kernel.title,
        code_file=code_file,
        kernel_type="notebook" if notebook else "script",
        competition_sources=[competition],
    )
    if kernel.role == "train" and resume_from:
        meta["kernel_sources"] = sorted(set(base.get("kernel_sources", [])) | {resume_from})
    if kernel.role == "submit":
        meta["enable_internet"] = False
        needed = {k.id for k in plan.train} | {k for k in train_kernels if "/" in k}
        meta["kernel_sources"] = sorted(set(base.get("kernel_sources", [])) | needed)
    return meta


def write_metadata(kernel: Kernel, meta: dict) -> None:
    kernel.metadata_path.write_text(json.dumps(meta, indent=2) + "\n")


def _check_owner_slug(value: object, what: str, problems: list[str], where: str) -> None:
    parts = str(value).split("/")
    if not isinstance(value, str) or len(parts) != 2 or not all(parts):
        problems.append(f"{where}: {what} {value!r} must be owner/slug")


def check_metadata(meta_path: Path, *, role: str, competition: str, train_ids: Sequence[str] = ()) -> list[str]:
    """The kaggle CLI's own rules and this project's, one line per problem.

    Args:
        meta_path: a built metadata file.
        role: "train" or "submit".
        train_ids: ids of the train kernels the submit kernel needs.
        competition: the competition slug the kernels read.
    """
    where = str(meta_path)
    try:
        meta = json.loads(Path(meta_path).read_text())
    except (OSError, ValueError) as e:
        return [f"{where}: not readable JSON ({e})"]
    return [
        *_id_problems(meta, where),
        *_code_problems(meta, Path(meta_path), where),
        *_type_problems(meta, where),
        *_source_problems(meta, where),
        *_competition_problems(meta, competition, where),
        *_machine_problems(meta, where),
        *(_submit_problems(meta, train_ids, where) if role == "submit" else []),
    ]


def _id_problems(meta: dict, where: str) -> list[str]:
    """The id is owner/slug, and the title resolves to that slug."""
    problems: list[str] = []
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
    return problems


def _code_problems(meta: dict, meta_path: Path, where: str) -> list[str]:
    """The code file exists next to the metadata, in Python, of a kind that matches it."""
    problems: list[str] = []
    code = meta.get("code_file")
    if not code or not (meta_path.parent / str(code)).is_file():
        problems.append(f"{where}: code_file {code!r} does not exist next to it")
    if meta.get("language") != "python":
        problems.append(f"{where}: language must be 'python', got {meta.get('language')!r}")
    if meta.get("kernel_type") not in ("script", "notebook"):
        problems.append(f"{where}: kernel_type must be 'script' or 'notebook', got {meta.get('kernel_type')!r}")
    elif meta.get("kernel_type") == "notebook" and not str(code).endswith(".ipynb"):
        problems.append(f"{where}: a notebook kernel's code_file must be an .ipynb, got {code!r}")
    return problems


def _type_problems(meta: dict, where: str) -> list[str]:
    """The switches are JSON booleans and the sources are lists."""
    problems: list[str] = []
    for key in BOOL_KEYS:
        if key in meta and not isinstance(meta[key], bool):
            problems.append(f"{where}: {key} must be true or false (a JSON boolean), got {meta[key]!r}")
    for key in ("dataset_sources", "kernel_sources", "competition_sources", "model_sources"):
        if not isinstance(meta.get(key, []), list):
            problems.append(f"{where}: {key} must be a list")
    return problems


def _source_problems(meta: dict, where: str) -> list[str]:
    """Each dataset and kernel source is owner/slug; each model source, owner/model/framework/variation/version."""
    problems: list[str] = []
    for src in meta.get("dataset_sources", []) or []:
        _check_owner_slug(src, "dataset source", problems, where)
    for src in meta.get("kernel_sources", []) or []:
        _check_owner_slug(src, "kernel source", problems, where)
    for src in meta.get("model_sources", []) or []:
        parts = str(src).split("/")
        if len(parts) != 5 or not all(parts) or not parts[4].isdigit():
            problems.append(f"{where}: model source {src!r} must be owner/model/framework/variation/version")
    return problems


def _competition_problems(meta: dict, competition: str, where: str) -> list[str]:
    """The competition the config reads is among the sources."""
    comps = meta.get("competition_sources") or []
    if not comps:
        return [f"{where}: competition_sources is empty; the kernels need the competition data"]
    if competition not in comps:
        return [f"{where}: competition_sources {comps} lacks {competition!r}, which the config reads"]
    return []


def _machine_problems(meta: dict, where: str) -> list[str]:
    """A GPU kernel names its machine."""
    if meta.get("enable_gpu") is True and not meta.get("machine_shape"):
        return [
            f"{where}: enable_gpu without machine_shape (enable_gpu alone has landed on a P100); "
            f'set e.g. "machine_shape": "NvidiaTeslaT4"'
        ]
    return []


def _submit_problems(meta: dict, train_ids: Sequence[str], where: str) -> list[str]:
    """The submit kernel is offline and sources every train kernel it needs."""
    problems: list[str] = []
    if meta.get("enable_internet") is not False:
        problems.append(f"{where}: the submit kernel must have enable_internet: false")
    missing = sorted(set(train_ids) - set(meta.get("kernel_sources") or []))
    if missing:
        problems.append(f"{where}: kernel_sources lacks the train kernel(s) {missing}")
    return problems


def check_build(build: Build, *, competition: str) -> list[str]:
    """Checks every built kernel's metadata as it is on disk; returns one line per problem."""
    train_ids = []
    for kernel in build.train:
        try:
            train_ids.append(kernel.metadata().get("id"))
        except (OSError, ValueError):
            continue
    problems = []
    for kernel in build:
        problems += check_metadata(kernel.metadata_path, role=kernel.role, train_ids=train_ids, competition=competition)
    return problems
