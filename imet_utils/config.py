"""One frozen config object per kernel, validated, saved with every run.

The kernels set a plain ``CONFIG = dict(...)`` block at their top; ``from_dict``
turns it into a typed dataclass and fails loudly on unknown keys or bad values,
listing the valid keys, so a typo stops the build rather than a Kaggle run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imet_utils.augment_presets import AUGMENT_MODES, AUGMENT_PRESETS
from imet_utils.decision import RULES
from imet_utils.losses import LOSSES
from imet_utils.metrics import BASELINE_MAX_LABELS, BASELINE_MIN_LABELS
from imet_utils.schedules import LR_SCHEDULES

# Names for the 2019 baseline notebook's magic numbers, in one place (its label counts: imet_utils.metrics).
# start, stop (inclusive), step: the baseline's range, finer (it stepped 0.05)
DEFAULT_THRESHOLD_GRID = (0.05, 0.5, 0.01)
KAGGLE_SESSION_HOURS = 12.0
LR_REFERENCE_BATCH = 32  # the 2019 baseline notebook's batch, at which its lr of 3e-4 applied
KAGGLE_INFERENCE_HOURS = 9.0
# Deterministic test-time views, in the order a TTA count takes them (made in pipeline.view).
TTA_VIEWS = (
    "center",
    "center_flip",
    "top_left",
    "bottom_right",
    "top_right_flip",
    "bottom_left_flip",
    "top_right",
    "bottom_left",
)


class ConfigError(ValueError):
    """A config key or value is not valid."""


def one_of(registry: dict) -> str:
    """A registry's names for a config help, with each entry's ``help`` where it has one."""
    if not any(hasattr(entry, "help") for entry in registry.values()):
        return ", ".join(f"'{name}'" for name in registry)
    return "; ".join(f"'{name}': {entry.help}" for name, entry in registry.items())


def check_name(key: str, value: str, registry: dict) -> None:
    """Raises ``ConfigError`` naming the known entries if ``value`` is not a key of ``registry``."""
    if value not in registry:
        raise ConfigError(f"unknown {key} {value!r}; known: {list(registry)}")


def setting(default: Any, help: str | Callable[[], str], *, resume: bool = False, run_only: bool = False) -> Any:
    """A config field that documents itself once: its help feeds the kernel's ``CONFIG`` block, ``--set`` and
    the README table.

    Args:
        default: the default value.
        help: one line for a user, or a function that makes it when shown (so that a help listing a registry's
            names lists an entry registered after the config class was defined); the build reads it
            (``kernel_build.settings.field_help``).
        resume: the field must match for a train output to be resumed (it changes what the folds are).
        run_only: the field describes one run, not the model it trains (which folds, time, threads...): train
            outputs that differ only in these are one model family to the submit kernel.
    """
    return dataclasses.field(default=default, metadata={"help": help, "resume": resume, "run_only": run_only})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of the train kernel. The model, optimiser and epochs are the 2019 baseline notebook's; see the
    README for where the defaults differ from it (folds, augmentation placement, threshold grid)."""

    competition: str = setting("imet-2019-fgvc6", "competition slug (its data folder name)", resume=True)
    model: str = setting("efficientnet-b3", "backbone: see MODELS in imet_utils.models", resume=True)
    weights: str | None = setting("imagenet", "pretrained weights; None trains from scratch (no download)")
    image_size: int = setting(288, "square crop size in pixels", resume=True)
    batch_size: int = setting(32, "per replica; the global batch scales with the GPUs")
    auto_batch: bool = setting(
        False,
        "if batch_size runs out of device memory in the first-minute rehearsal, halve it until it fits (the "
        "learning rate scales with it) instead of stopping",
    )
    epochs: int = setting(8, "epochs per fold")
    lr: float = setting(3e-4, "Adam learning rate at a global batch of lr_reference_batch")
    lr_reference_batch: int = setting(
        LR_REFERENCE_BATCH,
        "the global batch lr is for (the 2019 baseline notebook's); the run's rate is lr x global batch / this "
        "(linear scaling: T4 x2 trains at twice a P100's rate); 0: lr as given",
    )
    effective_lr: float | None = setting(
        None, "recorded by the train kernel in config.json: the Adam rate this run used; not a setting", run_only=True
    )
    loss: str = setting("bce", lambda: f"one of {one_of(LOSSES)}")
    focal_gamma: float = setting(2.0, "focal loss gamma")
    focal_alpha: float | None = setting(None, "focal loss: weight positives by alpha, negatives by 1 - alpha")
    lr_schedule: str = setting("constant", lambda: f"one of {one_of(LR_SCHEDULES)}")
    warmup_epochs: int = setting(0, "epochs that train the head only, the backbone frozen (Lopuhin: 1)")
    mixup_alpha: float = setting(0.0, "> 0: mixup within each batch with weight ~ Beta(alpha, alpha)")
    feature_cache: bool = setting(
        False,
        "CPU fine-tuning (imet_utils.transfer): the backbone's blocks below split_block run once over every train "
        "image's feature_views; each fold trains the blocks above and the head on those features",
        resume=True,
    )
    split_block: int = setting(
        11,
        "with feature_cache: the first backbone block that trains (a split backbone: efficientnet-lite*)",
        resume=True,
    )
    feature_views: tuple[str, ...] = setting(
        ("center", "center_flip"),
        "with feature_cache: the views cached per train image (one is drawn per image and epoch); the OOF's "
        "views (the first oof_tta of TTA_VIEWS) must be among them",
        resume=True,
    )
    backbone_lr: float | None = setting(
        None, "Adam learning rate of the trained backbone blocks with feature_cache; None: lr (the head's)"
    )
    freeze_bn: bool = setting(
        False, "with feature_cache: BatchNorm of the trained blocks keeps its ImageNet statistics (inference mode)"
    )
    dense_units: int = setting(512, "the head's hidden layer: GAP -> Dense -> Dropout -> sigmoid")
    dropout: float = setting(0.5, "dropout before the output layer")
    bn_momentum: float | None = setting(None, "BatchNorm momentum; None keeps the backbone's (0.99)")
    n_folds: int = setting(5, "K: the number of folds", resume=True)
    folds: tuple[int, ...] = setting((0, 1, 2, 3, 4), "the folds this kernel trains", run_only=True)
    fold_method: str = setting(
        "balanced", "'balanced' (ours), 'greedy' (the 2019 baseline notebook's exact split), 'iterstrat'", resume=True
    )
    seed: int = setting(42, "seed of the folds and the shuffling", resume=True)
    augment: str = setting("device", "where augmentation runs: 'device' (GPU), 'albumentations' (CPU), 'none'")
    augment_preset: str = setting(
        "ours",
        lambda: f"one of {one_of(AUGMENT_PRESETS)}; one that scales or reflects needs augment='albumentations'",
    )
    cache_scale: float = setting(1.1, "cached JPEG short side = image_size * cache_scale")
    max_aspect: float = setting(4.0, "longer sides are squashed to this aspect in the cache")
    threshold_grid: tuple[float, float, float] = setting(
        DEFAULT_THRESHOLD_GRID, "validation F2 threshold search: start, stop (inclusive), step"
    )
    min_labels: int = setting(BASELINE_MIN_LABELS, "at least this many labels per image (>= 1)")
    max_labels: int = setting(BASELINE_MAX_LABELS, "at most this many labels per image")
    oof_tta: int = setting(
        2,
        "views averaged in the saved OOF, which the submit kernel decides on: set it to the submit kernel's tta",
        run_only=True,
    )
    mixed_precision: bool = setting(True, "float16 on GPU, bfloat16 on TPU")
    jit_compile: bool = setting(False, "XLA (turned off with more than one replica)")
    bad_image_share: float = setting(0.01, "fail if a larger share of train images is unreadable")
    time_budget_hours: float = setting(
        KAGGLE_SESSION_HOURS - 0.5, "never start an epoch that can't finish by then", run_only=True
    )
    max_images: int | None = setting(None, "train on a random subset of this many images (quick tries)")
    resume_from: str | None = setting(
        None, "this kernel's owner/slug: resume its previous output, attached as input", run_only=True
    )
    workers: int = setting(0, "threads for decoding; 0: all cores", run_only=True)
    cache_dir: str | None = setting(
        None, "image cache folder; None: a scratch folder not saved as output", run_only=True
    )
    verbose: int = setting(0, "Keras fit verbosity; our callback logs one line per epoch", run_only=True)

    def validate(self) -> TrainConfig:
        if self.image_size < 32:
            raise ConfigError(f"image_size must be >= 32, got {self.image_size}")
        if self.n_folds < 2:
            raise ConfigError(f"n_folds must be >= 2, got {self.n_folds}")
        bad = [f for f in self.folds if not 0 <= f < self.n_folds]
        if bad or not self.folds:
            raise ConfigError(f"folds must be a non-empty subset of 0..{self.n_folds - 1}, got {self.folds}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.min_labels < 1 or self.max_labels < self.min_labels:
            raise ConfigError(
                f"need 1 <= min_labels <= max_labels (every image needs a label), "
                f"got {self.min_labels}, {self.max_labels}"
            )
        if not 1 <= self.oof_tta <= len(TTA_VIEWS):
            raise ConfigError(f"oof_tta must be in 1..{len(TTA_VIEWS)}, got {self.oof_tta}")
        check_name("augment", self.augment, dict.fromkeys(AUGMENT_MODES))
        check_name("augment_preset", self.augment_preset, AUGMENT_PRESETS)
        if not AUGMENT_PRESETS[self.augment_preset].runs_on_device and self.augment != "albumentations":
            raise ConfigError(
                f"augment_preset={self.augment_preset!r} runs on the CPU only (albumentations): "
                f"set augment='albumentations' (got augment={self.augment!r})"
            )
        check_name("loss", self.loss, LOSSES)
        check_name("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}")
        if self.mixup_alpha < 0:
            raise ConfigError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
        if self.lr_reference_batch < 0:
            raise ConfigError(f"lr_reference_batch must be >= 0 (0: no scaling), got {self.lr_reference_batch}")
        if self.feature_cache:
            self._validate_feature_cache()
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        return self

    def _validate_feature_cache(self) -> None:
        bad = [v for v in self.feature_views if v not in TTA_VIEWS]
        if bad or not self.feature_views:
            raise ConfigError(f"unknown feature_views {bad}; known: {list(TTA_VIEWS)}")
        missing = [v for v in TTA_VIEWS[: self.oof_tta] if v not in self.feature_views]
        if missing:
            raise ConfigError(
                f"feature_cache: the OOF's views {list(TTA_VIEWS[: self.oof_tta])} (oof_tta={self.oof_tta}) must be "
                f"among feature_views {list(self.feature_views)}; missing {missing}"
            )
        if self.split_block < 0:
            raise ConfigError(f"split_block must be >= 0, got {self.split_block}")
        if self.lr_schedule not in ("constant", "cosine") or self.mixup_alpha > 0:
            raise ConfigError(
                f"feature_cache supports lr_schedule 'constant' or 'cosine' and no mixup; got "
                f"lr_schedule={self.lr_schedule!r}, mixup_alpha={self.mixup_alpha}"
            )


@dataclasses.dataclass(frozen=True)
class SubmitConfig:
    """Settings of the offline submit kernel. Model facts (size, classes) come from the train outputs."""

    competition: str = setting("imet-2019-fgvc6", "competition slug (its data folder name)")
    train_kernels: tuple[str, ...] = setting(
        ("imet-2019-train",), "the train kernels whose outputs are ensembled (the build sets them from the metadata)"
    )
    tta: int = setting(2, "views per image: original, hflip, then corner crops (see TTA_VIEWS)")
    tta_views: tuple[str, ...] | None = setting(None, "an explicit list of views instead of the first `tta`")
    ensemble_weights: tuple[float, ...] | None = setting(None, "one per model family; None: fitted on OOF")
    decision_rules: tuple[str, ...] = setting(
        tuple(RULES), lambda: f"the rules that compete on OOF, of {one_of(RULES)} (imet_utils.decision)"
    )
    batch_size: int = setting(64, "images per prediction batch on each replica")
    threshold_grid: tuple[float, float, float] = setting(
        DEFAULT_THRESHOLD_GRID, "thresholds the rules try: start, stop (inclusive), step"
    )
    min_labels: int = setting(BASELINE_MIN_LABELS, "every rule gives at least this many labels per image (>= 1)")
    max_labels: int = setting(BASELINE_MAX_LABELS, "every rule gives at most this many labels per image")
    second_level: bool = setting(
        True,
        "cross-fit a second level (imet_utils.stacking) on OOF; used only if its "
        "cross-fitted F2 beats the best first-level rule's",
    )
    fallback_top_k: int = setting(3, "labels given to a test image that can't be read (the most frequent)")
    time_budget_hours: float = setting(KAGGLE_INFERENCE_HOURS - 0.5, "TTA, then models, are cut to fit", run_only=True)
    workers: int = setting(0, "threads for decoding; 0: all cores", run_only=True)
    cache_dir: str | None = setting(None, "image cache folder; None: a scratch folder", run_only=True)
    reuse_predictions: str | None = setting(
        None,
        "re-decide from a previous run's test_probs.npz without "
        "predicting: this kernel's owner/slug (attached) or a path",
        run_only=True,
    )

    def validate(self) -> SubmitConfig:
        if self.min_labels < 1 or self.max_labels < self.min_labels:
            raise ConfigError(
                f"need 1 <= min_labels <= max_labels (every image needs a label), "
                f"got {self.min_labels}, {self.max_labels}"
            )
        if not 1 <= self.fallback_top_k <= self.max_labels:
            raise ConfigError(f"fallback_top_k must be in 1..max_labels, got {self.fallback_top_k}")
        if not 1 <= self.tta <= len(TTA_VIEWS):
            raise ConfigError(f"tta must be in 1..{len(TTA_VIEWS)}, got {self.tta}")
        bad = [v for v in self.tta_views or () if v not in TTA_VIEWS]
        if bad:
            raise ConfigError(f"unknown tta_views {bad}; known: {list(TTA_VIEWS)}")
        if not self.train_kernels:
            raise ConfigError("train_kernels must name at least one train kernel output")
        bad = [r for r in self.decision_rules if r not in RULES]
        if bad or not self.decision_rules:
            raise ConfigError(f"unknown decision rule(s) {bad}; known: {list(RULES)}")
        if self.ensemble_weights is not None and any(w < 0 for w in self.ensemble_weights):
            raise ConfigError(f"ensemble_weights must be non-negative, got {self.ensemble_weights}")
        return self


def coerce_value(name: str, hint: Any, value: Any) -> Any:
    """Checks ``value`` against a dataclass type hint (of the field ``name``); converts lists to tuples."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce_value(name, inner, value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce_value(name, args[0], v) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{name} must have {len(args)} items, got {value!r}")
        return tuple(coerce_value(name, a, v) for a, v in zip(args, value))
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
    kwargs = {k: coerce_value(k, hints[k], v) for k, v in values.items()}
    return cls(**kwargs).validate()


def to_dict(config: Any) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def save_config(config: Any, path: Path) -> None:
    Path(path).write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load_train_config(path: Path) -> TrainConfig:
    return from_dict(TrainConfig, json.loads(Path(path).read_text()))


def keys_where(cls: type, flag: str) -> tuple[str, ...]:
    """The fields of ``cls`` whose metadata sets ``flag`` (``"resume"`` or ``"run_only"``)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(flag))
