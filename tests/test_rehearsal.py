"""The train kernel's first minute: the exact model, a training and a prediction step, the packages, the batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

import kernel_build
from imet_utils import rehearsal
from imet_utils.config import TrainConfig
from imet_utils.rehearsal import (
    install_packages,
    is_out_of_memory,
    largest_batch,
    measured_throughput,
    rehearse,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_folds": 2, "folds": [0, 1], "epochs": 1}
STAGES_AFTER = ("stage csv", "stage folds", "stage cache", "stage training")


def _run_built_train(tmp_path, data, **overrides) -> subprocess.CompletedProcess:
    """Builds the train kernel with the local profile and ``overrides`` and runs it in a simulated /kaggle."""
    built = kernel_build.build(tmp_path / "build", train_overrides={**kernel_build.SCRATCH_TRAIN, **SMALL, **overrides})
    root = kernel_build.kaggle_dir(tmp_path, "train", {"imet-2019-fgvc6": data}, fresh=True)
    env = dict(os.environ, IMET_KAGGLE_ROOT=str(root), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(built.train[0].code_path())],
        cwd=root / "working",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_the_log_shows_the_rehearsal_before_the_csv_stage_and_run_status_records_it(tmp_path, tiny_competition):
    res = _run_built_train(tmp_path, tiny_competition)
    log = res.stdout
    assert res.returncode == 0, log[-3000:] + res.stderr[-3000:]
    order = [
        "stage setup",
        f"running on CPU x1 (1 replica(s), policy float32); tensorflow {tf.__version__}, keras ",
        "rehearsal: tiny-cnn at 64px built",
        "rehearsal: one training and one prediction step fit, per-replica batch 32",
        "stage rehearsal",
        "stage csv",
        "stage folds",
    ]
    where = [log.find(text) for text in order]
    assert -1 not in where and where == sorted(where), dict(zip(order, where))
    status = json.loads((tmp_path / "train/kaggle/working/run_status.json").read_text())
    assert status["ok"] and status["stages"]["rehearsal"] > 0
    assert {k: status[k] for k in ("card", "replicas", "model", "image_size", "batch_size")} == {
        "card": "CPU x1",
        "replicas": 1,
        "model": "tiny-cnn",
        "image_size": 64,
        "batch_size": 32,
    }
    for field in ("train_ips", "infer_ips", "cache_ips", "rehearsal_seconds", "rehearsal_train_ips"):
        assert status[field] > 0, field
    # what ran (issue 23): the versions and the policy; the learning rate for the global batch, in config.json too
    import keras

    assert status["policy"] == "float32" and status["versions"]["tensorflow"] == tf.__version__
    assert status["versions"]["keras"] == keras.__version__ and set(status["versions"]) >= {"cuda", "cudnn"}
    config = json.loads((tmp_path / "train/kaggle/working/config.json").read_text())
    assert config["lr_reference_batch"] == 32 and config["effective_lr"] == status["lr"]
    assert config["effective_lr"] == pytest.approx(config["lr"] * config["batch_size"] / 32)


@pytest.mark.slow
def test_a_model_that_cannot_be_built_stops_the_built_kernel_before_the_csv_stage(tmp_path, tiny_competition):
    # The backbone builds (the old first-minute check passed); the head's Dense(0) does not.
    res = _run_built_train(tmp_path, tiny_competition, dense_units=0)
    assert res.returncode != 0
    assert "stage setup" in res.stdout
    assert not [stage for stage in (*STAGES_AFTER, "stage rehearsal") if stage in res.stdout], res.stdout
    assert "rehearsal: model 'tiny-cnn' (weights=None, 64px, policy float32) could not be built" in res.stderr
    assert "units" in res.stderr
    assert not (tmp_path / "train/kaggle/working/run_status.json").exists()


def _oom(above: int, calls: list):
    def attempt(batch):
        calls.append(batch)
        if batch > above:
            raise tf.errors.ResourceExhaustedError(None, None, f"OOM when allocating a batch of {batch}")
        return (100.0 * batch, 300.0 * batch)

    return attempt


@pytest.mark.parametrize("start,above,expected", [(32, 32, [32]), (32, 10, [32, 16, 8]), (6, 1, [6, 3, 1])])
def test_out_of_memory_halves_the_batch_until_it_fits(start, above, expected):
    calls = []
    fits, result = largest_batch(_oom(above, calls), start)
    assert calls == expected and fits == expected[-1] and result == (100.0 * fits, 300.0 * fits)


def test_not_even_a_batch_of_one_fits():
    with pytest.raises(RuntimeError, match="not even a per-replica batch of 1 fits"):
        largest_batch(_oom(0, []), 4)


@pytest.mark.parametrize(
    "error",
    [
        tf.errors.InternalError(None, None, "Failed to allocate memory for the batch: 3.2GiB"),
        tf.errors.UnknownError(
            None, None, "Failed to get convolution algorithm. This is probably because cuDNN failed"
        ),
        tf.errors.NotFoundError(None, None, "No algorithm worked!  Error messages: ..."),
        tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[64,288,288,32]"),
    ],
)
def test_the_messages_of_an_exhausted_gpu_halve_the_batch(error):  # issue 23, finding 7
    calls = []

    def attempt(batch):
        calls.append(batch)
        if batch > 8:
            raise error
        return (1.0, 1.0)

    assert is_out_of_memory(error)
    assert largest_batch(attempt, 32)[0] == 8 and calls == [32, 16, 8]


def test_other_errors_are_not_taken_for_out_of_memory():
    def attempt(batch):
        raise tf.errors.InternalError(None, None, "cuDNN failed to initialize")

    with pytest.raises(tf.errors.InternalError, match="cuDNN"):
        largest_batch(attempt, 8)


TINY = TrainConfig(model="tiny-cnn", weights=None, image_size=32, batch_size=32, lr=1e-3, augment="none")


def test_an_oom_names_the_largest_batch_that_fits_and_stops(monkeypatch):
    monkeypatch.setattr(rehearsal, "_steps", lambda model, config, n, strategy, b: _oom(8, [])(b))
    with pytest.raises(RuntimeError, match="batch_size=32 per replica runs out of memory.*largest that fits is 8"):
        rehearse(TINY, strategy=tf.distribute.get_strategy(), n_classes=5)


def test_auto_batch_adapts_the_batch_and_scales_the_learning_rate(monkeypatch):
    monkeypatch.setattr(rehearsal, "_steps", lambda model, config, n, strategy, b: _oom(8, [])(b))
    import dataclasses

    result = rehearse(dataclasses.replace(TINY, auto_batch=True), strategy=tf.distribute.get_strategy(), n_classes=5)
    # lr is the rate at a global batch of 32: 8 on one replica trains at a quarter of it (issue 23, finding 8)
    assert result.config.batch_size == 8 and result.config.lr == 1e-3
    assert result.config.effective_lr == pytest.approx(1e-3 / 4) and result.measured()["lr"] == pytest.approx(1e-3 / 4)
    assert result.measured()["batch_size"] == 8 and result.train_ips == 800.0


def test_the_rehearsal_predicts_the_oof_tta_batch_and_saves_reloads_and_exports(monkeypatch):  # finding 6
    import dataclasses

    shapes, saved = [], []
    predict = rehearsal.predict_batches

    def spy(model, batches, **kwargs):
        for batch in batches:
            shapes.append(tuple(batch.shape[:2]))
        return predict(model, batches, **kwargs)

    monkeypatch.setattr(rehearsal, "predict_batches", spy)
    export = rehearsal.export_for_inference
    monkeypatch.setattr(
        rehearsal, "export_for_inference", lambda model, path: saved.append(path) or export(model, path)
    )
    config = dataclasses.replace(TINY, batch_size=2, oof_tta=3)
    result = rehearse(config, strategy=tf.distribute.get_strategy(), n_classes=5)
    assert (4, 1) in shapes and (4, 3) in shapes  # validation: twice the batch, one view; the OOF: three views
    assert result.rehearsed == ("train", "validation", "oof_tta", "checkpoint", "reload", "export") and saved


def test_a_model_that_cannot_be_exported_stops_the_rehearsal(monkeypatch):  # finding 6
    def broken(model, path):
        raise ValueError("Unable to serialize the layer 'augment'")

    monkeypatch.setattr(rehearsal, "_steps", lambda model, config, n, strategy, b: (1.0, 1.0))
    monkeypatch.setattr(rehearsal, "export_for_inference", broken)
    with pytest.raises(
        RuntimeError, match="saving its checkpoint, reloading it or exporting it .* Unable to serialize"
    ):
        rehearse(TINY, strategy=tf.distribute.get_strategy(), n_classes=5)


class _FakePip:
    def __init__(self, returncode=0, stderr=""):
        self.calls, self.returncode, self.stderr = [], returncode, stderr

    def __call__(self, pins):
        self.calls.append(pins)
        return subprocess.CompletedProcess(pins, self.returncode, "", self.stderr)


@pytest.fixture
def nothing_installed(monkeypatch):
    monkeypatch.setattr(rehearsal.importlib.util, "find_spec", lambda name: None)


def test_every_missing_package_is_installed_in_one_call(nothing_installed):
    pip = _FakePip()
    config = TrainConfig(model="efficientnet-b3", fold_method="iterstrat")
    assert install_packages(config, pip=pip) == pip.calls[0]
    assert pip.calls == [["efficientnet==1.1.1", "iterative-stratification==0.1.9"]]
    assert install_packages(TrainConfig(model="tiny-cnn", weights=None), pip=pip) == [] and len(pip.calls) == 1


def test_internet_off_says_so(nothing_installed):
    pip = _FakePip(1, "ERROR: Could not find a version that satisfies the requirement iterative-stratification")
    with pytest.raises(RuntimeError, match="fold_method='iterstrat' need: is the kernel's internet off") as e:
        install_packages(TrainConfig(model="tiny-cnn", weights=None, fold_method="iterstrat"), pip=pip)
    assert "Could not find a version" in str(e.value)


def test_measured_throughput_takes_validation_out_of_the_epoch():
    # 1,000 images, 5 folds: 800 train + 200 valid per epoch; validation at 400 img/s takes 0.5 s of a 4.5 s epoch
    got = measured_throughput(
        epoch_seconds=[9.0, 4.5, 4.5], n_images=1000, n_folds=5, infer_ips=400.0, cache_images=500, cache_seconds=2.0
    )
    assert got == {"cache_ips": 250.0, "train_ips": 200.0, "infer_ips": 400.0, "epoch_seconds": 4.5}
    assert (
        measured_throughput(epoch_seconds=[], n_images=0, n_folds=5, infer_ips=1.0, cache_images=0, cache_seconds=0.0)
        == {}
    )


def test_a_step_that_fails_after_the_build_is_named(monkeypatch):
    def broken(model, config, n, strategy, b):
        raise ValueError("Input 0 of layer 'gap' is incompatible with the layer")

    monkeypatch.setattr(rehearsal, "_steps", broken)
    with pytest.raises(RuntimeError, match="'tiny-cnn' was built, but its training or prediction step .* failed"):
        rehearse(TINY, strategy=tf.distribute.get_strategy(), n_classes=5)
