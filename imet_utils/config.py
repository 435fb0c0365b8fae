"""One frozen config object per kernel, validated, saved with every run.

The kernels set a plain ``CONFIG = dict(...)`` block at their top; ``from_dict``
turns it into a typed dataclass and fails loudly on unknown keys or bad values,
listing the valid keys, so a typo stops the build rather than a Kaggle run.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Optional, Tuple

# Names for the seed's magic numbers, in one place.
SEED_THRESHOLD_GRID = (0.05, 0.5, 0.01)  # start, stop (inclusive), step
SEED_MIN_LABELS = 1
SEED_MAX_LABELS = 10
KAGGLE_SESSION_HOURS = 12.0
KAGGLE_INFERENCE_HOURS = 9.0
AUGMENT_MODES = ("device", "albumentations", "none")
# Deterministic test-time views, in the order a TTA count takes them (made in pipeline.view).
TTA_VIEWS = ("center", "center_flip", "top_left", "bottom_right", "top_right_flip", "bottom_left_flip",
             "top_right", "bottom_left")
LOSSES = ("bce", "focal")
LR_SCHEDULES = ("constant", "cosine", "plateau")
DECISION_RULES = ("global", "per_group", "per_class", "relative")  # see imet_utils.decision


class ConfigError(ValueError):
    """A config key or value is not valid."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of the train kernel. Defaults are the seed notebook's."""

    competition: str = "imet-2019-fgvc6"
    model: str = "efficientnet-b3"
    weights: Optional[str] = "imagenet"
    image_size: int = 288
    batch_size: int = 32
    epochs: int = 8
    lr: float = 3e-4
    loss: str = "bce"  # or "focal"
    focal_gamma: float = 2.0
    focal_alpha: Optional[float] = None  # set (e.g. 0.25) to weight positives by alpha, negatives by 1 - alpha
    lr_schedule: str = "constant"  # or "cosine" (to 0 over the epochs), "plateau" (halve when loss stalls)
    warmup_epochs: int = 0  # epochs that train the head only, the backbone frozen (Lopuhin: 1)
    mixup_alpha: float = 0.0  # > 0: mixup with Beta(alpha, alpha) per batch
    dense_units: int = 512
    dropout: float = 0.5
    bn_momentum: Optional[float] = None  # None keeps the backbone's own (0.99)
    n_folds: int = 5
    folds: Tuple[int, ...] = (0, 1, 2, 3, 4)
    fold_method: str = "balanced"
    seed: int = 42
    augment: str = "device"  # see AUGMENT_MODES and imet_utils.augment
    cache_scale: float = 1.1  # cached short side = image_size * cache_scale
    max_aspect: float = 4.0  # longer sides are squashed to this aspect in the cache
    threshold_grid: Tuple[float, float, float] = SEED_THRESHOLD_GRID
    min_labels: int = SEED_MIN_LABELS
    max_labels: int = SEED_MAX_LABELS
    mixed_precision: bool = True
    jit_compile: bool = False
    bad_image_share: float = 0.01
    time_budget_hours: float = KAGGLE_SESSION_HOURS - 0.5
    max_images: Optional[int] = None  # train on a subset (quick experiments)
    resume_from: Optional[str] = None  # this kernel's slug: its previous output, attached as input, is resumed
    workers: int = 0  # 0: all cores
    cache_dir: Optional[str] = None  # None: a scratch dir that is not saved as output
    verbose: int = 0  # Keras fit verbosity; our own callback logs one line per epoch

    def validate(self) -> "TrainConfig":
        if self.image_size < 32:
            raise ConfigError(f"image_size must be >= 32, got {self.image_size}")
        if self.n_folds < 2:
            raise ConfigError(f"n_folds must be >= 2, got {self.n_folds}")
        bad = [f for f in self.folds if not 0 <= f < self.n_folds]
        if bad or not self.folds:
            raise ConfigError(f"folds must be a non-empty subset of 0..{self.n_folds - 1}, got {self.folds}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.min_labels < 0 or self.max_labels < max(1, self.min_labels):
            raise ConfigError(f"need 0 <= min_labels <= max_labels, got {self.min_labels}, {self.max_labels}")
        if self.augment not in AUGMENT_MODES:
            raise ConfigError(f"unknown augment {self.augment!r}; known: {list(AUGMENT_MODES)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; known: {list(LOSSES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; known: {list(LR_SCHEDULES)}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        if self.mixup_alpha < 0:
            raise ConfigError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        return self


@dataclasses.dataclass(frozen=True)
class SubmitConfig:
    """Settings of the offline submit kernel. Model facts come from the train output."""

    competition: str = "imet-2019-fgvc6"
    train_kernels: Tuple[str, ...] = ("imet-2019-train",)  # slugs of the train kernels' outputs
    tta: int = 2  # views per image: original, hflip, then corner crops (see TTA_VIEWS)
    tta_views: Optional[Tuple[str, ...]] = None  # an explicit list of views instead of the first `tta`
    ensemble_weights: Optional[Tuple[float, ...]] = None  # one per model family; None: fitted on OOF
    decision_rules: Tuple[str, ...] = DECISION_RULES
    batch_size: int = 64
    threshold_grid: Tuple[float, float, float] = SEED_THRESHOLD_GRID
    min_labels: int = SEED_MIN_LABELS
    max_labels: int = SEED_MAX_LABELS
    fallback_top_k: int = 3  # labels given to a test image that can't be read
    time_budget_hours: float = KAGGLE_INFERENCE_HOURS - 0.5
    workers: int = 0
    cache_dir: Optional[str] = None

    def validate(self) -> "SubmitConfig":
        if not 1 <= self.tta <= len(TTA_VIEWS):
            raise ConfigError(f"tta must be in 1..{len(TTA_VIEWS)}, got {self.tta}")
        bad = [v for v in self.tta_views or () if v not in TTA_VIEWS]
        if bad:
            raise ConfigError(f"unknown tta_views {bad}; known: {list(TTA_VIEWS)}")
        if not self.train_kernels:
            raise ConfigError("train_kernels must name at least one train kernel output")
        bad = [r for r in self.decision_rules if r not in DECISION_RULES]
        if bad or not self.decision_rules:
            raise ConfigError(f"unknown decision rule(s) {bad}; known: {list(DECISION_RULES)}")
        if self.ensemble_weights is not None and any(w < 0 for w in self.ensemble_weights):
            raise ConfigError(f"ensemble_weights must be non-negative, got {self.ensemble_weights}")
        return self


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Checks ``value`` against a dataclass type hint; converts lists to tuples."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(name, inner, value)
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(name, args[0], v) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{name} must have {len(args)} items, got {value!r}")
        return tuple(_coerce(name, a, v) for a, v in zip(args, value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported type {hint}")


def from_dict(cls: type, values: dict) -> Any:
    """Builds a config dataclass from a dict, checking every key and type.

    Args:
        cls: ``TrainConfig`` or ``SubmitConfig``.
        values: field name -> value; missing fields keep their defaults.

    Returns:
        The validated, frozen config.

    Raises:
        ConfigError: on an unknown key (the message lists the valid keys) or a bad value.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {', '.join(names)}")
    kwargs = {k: _coerce(k, hints[k], v) for k, v in values.items()}
    return cls(**kwargs).validate()


def parse_override(cls: type, text: str) -> Tuple[str, Any]:
    """Parses one ``key=value`` override; the value is JSON, or a bare string.

    Examples: ``epochs=3``, ``model=tiny-cnn``, ``folds=[0,1]``, ``weights=null``.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    hints = typing.get_type_hints(cls)
    if key not in hints:
        names = [f.name for f in dataclasses.fields(cls)]
        raise ConfigError(f"unknown {cls.__name__} key(s) {[key]}; valid keys: {', '.join(names)}")
    _coerce(key, hints[key], value)  # the type now; cross-field checks once all overrides are merged
    return key, value


def to_dict(config: Any) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def save_config(config: Any, path: Path) -> None:
    Path(path).write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load_train_config(path: Path) -> TrainConfig:
    return from_dict(TrainConfig, json.loads(Path(path).read_text()))
