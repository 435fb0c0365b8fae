"""Mixed precision and the multi-device path, exercised on CPU."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_the_output_float32(policy, tmp_path):
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
import keras, numpy as np
keras.mixed_precision.set_global_policy({policy!r})
from imet_utils.models import create_model, export_for_inference
from imet_utils.prediction import load_for_inference
m = create_model("tiny-cnn", 6, image_size=32, device_augment=True)
assert m.get_layer("head_dense").compute_dtype != "float32"
assert m.output.dtype == "float32"
m.compile("adam", "binary_crossentropy")
x = np.random.randint(0, 255, (8, 32, 32, 3), np.uint8); y = (np.random.rand(8, 6) > .5).astype("uint8")
h = m.fit(x, y, epochs=2, verbose=0)
assert all(np.isfinite(h.history["loss"]))
export_for_inference(m, {str(tmp_path / "m")!r})
p = load_for_inference({str(tmp_path / "m")!r})(x).numpy()
assert p.dtype == np.float32 and p.shape == (8, 6)
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_scales_the_batch(tmp_path, tiny_competition):
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from pathlib import Path
from imet_utils.config import TrainConfig
from imet_utils.data import read_competition
from imet_utils.images import build_cache
from imet_utils.budget import Budget
from imet_utils.devices import setup_strategy
from imet_utils.training import train_fold
comp = read_competition(Path({str(tiny_competition)!r}))
cached = build_cache(comp.train["id"], comp.train_dir, Path({str(tmp_path)!r}) / "cache", split="train",
                     short_side=40, max_aspect=4.0)
config = TrainConfig(model="tiny-cnn", weights=None, image_size=32, batch_size=8, epochs=1, n_folds=2, folds=(0,),
                     bn_momentum=0.9, mixed_precision=False)
strategy = setup_strategy(config, devices=["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
folds = np.arange(len(comp.train)) % 2
state = train_fold(config, 0, ids=comp.train["id"].to_numpy(), paths=np.asarray(cached.paths), targets=comp.targets(),
                   folds=folds, out=Path({str(tmp_path)!r}) / "out", strategy=strategy, budget=Budget(1))
assert state.finished and state.epochs_done == 1
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]
    assert "batch 16 on 2 replica(s)" in res.stdout


TWO_DEVICE_PREDICTION = """
import sys; sys.path.insert(0, {root!r})
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from pathlib import Path
from imet_utils.budget import Budget
from imet_utils.config import TTA_VIEWS, TrainConfig
from imet_utils.data import read_competition
from imet_utils.devices import setup_strategy
from imet_utils.images import build_cache
from imet_utils.outputs import MODEL_DIR, fold_dir
from imet_utils.prediction import load_for_inference, predict_views
from imet_utils.training import train_fold
tmp = Path({tmp!r})
comp = read_competition(Path({comp!r}))
cached = build_cache(comp.train["id"], comp.train_dir, tmp / "cache", split="train", short_side=40, max_aspect=4.0)
ids, paths = comp.train["id"].to_numpy(), np.asarray(cached.paths)
folds = np.arange(len(ids)) % 2
strategy = setup_strategy(TrainConfig(), devices=["/cpu:0", "/cpu:1"])
rows_per_replica = []  # each batch's rows on each replica: every replica must predict
results = strategy.experimental_local_results
def spy(value):
    parts = results(value)
    if all(isinstance(p, tf.Tensor) and len(p.shape) == 2 for p in parts):  # probabilities, not weights or losses
        rows_per_replica.append([int(p.shape[0]) for p in parts])
    return parts
strategy.experimental_local_results = spy
out = tmp / "out"
for fold, oof_tta in ((0, 1), (1, 3)):  # fold 0's OOF is its validation pass; fold 1's the fold-end TTA pass
    config = TrainConfig(model="tiny-cnn", weights=None, image_size=32, batch_size=5, epochs=1, n_folds=2,
                         folds=(fold,), bn_momentum=0.9, mixed_precision=False, oof_tta=oof_tta, augment="none")
    state = train_fold(config, fold, ids=ids, paths=paths, targets=comp.targets(), folds=folds, out=out,
                       strategy=strategy, budget=Budget(1))
    assert state.finished
    saved = np.load(fold_dir(out, fold) / "oof.npz")
    valid = folds == fold
    assert list(saved["ids"]) == list(ids[valid])  # the same order of rows
    single = load_for_inference(fold_dir(out, fold) / MODEL_DIR)  # outside the scope: one device
    assert single.distribute_strategy.num_replicas_in_sync == 1
    alone = predict_views(single, paths[valid], size=32, batch_size=7, views=TTA_VIEWS[:oof_tta])
    assert np.allclose(saved["probs"], alone, atol=1e-5), np.abs(saved["probs"] - alone).max()
validation_and_oof = len(rows_per_replica)
# the submit kernel's test prediction: the exported model loaded under the strategy
mirrored = load_for_inference(fold_dir(out, 1) / MODEL_DIR, strategy)
test = predict_views(mirrored, paths[:37], size=32, batch_size=10, views=TTA_VIEWS[:2])
alone = predict_views(single, paths[:37], size=32, batch_size=10, views=TTA_VIEWS[:2])
assert test.shape == alone.shape == (37, comp.labels.n_classes)
assert np.allclose(test, alone, atol=1e-5), np.abs(test - alone).max()
assert len(rows_per_replica) > validation_and_oof
assert all(len(r) == 2 for r in rows_per_replica), rows_per_replica
assert all(r[1] > 0 for r in rows_per_replica[:-1]), rows_per_replica  # both replicas busy on every full batch
print("ok", rows_per_replica[-1])
"""


@pytest.mark.slow
def test_validation_oof_and_test_predictions_use_both_replicas_and_equal_one_device(tmp_path, tiny_competition):
    code = TWO_DEVICE_PREDICTION.format(root=str(ROOT), tmp=str(tmp_path), comp=str(tiny_competition))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
