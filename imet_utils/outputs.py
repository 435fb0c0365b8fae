"""The train and submit kernels' output layout: file names in one place, fold folders, OOF, resuming.

A train output holds ``config.json``, ``folds.csv`` and, per fold, ``fold<k>/``:
- ``model/``: the best-F2 model as a TF SavedModel (loads without the efficientnet package);
- ``model_f32/``: if it was trained in 16 bits, the same model computing in float32, which a CPU session
  predicts with (float16 is about 10x slower on a CPU);
- ``oof.npz``: the best epoch's validation probabilities, indexed by id;
- ``history.csv``: loss, val_loss, val F2 and threshold per epoch;
- ``state.json``: progress, so a restarted kernel resumes from the last finished epoch;
- while unfinished, ``last.keras`` (weights + optimizer state) and ``best.weights.h5``.

A submit output holds ``decision.json``, ``test_probs.npz`` and ``submission.csv``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from imet_utils.config import TrainConfig, keys_where, to_dict
from imet_utils.console import log

CONFIG_FILE = "config.json"
FOLDS_FILE = "folds.csv"
STATE_FILE = "state.json"
OOF_FILE = "oof.npz"
MODEL_DIR = "model"
MODEL_F32_DIR = "model_f32"  # a float32 copy of a 16-bit model, for CPU sessions (16-bit runs ~10x slower there)
SAVED_MODEL_FILE = "saved_model.pb"
HISTORY_FILE = "history.csv"
LAST_CHECKPOINT = "last.keras"
BEST_WEIGHTS = "best.weights.h5"
DECISION_FILE = "decision.json"
TEST_PROBS_FILE = "test_probs.npz"  # the submit kernel's blended test probabilities, saved before deciding
SUBMISSION_FILE = "submission.csv"
# Plots, saved as output and shown inline in the notebook form.
SAMPLE_IMAGES_PLOT = "sample_images.png"
FOLD_COUNTS_PLOT = "fold_label_counts.png"
CURVES_PLOT = "training_curves.png"
THRESHOLD_PLOT = "threshold_curve.png"
SAMPLE_PREDICTIONS_PLOT = "sample_predictions.png"


def fold_dir(out: Path, fold: int) -> Path:
    return Path(out) / f"fold{fold}"


def save_oof(d: Path, ids, probs: np.ndarray, views) -> None:
    """A fold's OOF file: its validation ids, their probabilities (the mean over ``views``) and the views' names."""
    np.savez_compressed(
        Path(d) / OOF_FILE,
        ids=np.asarray(ids, dtype=str),
        probs=np.asarray(probs, np.float32),
        views=np.asarray(list(views), dtype=str),
    )


def oof_views(out: Path, n_folds: int) -> list[tuple]:
    """The views each finished fold's OOF averages, in fold order; ``("center",)`` for files written before the
    OOF recorded them (they held the centre view)."""
    found = []
    for k in range(n_folds):
        p = fold_dir(out, k) / OOF_FILE
        if (fold_dir(out, k) / MODEL_DIR).is_dir() and p.is_file():
            z = np.load(p)
            found.append(tuple(str(v) for v in z["views"]) if "views" in z.files else ("center",))
    return found


def read_oof(out: Path, n_folds: int) -> pd.DataFrame:
    """All finished folds' OOF probabilities of one train output: columns id, fold, probs (row arrays)."""
    frames = []
    for k in range(n_folds):
        p = fold_dir(out, k) / OOF_FILE
        if (fold_dir(out, k) / MODEL_DIR).is_dir() and p.is_file():
            z = np.load(p)
            frames.append(pd.DataFrame({"id": z["ids"].astype(str), "fold": k, "row": list(z["probs"])}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "fold", "row"])


RESUME_KEYS = keys_where(TrainConfig, "resume")  # what must match to resume an output


def _changed_keys(config_json: Path, config: TrainConfig) -> list[str]:
    before = json.loads(Path(config_json).read_text())
    now = to_dict(config)
    return [k for k in RESUME_KEYS if before.get(k) != now[k]]


def check_resumable(out: Path, config: TrainConfig) -> None:
    """Refuses to carry on in an output folder whose folds were trained with other settings.

    Raises:
        RuntimeError: naming the settings that differ; nothing is deleted.
    """
    path = Path(out) / CONFIG_FILE
    if path.is_file() and any(Path(out).glob(f"fold*/{STATE_FILE}")):
        changed = _changed_keys(path, config)
        if changed:
            raise RuntimeError(
                f"{out} holds folds trained with other {changed}; resuming them would mix models. "
                f"Use an empty output folder (locally: drop --resume or use another --work-dir)."
            )


def copy_previous_output(previous: Path, out: Path, config: TrainConfig) -> None:
    """Copies an earlier run's folds and fold folders (attached read-only as input on Kaggle) so training
    resumes from them.

    Raises:
        RuntimeError: if that run's config can't be read or it trained other settings: training afresh
            would spend the hours the user meant to save, so it stops at once instead.
    """
    previous = Path(previous)
    if previous.resolve() == Path(out).resolve():
        return
    try:
        changed = _changed_keys(previous / CONFIG_FILE, config)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"resume_from={config.resume_from!r}: {previous}/config.json can't be read ({e})") from None
    if changed:
        raise RuntimeError(
            f"resume_from={config.resume_from!r}: {previous} was trained with other {changed} "
            f"than this config; restore them to resume, or set resume_from=None to train afresh"
        )
    for name in (FOLDS_FILE,):
        if (previous / name).is_file() and not (Path(out) / name).exists():
            shutil.copy2(previous / name, Path(out) / name)
    copied = []
    for d in sorted(previous.glob("fold*")):
        if d.is_dir() and not (Path(out) / d.name).exists():
            shutil.copytree(d, Path(out) / d.name)
            copied.append(d.name)
    log(f"resume: copied {copied or 'nothing new'} from {previous}")
