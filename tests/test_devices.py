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
strategy = setup_strategy(TrainConfig(mixed_precision={mixed}), devices=["/cpu:0", "/cpu:1"])
atol = 2e-3 if {mixed} else 1e-5  # float16 on one device and on two: the same ops, rounded alike to about 1e-3
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
                         folds=(fold,), bn_momentum=0.9, mixed_precision={mixed}, oof_tta=oof_tta, augment="none")
    state = train_fold(config, fold, ids=ids, paths=paths, targets=comp.targets(), folds=folds, out=out,
                       strategy=strategy, budget=Budget(1))
    assert state.finished
    saved = np.load(fold_dir(out, fold) / "oof.npz")
    valid = folds == fold
    assert list(saved["ids"]) == list(ids[valid])  # the same order of rows
    single = load_for_inference(fold_dir(out, fold) / MODEL_DIR)  # outside the scope: one device
    assert single.distribute_strategy.num_replicas_in_sync == 1
    alone = predict_views(single, paths[valid], size=32, batch_size=7, views=TTA_VIEWS[:oof_tta])
    assert np.allclose(saved["probs"], alone, atol=atol), np.abs(saved["probs"] - alone).max()
validation_and_oof = len(rows_per_replica)
# the submit kernel's test prediction: the exported model loaded under the strategy
mirrored = load_for_inference(fold_dir(out, 1) / MODEL_DIR, strategy)
test = predict_views(mirrored, paths[:37], size=32, batch_size=10, views=TTA_VIEWS[:2])
alone = predict_views(single, paths[:37], size=32, batch_size=10, views=TTA_VIEWS[:2])
assert test.shape == alone.shape == (37, comp.labels.n_classes)
assert np.allclose(test, alone, atol=atol), np.abs(test - alone).max()
assert len(rows_per_replica) > validation_and_oof
assert all(len(r) == 2 for r in rows_per_replica), rows_per_replica
assert all(r[0] == r[1] > 0 for r in rows_per_replica), rows_per_replica  # equal, non-empty shares, the last too
print("ok", rows_per_replica[-1])
"""


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_validation_oof_and_test_predictions_use_both_replicas_and_equal_one_device(policy, tmp_path, tiny_competition):
    """Through ``setup_strategy``'s devices path, in both policies (issue 23): T4 x2 runs mixed_float16."""
    mixed = policy == "mixed_float16"
    code = TWO_DEVICE_PREDICTION.format(root=str(ROOT), tmp=str(tmp_path), comp=str(tiny_competition), mixed=mixed)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]


def test_the_learning_rate_scales_with_the_global_batch():  # issue 23, finding 8
    from imet_utils.config import TrainConfig
    from imet_utils.devices import scaled_lr, training_lr, with_scaled_lr

    config = TrainConfig(lr=3e-4, batch_size=32)
    assert scaled_lr(config, 1) == pytest.approx(3e-4)  # a P100: the baseline notebook's batch of 32
    assert scaled_lr(config, 2) == pytest.approx(6e-4)  # T4 x2: a global batch of 64
    assert scaled_lr(TrainConfig(lr=3e-4, batch_size=8), 2) == pytest.approx(1.5e-4)
    assert scaled_lr(TrainConfig(lr=3e-4, batch_size=8, lr_reference_batch=0), 2) == 3e-4
    assert training_lr(config) == 3e-4 and training_lr(with_scaled_lr(config, 2)) == pytest.approx(6e-4)


def test_mixed_float16_compiles_with_the_all_replica_loss_scale_optimizer():  # issue 23, finding 1
    import keras

    from imet_utils.config import TrainConfig
    from imet_utils.devices import AllReplicaLossScaleOptimizer
    from imet_utils.training import compiled_model

    config = TrainConfig(model="tiny-cnn", weights=None, image_size=32, augment="none", lr=1e-3, batch_size=16)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = compiled_model(config, 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, AllReplicaLossScaleOptimizer)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    assert type(compiled_model(config, 3).optimizer) is keras.optimizers.Adam  # float32: no loss scaling
