"""The training losses by name: ``LOSSES`` (``TrainConfig.loss``), and ``make_loss``.

Adding a loss is one entry here and its builder. Keras is imported inside the builders: the config validates
names against this registry at build time, where TensorFlow is never imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def _bce(config: Any):
    import keras

    return keras.losses.BinaryCrossentropy()


def _focal(config: Any):
    """Keras' focal loss, computed from clipped probabilities (stable in float32)."""
    import keras

    return keras.losses.BinaryFocalCrossentropy(
        gamma=config.focal_gamma,
        alpha=config.focal_alpha or 0.25,
        apply_class_balancing=config.focal_alpha is not None,
    )


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A registered loss.

    Attributes:
        help: one line for the config table.
        build: the ``TrainConfig`` -> a Keras loss on (targets, probabilities).
    """

    help: str
    build: Callable[[Any], Any]


LOSSES: dict[str, LossSpec] = {
    "bce": LossSpec("binary cross-entropy (the 2019 baseline notebook's)", _bce),
    "focal": LossSpec("Keras' binary focal loss (focal_gamma, focal_alpha)", _focal),
}


def get_loss(name: str) -> LossSpec:
    """The registered loss ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {list(LOSSES)}")
    return LOSSES[name]


def make_loss(config: Any):
    """The Keras loss that ``config.loss`` names.

    Args:
        config: the ``TrainConfig``.

    Returns:
        A ``keras.losses.Loss``.
    """
    return get_loss(config.loss).build(config)
