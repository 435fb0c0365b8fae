"""The learning-rate schedules by name: ``LR_SCHEDULES`` (``TrainConfig.lr_schedule``), and ``lr_callbacks``.

Adding a schedule is one entry here and its builder. Keras is imported inside the builders: the config validates
names against this registry at build time, where TensorFlow is never imported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

PLATEAU_FACTOR = 0.5  # the learning rate is halved on a stall...
PLATEAU_MIN_SHARE = 1 / 32  # ...down to this share of the configured rate


def _constant(config: Any) -> list:
    return []


def _cosine(config: Any) -> list:
    import keras

    return [
        keras.callbacks.LearningRateScheduler(
            lambda epoch: config.lr * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
        )
    ]


def _plateau(config: Any) -> list:
    import keras

    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor="loss", factor=PLATEAU_FACTOR, patience=1, min_lr=config.lr * PLATEAU_MIN_SHARE
        )
    ]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A registered learning-rate schedule.

    Attributes:
        help: one line for the config table.
        callbacks: the ``TrainConfig`` -> the Keras callbacks that drive the learning rate.
    """

    help: str
    callbacks: Callable[[Any], list]


LR_SCHEDULES: dict[str, Schedule] = {
    "constant": Schedule("the configured lr throughout (the 2019 baseline notebook's)", _constant),
    "cosine": Schedule("cosine from lr to 0 over the epochs", _cosine),
    "plateau": Schedule("halve lr when the training loss stalls for an epoch", _plateau),
}


def get_schedule(name: str) -> Schedule:
    """The registered schedule ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {name!r}; known: {list(LR_SCHEDULES)}")
    return LR_SCHEDULES[name]


def lr_callbacks(config: Any) -> list:
    """The Keras callbacks of ``config.lr_schedule`` (none for a constant rate).

    Args:
        config: the ``TrainConfig``.
    """
    return get_schedule(config.lr_schedule).callbacks(config)
