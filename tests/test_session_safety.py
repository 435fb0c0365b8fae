"""A Kaggle session never dies on a bug late: checks that fail in the first minute, a budget counted from the
kernel's start, and test predictions that survive a failure after inference."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_patched_submit

import kernel_build
from imet_utils.config import TrainConfig, save_config
from synth import generate_competition

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_folds": 2, "folds": [0, 1], "epochs": 2}
TRAIN_STAGES = ("setup", "rehearsal", "csv", "folds", "cache", "training", "oof")
SUBMIT_STAGES = (
    "setup",
    "csv",
    "oof",
    "decision",
    "second_level",
    "decision_files",
    "test_cache",
    "predict",
    "submission",
)


def _train_kernel(tmp_path, data, inputs=None, **overrides):
    """The built train kernel and a simulated /kaggle for it (``inputs``: extra attached folders)."""
    built = kernel_build.build(tmp_path / "build", train_overrides={**kernel_build.SCRATCH_TRAIN, **SMALL, **overrides})
    train = built.train[0]
    root = kernel_build.kaggle_dir(tmp_path, "train", {"imet-2019-fgvc6": data, **(inputs or {})}, fresh=True)
    script = train.code_path()
    env = dict(os.environ, IMET_KAGGLE_ROOT=str(root), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return [sys.executable, str(script)], root, env


def _run(command, root, env, timeout=600):
    return subprocess.run(command, cwd=root / "working", env=env, capture_output=True, text=True, timeout=timeout)


def test_budget_counts_from_the_process_start_not_from_its_creation():
    code = (
        "import time; time.sleep(1.5)\n"
        "from imet_utils.budget import Budget\n"
        "b = Budget.from_process_start(1.0)\n"
        "print(b.elapsed(), b.left())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    elapsed, left = map(float, res.stdout.split())
    assert 1.5 <= elapsed < 30
    assert left == pytest.approx(3600 - elapsed, abs=1.0)


@pytest.mark.slow
def test_resume_from_an_output_that_is_not_attached_stops_before_any_work(tmp_path, tiny_competition):
    command, root, env = _train_kernel(tmp_path, tiny_competition, resume_from="someone/imet-2019-train")
    res = _run(command, root, env)
    assert res.returncode != 0
    assert "resume_from='someone/imet-2019-train': output of kernel 'someone/imet-2019-train' not found" in res.stderr
    assert "Set resume_from=None to train afresh" in res.stderr
    assert "stage setup" not in res.stdout and "epoch" not in res.stdout
    assert not (root / "working" / "folds.csv").exists()


@pytest.mark.slow
def test_resume_from_an_output_trained_with_other_settings_stops_before_any_work(tmp_path, tiny_competition):
    previous = tmp_path / "previous"
    (previous / "fold0").mkdir(parents=True)
    save_config(
        TrainConfig(model="tiny-cnn", weights=None, image_size=96, n_folds=2, folds=(0, 1)), previous / "config.json"
    )
    command, root, env = _train_kernel(
        tmp_path, tiny_competition, inputs={"imet-2019-train": previous}, resume_from="me/imet-2019-train"
    )
    res = _run(command, root, env)
    assert res.returncode != 0
    assert "was trained with other ['image_size'] than this config" in res.stderr
    assert "stage folds" not in res.stdout and "epoch" not in res.stdout
    assert not (root / "working" / "fold0").exists()  # nothing copied, nothing trained


@pytest.mark.slow
def test_weights_that_cannot_be_loaded_stop_the_kernel_before_the_csv_checks_and_the_cache(tmp_path, tiny_competition):
    command, root, env = _train_kernel(tmp_path, tiny_competition, weights="imagenet")  # tiny-cnn has none
    res = _run(command, root, env)
    assert res.returncode != 0
    assert "rehearsal: model 'tiny-cnn' (weights='imagenet', 64px, policy float32) could not be built" in res.stderr
    assert "pretrained weights need the kernel's internet on, or set weights=None" in res.stderr
    assert _stage_names(res.stdout) == ["setup"]  # the rehearsal stopped it: no CSV check, no fold, no cache
    assert not list((root / "tmp").glob("**/*.jpg"))  # no image was cached


def test_jit_compile_is_turned_off_with_more_than_one_replica(capsys):
    from imet_utils.devices import without_multi_replica_jit

    config = TrainConfig(jit_compile=True)
    assert without_multi_replica_jit(config, 1).jit_compile
    assert capsys.readouterr().err == ""
    assert not without_multi_replica_jit(config, 2).jit_compile
    assert "jit_compile=True crashes with 2 replicas (keras-team/keras#21366)" in capsys.readouterr().err
    assert not without_multi_replica_jit(TrainConfig(jit_compile=False), 2).jit_compile


def _stage_names(log: str):
    return re.findall(r"stage (\S+): [0-9.]+ s", log)


@pytest.mark.slow
def test_submit_saves_test_probabilities_before_deciding_and_a_rerun_reuses_them(tmp_path):
    data = generate_competition(tmp_path / "data", n_train=240, n_test=40, seed=11)
    work = tmp_path / "work"
    args = [sys.executable, "build_kernel.py", "--run-local", "--data-dir", str(data), "--work-dir", str(work)]
    for k, v in SMALL.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    first = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _stage_names(first.stdout) == list(TRAIN_STAGES + SUBMIT_STAGES)
    sub_root = work / "submit" / "kaggle"
    out = sub_root / "working"
    expected = pd.read_csv(out / "submission.csv", dtype=str, keep_default_na=False)
    saved = np.load(out / "test_probs.npz")
    assert saved["ids"].tolist() == expected["id"].tolist() and saved["probs"].shape == (40, 20)
    assert saved["classes"].tolist() == list(range(20))

    # Break the step after inference in the built submit kernel: it dies, the probabilities stay.
    built = next((work / "build").glob("*-submit/*-submit.py")).read_text()
    head = re.search(r"def make_submission\(.*?\) -> Path:\n", built, re.S).group(0)  # however it is laid out
    broken = head + "    raise RuntimeError('decision step broken on purpose')\n"
    res = run_patched_submit(work, tmp_path, (head, broken))
    assert res.returncode != 0 and "decision step broken on purpose" in res.stderr
    assert not (out / "submission.csv").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (out / "test_probs.npz").rename(kept / "test_probs.npz")

    # The rerun re-decides from the saved probabilities: no image is cached or predicted again.
    res = run_patched_submit(work, tmp_path, reuse_predictions=str(kept))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"reusing test predictions from {kept}" in res.stdout
    assert not re.search(r"predicted \d+ images", res.stdout) and "test_cache" not in _stage_names(res.stdout)
    again = pd.read_csv(out / "submission.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(again, expected)


def test_reused_predictions_must_match_the_competition(tmp_path):
    from imet_utils.ensemble import TestPredictions, load_test_predictions

    probs = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    saved = TestPredictions(
        ids=np.array(["a", "b", "c", "d"]),
        probs=probs,
        good=np.array([1, 1, 0, 1], bool),
        weights=np.ones(1),
        models=["tiny-cnn"],
    )
    path = saved.save(tmp_path / "test_probs.npz")
    again = load_test_predictions(tmp_path, ["d", "c", "b", "a"], 5)  # another order: rows follow the ids
    assert again.good.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(again.probs, probs[[2, 1, 0]])
    with pytest.raises(ValueError, match=r"test_probs.npz: 1 test id\(s\) missing, e.g. \['e'\]"):
        load_test_predictions(path, ["a", "b", "e"], 5)
    with pytest.raises(ValueError, match="5 classes, the competition has 6"):
        load_test_predictions(path, ["a"], 6)
