"""One entry point for every mode: ``generate_competition(out, mode=...)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from synth.competition import IMET_2019_GROUPS
from synth.gallery import GALLERY_GROUPS, generate_gallery
from synth.objects import OBJECTS_GROUPS, generate_objects
from synth.realistic import REALISTIC_GROUPS, generate_realistic
from synth.toy import generate_toy

MODES = ("toy", "realistic", "objects", "gallery")
DEFAULT_GROUPS = {
    "toy": IMET_2019_GROUPS,
    "realistic": REALISTIC_GROUPS,
    "objects": OBJECTS_GROUPS,
    "gallery": GALLERY_GROUPS,
}
# (min_side, max_side) of each mode's images when not given: the photographic modes are larger, so their
# objects keep some detail.
DEFAULT_SIDES = {"toy": (72, 160), "realistic": (72, 160), "objects": (96, 176), "gallery": (128, 192)}
GENERATORS = {
    "toy": generate_toy,
    "realistic": generate_realistic,
    "objects": generate_objects,
    "gallery": generate_gallery,
}


def generate_competition(
    out: Path,
    *,
    n_train: int = 1000,
    n_test: int = 200,
    groups: Sequence[tuple[str, int]] | None = None,
    min_side: int | None = None,
    max_side: int | None = None,
    seed: int = 0,
    mode: str = "toy",
) -> Path:
    """Writes a small iMet-format competition to ``out``.

    Args:
        out: folder to create.
        n_train: train images.
        n_test: test images (ids in sample_submission.csv).
        groups: (group name, number of labels) in labels.csv order; None: the mode's default
            (``DEFAULT_GROUPS``).
        min_side: smallest image short side, px; None: the mode's (``DEFAULT_SIDES``).
        max_side: the size bound, px, by each mode's rule (``synth.competition.image_shape``: the short side
            below 3/4 of it, the long side at most twice it; gallery: ``synth.gallery.gallery_shape``, the short
            side at most it); None: the mode's.
        seed: makes the data deterministic: the same arguments write the same bytes.
        mode: ``toy`` (easy, learnable; ``synth.toy``), ``realistic`` (``synth.realistic``), ``objects``
            (photographed objects on textures, ``synth.objects``) or ``gallery`` (museum photographs of framed
            works, ``synth.gallery``); all but toy also write ``train_clean.csv``.

    Returns:
        ``out``.

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    sides = DEFAULT_SIDES[mode]
    return GENERATORS[mode](
        out,
        n_train=n_train,
        n_test=n_test,
        groups=DEFAULT_GROUPS[mode] if groups is None else groups,
        min_side=sides[0] if min_side is None else min_side,
        max_side=sides[1] if max_side is None else max_side,
        seed=seed,
    )
