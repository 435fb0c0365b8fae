"""The one place that decides where we are: Kaggle, or a local simulation of it.

A kernel sees ``<root>/input/...`` and writes to ``<root>/working``. On Kaggle the
root is ``/kaggle``; ``build_kernel.py --run-local`` sets ``IMET_KAGGLE_ROOT`` to a
folder laid out the same way.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

LOCAL_ROOT_ENV = "IMET_KAGGLE_ROOT"
COMPETITION_MARKER = "labels.csv"


@dataclasses.dataclass(frozen=True)
class KagglePaths:
    root: Path
    on_kaggle: bool

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def working(self) -> Path:
        return self.root / "working"

    @property
    def scratch(self) -> Path:
        """A folder for caches that is not saved as kernel output."""
        if self.on_kaggle:
            return Path(tempfile.gettempdir()) / "imet-scratch"
        return self.root / "tmp"


def kaggle_paths() -> KagglePaths:
    """Resolves the kernel's root: ``$IMET_KAGGLE_ROOT`` locally, else ``/kaggle``."""
    local = os.environ.get(LOCAL_ROOT_ENV)
    if local:
        return KagglePaths(root=Path(local), on_kaggle=False)
    return KagglePaths(root=Path("/kaggle"), on_kaggle=True)


def _listing(input_dir: Path) -> str:
    if not input_dir.is_dir():
        return f"{input_dir} does not exist"
    found = sorted(str(p.relative_to(input_dir)) for p in input_dir.glob("*/*") if p.is_dir())
    found += sorted(str(p.relative_to(input_dir)) for p in input_dir.glob("*") if p.is_dir())
    return f"{input_dir} holds: {', '.join(found) or 'nothing'}"


def _first_holding(tried: Sequence[Path], marker: str, paths: KagglePaths, *, what: str, hint: str) -> Path:
    for cand in tried:
        if (cand / marker).is_file():
            return cand
    raise FileNotFoundError(
        f"{what} not found: no {marker} in " + ", ".join(map(str, tried)) + f". {hint} {_listing(paths.input)}"
    )


def find_competition_dir(paths: KagglePaths, slug: str) -> Path:
    """Finds the competition data under either Kaggle mount layout.

    Raises:
        FileNotFoundError: naming every place tried and what the input folder holds.
    """
    tried = [paths.input / slug, paths.input / "competitions" / slug]
    return _first_holding(
        tried, COMPETITION_MARKER, paths, what=f"competition {slug!r}", hint="Add the competition as a data source."
    )


def find_kernel_output(paths: KagglePaths, slug: str, marker: str) -> Path:
    """Finds another kernel's output, attached as input, under either layout.

    Args:
        paths: where we are.
        slug: the kernel's slug, or ``owner/slug``.
        marker: a file name that the output must contain.
    """
    owner, _, name = slug.rpartition("/")
    tried: list[Path] = [paths.input / name]
    if owner:
        tried.append(paths.input / "notebooks" / owner / name)
    else:
        tried.extend(sorted((paths.input / "notebooks").glob(f"*/{name}")))
    return _first_holding(
        tried, marker, paths, what=f"output of kernel {slug!r}", hint="Attach the kernel as a data source."
    )


def find_kernel_outputs(paths: KagglePaths, slugs: Sequence[str], marker: str) -> list[Path]:
    return [find_kernel_output(paths, s, marker) for s in slugs]


def previous_output(paths: KagglePaths, slug: str | None, marker: str) -> Path | None:
    """The previous output named by ``resume_from`` (None if unset).

    Raises:
        FileNotFoundError: if ``slug`` is set but no attached input holds its output; resuming was asked
            for, so silently training from scratch would spend the hours it was meant to save.
    """
    if not slug:
        return None
    try:
        return find_kernel_output(paths, slug, marker)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"resume_from={slug!r}: {e} Set resume_from=None to train afresh.") from None
