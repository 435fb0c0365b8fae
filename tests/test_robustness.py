"""Bad images, a killed process, a NaN loss, the time budget and leaked secrets."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import kernel_build
from imet_utils.budget import Budget
from imet_utils.config import TrainConfig
from imet_utils.data import CsvError, read_competition
from imet_utils.devices import setup_strategy
from imet_utils.images import build_cache
from synth import generate_competition

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_folds": 2, "folds": [0, 1], "epochs": 2}


def _break_images(folder: Path, ids):
    """Every odd case of the issue, one id each; returns the ids that can't be read."""
    rng = np.random.default_rng(0)
    a, b, c, d, e, f, g, h, i, j, k = ids[:11]
    (folder / f"{a}.png").unlink()  # missing
    (folder / f"{b}.png").write_bytes(b"")  # zero bytes
    data = (folder / f"{c}.png").read_bytes()
    (folder / f"{c}.png").write_bytes(data[: len(data) // 3])  # truncated
    (folder / f"{d}.png").write_text("<html>not an image</html>")  # not an image
    Image.fromarray(rng.integers(0, 255, (90, 120), dtype=np.uint8), "L").save(folder / f"{e}.png")
    Image.fromarray(rng.integers(0, 255, (90, 120, 2), dtype=np.uint8), "LA").save(folder / f"{f}.png")
    Image.fromarray(rng.integers(0, 255, (90, 120, 4), dtype=np.uint8), "RGBA").save(folder / f"{g}.png")
    cv2.imwrite(str(folder / f"{h}.png"), rng.integers(0, 65535, (90, 120, 3), dtype=np.uint16))
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).convert("P").save(folder / f"{i}.png")
    cv2.imwrite(str(folder / f"{j}.png"), rng.integers(0, 255, (1, 300, 3), dtype=np.uint8))  # 1 x N sliver
    cv2.imwrite(str(folder / f"{k}.png"), rng.integers(0, 255, (10000, 90, 3), dtype=np.uint8))  # 10,000 px
    return [a, b, c, d]


def _run_local(data, work, *sets, check=True):
    args = [sys.executable, "build_kernel.py", "--run-local", "--data-dir", str(data), "--work-dir", str(work)]
    for k, v in {**SMALL, **dict(s.split("=", 1) for s in sets)}.items():
        args += ["--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_broken_images_in_train_and_test_still_give_every_test_id(tmp_path):
    data = generate_competition(tmp_path / "data", n_train=400, n_test=40, seed=4)
    comp = read_competition(data)
    bad_train = _break_images(data / "train", list(comp.train["id"]))
    bad_test = _break_images(data / "test", list(comp.test_ids["id"]))
    res = _run_local(data, tmp_path / "work")
    log = res.stdout + res.stderr
    for img_id in bad_train:
        assert f"train image {img_id} skipped" in log
    for img_id in bad_test:
        assert f"test image {img_id} unreadable, it gets the fallback labels" in log
    sub = pd.read_csv(tmp_path / "work/submit/kaggle/working/submission.csv", dtype=str, keep_default_na=False)
    assert sub["id"].tolist() == comp.test_ids["id"].tolist()
    assert (sub["attribute_ids"].str.split().str.len() >= 1).all()
    oof_ids = set()
    for k in (0, 1):
        oof_ids |= set(np.load(tmp_path / f"work/imet-2019-train/kaggle/working/fold{k}/oof.npz")["ids"])
    assert oof_ids == set(comp.train["id"]) - set(bad_train)


@pytest.mark.slow
def test_too_many_bad_train_images_stop_the_run_with_a_clear_message(tmp_path):
    data = generate_competition(tmp_path / "data", n_train=60, n_test=5, seed=5)
    ids = list(read_competition(data).train["id"])
    for img_id in ids[:3]:
        (data / "train" / f"{img_id}.png").write_bytes(b"")
    res = _run_local(data, tmp_path / "work", check=False)
    assert res.returncode != 0
    assert "3 of 60 train images are unreadable (5.0%), more than bad_image_share=1.0%" in res.stderr


@pytest.mark.parametrize(
    "csv,text,message",
    [
        ("train.csv", "id,attribute_ids\na,0\na,1\n", "train.csv:3: duplicate id 'a'"),
        ("train.csv", "id,attribute_ids\na,0\nb,999\n", "train.csv:3: id 'b' has attribute id 999, not in labels.csv"),
        ("train.csv", "id,attribute_ids\na,\n", "train.csv:2: id 'a' has an empty attribute_ids list"),
        ("train.csv", "id,attribute_ids\na,1 one\n", "train.csv:2: id 'a' has non-integer attribute id 'one'"),
        ("labels.csv", "attribute_id,attribute_name\n0,tag::a\n2,tag::b\n", "labels.csv:3: attribute_id '2'"),
    ],
)
def test_bad_csvs_are_refused_when_the_competition_is_read(tmp_path, tiny_competition, csv, text, message):
    data = tmp_path / "data"
    shutil.copytree(tiny_competition, data)
    (data / csv).write_text(text)
    with pytest.raises(CsvError) as e:
        read_competition(data)
    assert message in str(e.value)


@pytest.mark.slow
def test_a_bad_csv_stops_the_built_kernel_before_training(tmp_path, tiny_competition):
    """One case end to end (the others: in-process above): the run stops with the reader's message, untrained."""
    data = tmp_path / "data"
    shutil.copytree(tiny_competition, data)
    (data / "train.csv").write_text("id,attribute_ids\na,0\na,1\n")
    res = _run_local(data, tmp_path / "work", check=False)
    assert res.returncode != 0
    assert "train.csv:3: duplicate id 'a'" in res.stderr
    assert "epoch" not in res.stdout  # nothing trained


def _layout(tmp_path, data, **overrides):
    built = kernel_build.build(tmp_path / "build", train_overrides={**kernel_build.SCRATCH_TRAIN, **SMALL, **overrides})
    train = built.train[0]
    root = kernel_build.kaggle_dir(tmp_path, "train", {"imet-2019-fgvc6": data}, fresh=True)
    script = train.code_path()
    env = dict(os.environ, IMET_KAGGLE_ROOT=str(root), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return script, root, env


@pytest.mark.slow
def test_killed_train_kernel_resumes_and_ends_with_every_fold(tmp_path):
    data = generate_competition(tmp_path / "data", n_train=600, n_test=5, seed=6)
    script, root, env = _layout(tmp_path, data, epochs=4)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=root / "working",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "fold 1 epoch 1/4" in line:
            time.sleep(0.3)  # inside epoch 2 of fold 1
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-2000:]
    out = root / "working"
    assert json.loads((out / "fold0/state.json").read_text())["finished"]
    killed = json.loads((out / "fold1/state.json").read_text())
    assert not killed["finished"] and 1 <= killed["epochs_done"] < 4
    assert (out / "fold1/last.keras").is_file()

    rerun = subprocess.run([sys.executable, str(script)], cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "fold 0: already finished" in rerun.stdout
    assert f"fold 1: resuming after epoch {killed['epochs_done']}" in rerun.stdout
    for k in (0, 1):
        state = json.loads((out / f"fold{k}/state.json").read_text())
        assert state["finished"] and [r["epoch"] for r in state["history"]] == [1, 2, 3, 4]
        assert (out / f"fold{k}/model/saved_model.pb").is_file() and (out / f"fold{k}/oof.npz").is_file()
    assert sorted(p.name for p in out.glob("fold*") if p.is_dir()) == ["fold0", "fold1"]


def _fold_inputs(tmp_path, tiny_competition):
    comp = read_competition(tiny_competition)
    cached = build_cache(
        comp.train["id"], comp.train_dir, tmp_path / "cache", split="train", short_side=40, max_aspect=4.0
    )
    return dict(
        ids=comp.train["id"].to_numpy(),
        paths=np.asarray(cached.paths, dtype=str),
        targets=comp.targets(),
        folds=np.arange(len(comp.train)) % 2,
    )


@pytest.mark.slow
def test_nan_loss_stops_the_fold_keeps_its_last_good_state_and_goes_on(tmp_path, tiny_competition, monkeypatch):
    import keras

    from imet_utils import training

    calls = {"n": 0}
    real = training.make_loss

    def poisoned(config):
        calls["n"] += 1
        if calls["n"] > 1:
            return real(config)
        return lambda y, p: keras.ops.mean(p) * float("nan")  # fold 0 only

    monkeypatch.setattr(training, "make_loss", poisoned)
    config = TrainConfig(
        model="tiny-cnn",
        weights=None,
        image_size=32,
        batch_size=16,
        epochs=2,
        n_folds=2,
        bn_momentum=0.9,
        mixed_precision=False,
    )
    inputs = _fold_inputs(tmp_path, tiny_competition)
    strategy = setup_strategy(config)
    s0 = training.train_fold(config, 0, **inputs, out=tmp_path / "out", strategy=strategy, budget=Budget(1))
    assert s0.failed and not s0.finished and "loss became nan in epoch 1" in s0.stopped_reason
    assert not (tmp_path / "out/fold0/last.keras").exists()  # no NaN weights saved as a checkpoint
    s1 = training.train_fold(config, 1, **inputs, out=tmp_path / "out", strategy=strategy, budget=Budget(1))
    assert s1.finished and s1.epochs_done == 2


@pytest.mark.slow
def test_time_budget_pauses_after_an_epoch_and_a_rerun_finishes(tmp_path, tiny_competition):
    from imet_utils import training

    config = TrainConfig(
        model="tiny-cnn",
        weights=None,
        image_size=32,
        batch_size=16,
        epochs=3,
        n_folds=2,
        bn_momentum=0.9,
        mixed_precision=False,
    )
    inputs = _fold_inputs(tmp_path, tiny_competition)
    strategy = setup_strategy(config)
    short = Budget(60 / 3600)  # a minute: less than an epoch plus the export margin
    state = training.train_fold(config, 0, **inputs, out=tmp_path / "out", strategy=strategy, budget=short)
    assert state.paused and state.epochs_done == 1 and not state.finished
    assert not (tmp_path / "out/fold0/model").exists()
    state = training.train_fold(config, 0, **inputs, out=tmp_path / "out", strategy=strategy, budget=Budget(1))
    assert state.finished and [r["epoch"] for r in state.history] == [1, 2, 3]


def test_build_refuses_to_inline_a_kaggle_key(tmp_path, monkeypatch):
    key = "0123456789abcdef0123456789abcdef"
    config_dir = tmp_path / "kaggle"
    config_dir.mkdir()
    (config_dir / "kaggle.json").write_text(json.dumps({"username": "me", "key": key}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    # A careless user pastes the key into the kernel's config block.
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", ".git", "build", "local_run", "__pycache__"))
    src = repo / "kernels" / "train.py"
    src.write_text(src.read_text().replace("CONFIG = dict(", f"CONFIG = dict(  # KAGGLE_KEY {key}\n", 1))
    res = subprocess.run(
        [sys.executable, "build_kernel.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=dict(os.environ, KAGGLE_CONFIG_DIR=str(config_dir)),
    )
    assert res.returncode == 2
    assert "would carry your Kaggle API key" in res.stderr
    assert not (repo / "build" / "imet-2019-train" / "imet-2019-train.py").exists()
    # kaggle.json content pasted anywhere is refused even when no key is configured here
    with pytest.raises(kernel_build.BuildError, match="looks like kaggle.json content"):
        kernel_build.check_no_secrets(f'x = {{"username": "me", "key": "{key[::-1]}"}}', "kernel x")


def test_resume_refuses_an_output_trained_with_other_settings(tmp_path):
    from imet_utils.outputs import check_resumable
    from imet_utils.training import FoldState

    out = tmp_path / "out"
    (out / "fold0").mkdir(parents=True)
    FoldState(epochs_done=2).save(out / "fold0")
    from imet_utils.config import save_config

    save_config(TrainConfig(model="tiny-cnn", image_size=64), out / "config.json")
    check_resumable(out, TrainConfig(model="tiny-cnn", image_size=64, epochs=12))  # more epochs: fine
    with pytest.raises(RuntimeError, match=r"holds folds trained with other \['model', 'image_size'\]"):
        check_resumable(out, TrainConfig(model="efficientnet-b0", image_size=96))
    assert (out / "fold0" / "state.json").is_file()  # nothing deleted
