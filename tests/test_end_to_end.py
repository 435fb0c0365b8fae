"""The built kernels, run as separate processes by build_kernel.py run-local, on generated data."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imet_utils.config import TTA_VIEWS
from imet_utils.data import multi_hot, read_labels, read_train
from imet_utils.outputs import oof_views
from kernel_build.scoring import best_constant_f2, f2_score

ROOT = Path(__file__).resolve().parents[1]


# Every test reads the session's local run (the local_run fixture, conftest.py): one xdist worker runs them all,
# so the run is made once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("local_run")]


def test_submission_is_valid_and_complete(local_run):
    data, work, _ = local_run
    sub = pd.read_csv(work / "submit/kaggle/working/submission.csv", dtype=str, keep_default_na=False)
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["id", "attribute_ids"]
    assert list(sub["id"]) == list(sample["id"])
    n = read_labels(data / "labels.csv").n_classes
    for labels in sub["attribute_ids"]:
        ids = [int(t) for t in labels.split()]
        assert 1 <= len(ids) <= 10 and all(0 <= i < n for i in ids)


def test_submission_beats_the_best_constant_prediction(local_run):
    data, work, _ = local_run
    n = read_labels(data / "labels.csv").n_classes
    truth = read_train(data / "solution.csv", n)
    sub = pd.read_csv(work / "submit/kaggle/working/submission.csv", dtype=str).set_index("id")
    pred = multi_hot([[int(t) for t in s.split()] for s in sub.loc[truth["id"], "attribute_ids"]], n)
    y = multi_hot(list(truth["labels"]), n)
    assert f2_score(y, pred) > best_constant_f2(y) + 0.1


def test_train_output_is_self_describing(local_run):
    import kernel_build

    _, work, log = local_run
    out = work / "imet-2019-train/kaggle/working"
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == kernel_build.LOCAL_TRAIN["model"] and config["n_folds"] == 3
    assert config["weights"] == "imagenet" and config["feature_cache"]  # the local run is transfer learning
    folds = pd.read_csv(out / "folds.csv", dtype={"id": str})
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    for k in range(3):
        z = np.load(out / f"fold{k}/oof.npz")
        assert set(z["ids"]) == set(folds.loc[folds["fold"] == k, "id"])
        assert (out / f"fold{k}/model/saved_model.pb").is_file()
        hist = pd.read_csv(out / f"fold{k}/history.csv")
        assert list(hist["epoch"]) == list(range(1, 7)) and hist["val_f2"].notna().all()
        assert not (out / f"fold{k}/last.keras").exists()  # checkpoints go once the fold is done
    for png in ("training_curves.png", "fold_label_counts.png"):
        assert (out / png).stat().st_size > 5000
    assert re.search(r"out-of-fold F2 over folds \[0, 1, 2\]: 0\.\d+", log)


def test_oof_is_saved_with_the_views_the_test_images_get(local_run):
    import kernel_build

    _, work, log = local_run
    out = work / "imet-2019-train/kaggle/working"
    views = TTA_VIEWS[: kernel_build.LOCAL_SUBMIT["tta"]]  # the local profile's tta, and its oof_tta
    assert kernel_build.LOCAL_TRAIN["oof_tta"] == len(views) > 1 and oof_views(out, 3) == [views] * 3
    assert "OOF averages the views" not in log


def test_submit_kernel_ran_offline_and_wrote_its_decision(local_run):
    _, work, log = local_run
    out = work / "submit/kaggle/working"
    decision = json.loads((out / "decision.json").read_text())
    assert decision["chosen"] in decision["oof_f2"] and decision["params"]["rule"] == decision["chosen"]
    assert decision["oof_f2"][decision["chosen"]] >= decision["oof_f2"]["global"]
    assert (out / "threshold_curve.png").is_file()
    # the submit kernel ran with efficientnet and albumentations made unimportable
    assert (work / "offline_image" / "efficientnet.py").is_file()
    assert "test F2 of submission.csv" in log
    # run_status.json says what ran: each kernel its built CONTENT_HASH, the submit kernel what it read
    from kernel_build.kernel import built_kernels, content_hash

    built = {k.role: content_hash(k) for k in built_kernels(work / "build")}
    trained = json.loads((work / "imet-2019-train/kaggle/working/run_status.json").read_text())
    status = json.loads((out / "run_status.json").read_text())
    assert trained["content_hash"] == built["train"] and status["content_hash"] == built["submit"]
    (read,) = status["inputs"].values()
    assert read["content_hash"] == built["train"] and read["finished_at"] == trained["finished_at"] and read["ok"]


def test_submit_kernel_blends_two_model_families(local_run, tmp_path):
    """Two train outputs of different models: weights fitted on OOF, both used, every id answered."""
    import os
    import shutil

    import kernel_build

    data, work, _ = local_run
    first = work / "imet-2019-train/kaggle/working"
    second = tmp_path / "other-model"
    shutil.copytree(first, second)
    config = json.loads((second / "config.json").read_text())
    config["dropout"] = 0.3  # another model family as far as the submit kernel can tell
    (second / "config.json").write_text(json.dumps(config))
    built = kernel_build.build(
        tmp_path / "build",
        train_overrides=kernel_build.LOCAL_TRAIN,
        submit_overrides={"train_kernels": ["me/imet-2019-train", "me/other-model"]},
    )
    root = kernel_build.kaggle_dir(
        tmp_path, "submit", {"imet-2019-fgvc6": data, "imet-2019-train": first, "other-model": second}, fresh=True
    )
    env = dict(os.environ, IMET_KAGGLE_ROOT=str(root), TF_CPP_MIN_LOG_LEVEL="2")
    res = subprocess.run(
        [sys.executable, *kernel_build.runnable(built.submit)],
        cwd=root / "working",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    decision = json.loads((root / "working/decision.json").read_text())
    weights = [m["weight"] for m in decision["ensemble"]]
    assert len(weights) == 2 and min(weights) >= 0 and sum(weights) == pytest.approx(1.0)
    assert set(decision["oof_f2"]) == {"global", "per_group", "per_class", "relative"}
    assert decision["oof_f2"][decision["chosen"]] >= decision["oof_f2"]["global"]
    sub = pd.read_csv(root / "working/submission.csv", dtype=str)
    assert list(sub["id"]) == list(pd.read_csv(data / "sample_submission.csv", dtype=str)["id"])
