"""What the build makes: the kernels, named once (role, fold, id, title, folder), and where their sources are."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "imet_utils"
ROLES = ("train", "submit")
SOURCES = {"train": ROOT / "kernels" / "train.py", "submit": ROOT / "kernels" / "submit.py"}
METADATA_FILE = "kernel-metadata.json"
BASE_METADATA = ROOT / METADATA_FILE
CLI = ROOT / "build_kernel.py"
SET_FLAGS = {"train": "--set", "submit": "--set-submit"}  # the option that overrides each role's config
HASH_CONSTANT = "CONTENT_HASH"  # the built kernel's own content hash; its run_status.json records it
# The constant's line, in a script or in a notebook's JSON (its quotes escaped there): group 2 is the value.
_HASH_LINE = re.compile(HASH_CONSTANT + r' = (\\?")([0-9a-f]*)\1')
_FOLD_SUFFIX = re.compile(r"-f(\d+)$")


class BuildError(Exception):
    """The build can't produce a correct kernel; the message says why."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One Kaggle kernel of the build.

    Attributes:
        role: "train" or "submit": which source in kernels/ it is built from.
        id: ``owner/slug`` on Kaggle.
        title: its title (Kaggle derives the slug of a new kernel from it).
        folder: its build folder, ``<out>/<slug>``, holding the code file and the metadata.
        fold: for ``--split-folds``, the one fold this train kernel trains; None otherwise.
    """

    role: str
    id: str
    title: str
    folder: Path
    fold: int | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")

    @property
    def slug(self) -> str:
        return self.id.split("/")[-1]

    @property
    def metadata_path(self) -> Path:
        return self.folder / METADATA_FILE

    def metadata(self) -> dict:
        return json.loads(self.metadata_path.read_text())

    def code_path(self) -> Path:
        """The code file its metadata names (a hand edit counts)."""
        return self.folder / self.metadata()["code_file"]

    def embedded_hash(self) -> str | None:
        """The ``CONTENT_HASH`` its code carries ("" before the build fills it in; None: the code has none)."""
        m = _HASH_LINE.search(self.code_path().read_text())
        return m.group(2) if m else None

    def describe(self) -> str:
        return self.role if self.fold is None else f"{self.role} (fold {self.fold})"


@dataclasses.dataclass(frozen=True)
class Build:
    """The kernels of one build: the train kernel(s) first, then the submit kernel."""

    kernels: tuple[Kernel, ...]

    def __iter__(self) -> Iterator[Kernel]:
        return iter(self.kernels)

    def __len__(self) -> int:
        return len(self.kernels)

    @property
    def train(self) -> tuple[Kernel, ...]:
        return tuple(k for k in self.kernels if k.role == "train")

    @property
    def submit(self) -> Kernel | None:
        return next((k for k in self.kernels if k.role == "submit"), None)


def content_hash(kernel: Kernel) -> str:
    """The built kernel's identity: its metadata and its code file, the value of its ``CONTENT_HASH`` line left
    out (so that embedding the hash doesn't change it). The same build gives the same hash; the orchestrator
    compares it, and the built kernel carries it (``embed_content_hash``) into its run_status.json."""
    meta_text = kernel.metadata_path.read_text()
    code = kernel.folder / json.loads(meta_text)["code_file"]
    digest = hashlib.sha256(meta_text.encode())
    if code.is_file():
        text = code.read_bytes().decode()  # as it is on disk: no newline translation
        digest.update(_HASH_LINE.sub(lambda m: f"{HASH_CONSTANT} = {m.group(1)}{m.group(1)}", text, 1).encode())
    return digest.hexdigest()[:16]


def embed_content_hash(kernel: Kernel) -> str | None:
    """Writes ``content_hash(kernel)`` into the code's ``CONTENT_HASH`` line where it differs (after the build,
    or a hand edit); returns the hash, or None for code without the line."""
    code = kernel.code_path()
    text = code.read_bytes().decode()
    m = _HASH_LINE.search(text)
    if m is None:
        return None
    value = content_hash(kernel)
    if m.group(2) != value:
        code.write_bytes(f"{text[: m.start(2)]}{value}{text[m.end(2) :]}".encode())
    return value


def plan_kernels(base: dict, out_dir: Path, split_folds: Sequence[int] = ()) -> Build:
    """The kernels a build makes from the user's metadata: its train kernel (or one per fold of
    ``split_folds``, ``<slug>-f<k>``) and the submit kernel ``<slug minus -train>-submit``."""
    owner, slug = base["id"].split("/", 1)
    title = base.get("title") or slug
    sub_slug = slug[: -len("-train")] + "-submit" if slug.endswith("-train") else slug + "-submit"
    sub_title = title[: -len("train")] + "submit" if title.lower().endswith("train") else title + " submit"
    out_dir = Path(out_dir)
    if split_folds:
        train = [
            Kernel("train", f"{owner}/{slug}-f{k}", f"{title}-f{k}", out_dir / f"{slug}-f{k}", fold=k)
            for k in split_folds
        ]
    else:
        train = [Kernel("train", f"{owner}/{slug}", title, out_dir / slug)]
    return Build((*train, Kernel("submit", f"{owner}/{sub_slug}", sub_title, out_dir / sub_slug)))


def built_kernels(out_dir: Path) -> Build:
    """The kernels in a build folder as they are now (a folder with a metadata file; submit kernels end in
    -submit). Unreadable metadata is left for the check to report."""
    kernels = []
    for meta_path in sorted(Path(out_dir).glob(f"*/{METADATA_FILE}")):
        folder = meta_path.parent
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        kid = meta.get("id") if isinstance(meta.get("id"), str) else folder.name
        role = "submit" if folder.name.endswith("-submit") else "train"
        fold = _FOLD_SUFFIX.search(folder.name) if role == "train" else None
        kernels.append(Kernel(role, kid, str(meta.get("title", "")), folder, int(fold.group(1)) if fold else None))
    return Build(tuple(sorted(kernels, key=lambda k: k.role == "submit")))
