"""One entry point for both modes: ``generate_competition(out, mode=...)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from synth.competition import IMET_2019_GROUPS
from synth.realistic import REALISTIC_GROUPS, generate_realistic
from synth.toy import generate_toy

MODES = ("toy", "realistic")
DEFAULT_GROUPS = {"toy": IMET_2019_GROUPS, "realistic": REALISTIC_GROUPS}


def generate_competition(
    out: Path,
    *,
    n_train: int = 1000,
    n_test: int = 200,
    groups: Sequence[tuple[str, int]] | None = None,
    min_side: int = 72,
    max_side: int = 160,
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
        min_side: smallest image short side, px.
        max_side: largest image side, px.
        seed: makes the data deterministic: the same arguments write the same bytes.
        mode: ``toy`` (easy, learnable; ``synth.toy``) or ``realistic`` (``synth.realistic``; it also writes
            ``train_clean.csv``).

    Returns:
        ``out``.

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    generate = generate_toy if mode == "toy" else generate_realistic
    return generate(
        out,
        n_train=n_train,
        n_test=n_test,
        groups=DEFAULT_GROUPS[mode] if groups is None else groups,
        min_side=min_side,
        max_side=max_side,
        seed=seed,
    )
