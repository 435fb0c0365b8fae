"""The user's own metadata file (the top level ``kernel-metadata.json``): pointed at what was built, so a plain
``kaggle kernels push`` in its folder pushes the built train kernel, and checked as such a push would use it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from kernel_build.kernel import METADATA_FILE
from kernel_build.metadata import check_metadata


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def set_json_keys(text: str, updates: dict[str, object]) -> str:
    """``text`` (a JSON object) with ``updates`` applied, changing only those values' text where it can."""
    expected = {**json.loads(text), **updates}
    new = text
    for key, value in updates.items():
        pattern = re.compile(rf'("{re.escape(key)}"\s*:\s*)("(?:[^"\\]|\\.)*"|null)')
        if len(pattern.findall(new)) != 1:
            break
        new = pattern.sub(lambda m, value=value: m.group(1) + json.dumps(value, ensure_ascii=False), new)
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
        return (
            f"{meta_path} left as it is: the build folder {out_dir} is outside its folder, so a plain "
            f"`kaggle kernels push` there doesn't push this build"
        )
    text = meta_path.read_text()
    meta = json.loads(text)
    kid = meta["id"]
    slug = kid.split("/", 1)[1]
    target = out_dir / slug / f"{slug}{'.ipynb' if notebook else '.py'}"
    code_file = target.resolve().relative_to(meta_path.parent.resolve()).as_posix()
    updates = {"code_file": code_file, "kernel_type": "notebook" if notebook else "script"}
    if any(meta.get(k) != v for k, v in updates.items()):
        meta_path.write_text(set_json_keys(text, updates))
    if split_folds:
        return _split_note(meta_path, kid)
    return (
        f"{meta_path.name}: code_file {code_file!r}, kernel_type {updates['kernel_type']!r}: a plain "
        f"`kaggle kernels push` in {meta_path.parent} pushes {kid}, as `python build_kernel.py --push train` does"
    )


def _split_note(meta_path: Path, kid: str) -> str:
    return (
        f"{meta_path.name}: a --split-folds build has no kernel {kid} (its train kernels are {kid}-f<k>), so a "
        f"plain `kaggle kernels push` in {meta_path.parent} stops with 'Source file not found' and pushes "
        f"nothing; push the per-fold kernels and the submit kernel with: python build_kernel.py --push all --wait"
    )


def check_top_level(meta_path: Path, out_dir: Path, *, competition: str) -> tuple[list[str], list[str]]:
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
    if not (built_dir / METADATA_FILE).is_file():
        folds = [
            p
            for p in out_dir.glob(f"{slug}-f*/{METADATA_FILE}")
            if re.fullmatch(re.escape(slug) + r"-f\d+", p.parent.name)
        ]
        if folds:
            return [p for p in problems if not p.startswith(f"{where}: code_file ")], [_split_note(meta_path, kid)]
        problems.append(
            f"{where}: no kernel {kid} is built in {out_dir}; run python build_kernel.py, which "
            f"builds it and points code_file at it"
        )
        return problems, []
    try:
        built = json.loads((built_dir / METADATA_FILE).read_text())
    except ValueError as e:
        return problems + [f"{built_dir / METADATA_FILE}: not readable JSON ({e})"], []
    expected = built_dir / str(built.get("code_file"))
    code = meta.get("code_file")
    if code and (meta_path.parent / str(code)).resolve() != expected.resolve():
        missing = "" if (meta_path.parent / str(code)).is_file() else " (no such file)"
        problems = [p for p in problems if not p.startswith(f"{where}: code_file ")]
        problems.append(
            f"{where}: code_file {code!r}{missing} is not the built kernel of {kid}, "
            f"{os.path.relpath(expected, meta_path.parent)}; run python build_kernel.py, which points "
            f"code_file at it"
        )
    for key in sorted((set(meta) | set(built)) - {"code_file"}, key=lambda k: (k != "id", k)):
        if meta.get(key) != built.get(key):
            problems.append(
                f"{where}: {key} is {meta.get(key)!r} here but {built.get(key)!r} in the built kernel "
                f"{built_dir.name}, so a plain `kaggle kernels push` here would push other settings "
                f"than the build; push with python build_kernel.py --push train (or rebuild, after a "
                f"hand edit)"
            )
    return problems, []
