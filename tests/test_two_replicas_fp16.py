"""Two replicas and float16 together, as on Kaggle's T4 x2, on two logical CPU devices (issue 23).

One subprocess per policy (logical devices must be set before TensorFlow starts) runs every two-replica check
through ``setup_strategy(config, devices=[...])``, the path a T4 x2 run takes, and prints each check's outcome;
the tests read them. Which finding of issue 23 each test covers is in its name's comment.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# each policy's tests on one xdist worker, so that its subprocess runs once
POLICIES = [
    pytest.param(policy, marks=pytest.mark.xdist_group(f"two_replicas_{policy}"))
    for policy in ("float32", "mixed_float16")
]

TWO_REPLICAS = """
import sys; sys.path.insert(0, {root!r})
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import dataclasses, gc, json, traceback, weakref
from pathlib import Path
import keras, numpy as np
from imet_utils import training
from imet_utils.augment import DeviceAugment
from imet_utils.budget import Budget
from imet_utils.config import TTA_VIEWS, TrainConfig
from imet_utils.data import read_competition
from imet_utils.devices import setup_strategy
from imet_utils.images import build_cache
from imet_utils.outputs import MODEL_DIR, MODEL_F32_DIR, fold_dir
from imet_utils.prediction import load_for_inference, predict_views
from imet_utils.rehearsal import rehearse

POLICY, tmp = {policy!r}, Path({tmp!r})
MIXED = POLICY == "mixed_float16"
results = {{}}


def check(fn):
    try:
        fn()
        results[fn.__name__] = "ok"
    except Exception:
        results[fn.__name__] = traceback.format_exc()[-3000:]


built = []  # a weak reference to every model training and the rehearsal build
create_model = training.create_model
def recording_create_model(*args, **kwargs):
    model = create_model(*args, **kwargs)
    built.append(weakref.ref(model))
    return model
training.create_model = recording_create_model
lrs = []  # the learning rate of every model training compiles
compile_model = training._compile
def recording_compile(model, config):
    compile_model(model, config)
    lrs.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
training._compile = recording_compile


def no_model_alive(when):
    gc.collect()
    alive = [r() for r in built if r() is not None]
    models = [o for o in gc.get_objects() if isinstance(o, keras.Model)]
    assert not alive and not models, f"{{when}}: {{len(alive)}} model(s) built alive, {{len(models)}} keras.Model(s)"


def half_ops(export):
    loaded = tf.saved_model.load(str(export))
    return "DT_HALF" in str(loaded.serve.concrete_functions[0].graph.as_graph_def())


config = TrainConfig(model="tiny-cnn", weights=None, image_size=32, batch_size=4, epochs=1, n_folds=2, folds=(0, 1),
                     bn_momentum=0.9, mixed_precision=MIXED, oof_tta=2, lr=3e-4)
strategy = setup_strategy(config, devices=["/cpu:0", "/cpu:1"])


def policy_is_set_on_the_devices_path():
    assert strategy.num_replicas_in_sync == 2
    assert keras.mixed_precision.global_policy().name == POLICY


check(policy_is_set_on_the_devices_path)
keras.mixed_precision.set_global_policy(POLICY)  # a no-op unless that failed: the other checks run in POLICY


def one_replica_overflow_skips_the_step():
    # replica 0 (rows 0-1): x = 0, so p = 0.5 = y and its gradients are exactly 0; replica 1 (rows 2-3): all-ones
    # weights give a logit of 3,200, p = 1 against y = 0, and at a scale of 2^20 its float16 gradients overflow
    x = np.zeros((4, 4), np.float32); x[2:] = 100.0
    y = np.full((4, 1), 0.5, np.float32); y[2:] = 0.0
    with strategy.scope():
        inputs = keras.Input((4,))
        h = keras.layers.Dense(8, activation="relu", kernel_initializer="ones", bias_initializer="zeros")(inputs)
        logits = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")(h)
        model = keras.Model(inputs, keras.layers.Activation("sigmoid", dtype="float32")(logits))
        compile_model(model, config)
    model.optimizer.initial_scale = 2.0**20
    before = [w.copy() for w in model.get_weights()]
    model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0)
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after), "weights became non-finite"
    assert all(np.array_equal(a, b) for a, b in zip(after, before)), "the step was applied"
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0**19, float(model.optimizer.dynamic_scale.numpy())


def rehearsal_runs_a_folds_steps_in_the_policy():
    r = rehearse(config, strategy=strategy, n_classes=7)
    assert r.replicas == 2 and r.card == "CPU x2" and r.policy == POLICY and r.train_ips > 0 and r.infer_ips > 0
    expected = ("train", "validation", "oof_tta", "checkpoint", "reload", "export") + (("export_f32",) if MIXED else ())
    assert r.rehearsed == expected, r.rehearsed
    assert np.isclose(r.config.effective_lr, 3e-4 * 8 / 32)
    no_model_alive("after the rehearsal")


def augmentation_differs_between_replicas():
    with strategy.scope():
        layer = DeviceAugment(p_affine=1.0, p_brightness=1.0, p_noise=1.0, seed=3)
        layer.build((None, 32, 32, 3))
    x = tf.constant(np.random.default_rng(0).random((4, 32, 32, 3)), tf.float32)
    step = tf.function(lambda: strategy.run(lambda: layer(x, training=True)))
    first, second = (p.numpy() for p in strategy.experimental_local_results(step()))
    assert not np.allclose(first, second), "both replicas drew the same augmentation"


comp = read_competition(Path({comp!r}))
cached = build_cache(comp.train["id"], comp.train_dir, tmp / "cache", split="train", short_side=40, max_aspect=4.0)
n = 66  # each fold trains on 33 = 4 x 8 + 1 images: a last batch of one image split [1, 0] over the replicas
ids, paths, targets = comp.train["id"].to_numpy()[:n], np.asarray(cached.paths)[:n], comp.targets()[:n]
folds = np.repeat([0, 1], n // 2)
exports = {{}}
ATOL = 2e-3 if MIXED else 1e-5  # float16 on one device and on two: the same ops, rounded alike to about 1e-3
rows_per_replica = []  # each prediction batch's rows on each replica: every replica must predict
local_results = strategy.experimental_local_results
def spy(value):
    parts = local_results(value)
    if all(isinstance(p, tf.Tensor) and len(p.shape) == 2 for p in parts):  # probabilities, not weights or losses
        rows_per_replica.append([int(p.shape[0]) for p in parts])
    return parts
strategy.experimental_local_results = spy


def folds_of_one_more_than_a_batch_train_to_the_end_with_finite_weights():
    lrs.clear()
    for fold, oof_tta in ((0, 1), (1, 3)):  # fold 0's OOF is its validation pass; fold 1's the fold-end TTA pass
        fold_config = dataclasses.replace(config, oof_tta=oof_tta)
        state = training.train_fold(fold_config, fold, ids=ids, paths=paths, targets=targets, folds=folds,
                                    out=tmp / "out", strategy=strategy, budget=Budget(1))
        no_model_alive(f"after fold {{fold}}")
        assert state.finished and not state.failed and state.epochs_done == 1, state
        assert all(np.isfinite(row["loss"]) and np.isfinite(row["val_loss"]) for row in state.history), state.history
        d = exports[fold] = fold_dir(tmp / "out", fold)
        single = load_for_inference(d / MODEL_DIR)  # outside the scope: one device
        assert all(np.isfinite(v.numpy()).all() for v in single._loaded.variables), "non-finite weights exported"
        saved, valid = np.load(d / "oof.npz"), folds == fold
        assert list(saved["ids"]) == list(ids[valid])  # the same order of rows as on one device
        alone = predict_views(single, paths[valid], size=32, batch_size=7, views=TTA_VIEWS[:oof_tta])
        assert np.allclose(saved["probs"], alone, atol=ATOL), np.abs(saved["probs"] - alone).max()
    assert lrs and np.allclose(lrs, 3e-4 * 8 / 32, rtol=1e-6), lrs  # lr x global batch 8 / 32


def predictions_on_both_replicas_equal_one_devices():  # the submit kernel's: the export under the strategy
    mirrored = load_for_inference(exports[1] / MODEL_DIR, strategy)
    single = load_for_inference(exports[1] / MODEL_DIR)
    before = len(rows_per_replica)
    test = predict_views(mirrored, paths[:37], size=32, batch_size=10, views=TTA_VIEWS[:2])
    alone = predict_views(single, paths[:37], size=32, batch_size=10, views=TTA_VIEWS[:2])
    assert test.shape == alone.shape == (37, comp.labels.n_classes)
    assert np.allclose(test, alone, atol=ATOL), np.abs(test - alone).max()
    assert len(rows_per_replica) > before and rows_per_replica[-1] == [4, 4], rows_per_replica[before:]
    # validation, the OOF and the test: both replicas predict equal, non-empty shares of every batch, the last too
    assert rows_per_replica and all(r[0] == r[1] > 0 for r in rows_per_replica), rows_per_replica


def float32_copy_is_exported_in_16_bits_only():
    d = exports[0]
    assert half_ops(d / MODEL_DIR) == MIXED
    assert (d / MODEL_F32_DIR).is_dir() == MIXED
    if MIXED:
        assert not half_ops(d / MODEL_F32_DIR)
        x = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
        f16_model, f32_model = (tf.saved_model.load(str(d / name)) for name in (MODEL_DIR, MODEL_F32_DIR))
        f16, f32 = f16_model.serve(x).numpy(), f32_model.serve(x).numpy()
        assert np.abs(f16 - f32).max() < 1e-2, np.abs(f16 - f32).max()


CHECKS = [rehearsal_runs_a_folds_steps_in_the_policy,
          augmentation_differs_between_replicas, folds_of_one_more_than_a_batch_train_to_the_end_with_finite_weights,
          float32_copy_is_exported_in_16_bits_only, predictions_on_both_replicas_equal_one_devices]
for fn in [one_replica_overflow_skips_the_step] * MIXED + CHECKS:
    check(fn)
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module", params=POLICIES)
def two_replicas(request, tmp_path_factory, tiny_competition):
    """(policy, {check: "ok" or its traceback}) of one subprocess on two logical CPUs."""
    tmp = tmp_path_factory.mktemp(f"two_replicas_{request.param}")
    code = TWO_REPLICAS.format(root=str(ROOT), tmp=str(tmp), comp=str(tiny_competition), policy=request.param)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    lines = [line for line in res.stdout.splitlines() if line.startswith("RESULTS ")]
    assert res.returncode == 0 and lines, res.stdout[-3000:] + res.stderr[-5000:]
    return request.param, json.loads(lines[-1][len("RESULTS ") :]), res.stdout


def _ok(two_replicas, name):
    _, results, _ = two_replicas
    assert results.get(name) == "ok", results.get(name, f"{name} did not run")


@pytest.mark.slow
def test_the_devices_path_sets_the_policy_as_a_t4_x2_run(two_replicas):  # What it must do, 1
    _ok(two_replicas, "policy_is_set_on_the_devices_path")


@pytest.mark.slow
def test_a_float16_overflow_on_one_replica_skips_the_step_and_halves_the_scale(two_replicas):  # finding 1
    if two_replicas[0] != "mixed_float16":
        pytest.skip("loss scaling is float16's")
    _ok(two_replicas, "one_replica_overflow_skips_the_step")


@pytest.mark.slow
def test_a_fold_one_image_over_a_multiple_of_the_batch_trains_to_the_end_with_finite_weights(two_replicas):
    # finding 2 (drop_remainder); finding 3 (no model but the current one alive after each fold); finding 8 (lr)
    _ok(two_replicas, "folds_of_one_more_than_a_batch_train_to_the_end_with_finite_weights")
    assert "batch 8 on 2 replica(s), lr 7.5e-05; 1 image(s) left out of each epoch" in two_replicas[2]


@pytest.mark.slow
def test_validation_oof_and_test_predictions_use_both_replicas_and_equal_one_device(two_replicas):
    _ok(two_replicas, "predictions_on_both_replicas_equal_one_devices")


@pytest.mark.slow
def test_the_rehearsal_runs_the_oof_tta_batch_a_checkpoint_and_the_exports_and_frees_its_model(two_replicas):
    _ok(two_replicas, "rehearsal_runs_a_folds_steps_in_the_policy")  # findings 6 and 3


@pytest.mark.slow
def test_each_replica_draws_its_own_augmentation(two_replicas):  # finding 5
    _ok(two_replicas, "augmentation_differs_between_replicas")


@pytest.mark.slow
def test_a_16_bit_fold_also_exports_a_float32_copy(two_replicas):  # finding 4
    _ok(two_replicas, "float32_copy_is_exported_in_16_bits_only")


def test_the_prediction_step_cache_keeps_no_model_alive():  # finding 3
    import gc
    import weakref

    import tensorflow as tf

    from imet_utils.models import create_model
    from imet_utils.prediction import predict_batches

    model = create_model("tiny-cnn", 3, image_size=32)
    views = np.zeros((2, 1, 32, 32, 3), np.uint8)
    assert len(list(predict_batches(model, tf.data.Dataset.from_tensors(views)))) == 1
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None, "the cached prediction step keeps its model alive"
