"""The submit kernel's fold models: one in memory at a time, each loaded once, the float32 export on a CPU
(issue 23, findings 3 and 4)."""

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from imet_utils import ensemble
from imet_utils.config import TrainConfig
from imet_utils.ensemble import TrainOutput, predict_ensemble
from imet_utils.outputs import MODEL_DIR, MODEL_F32_DIR, SAVED_MODEL_FILE, fold_dir

N_CLASSES = 4


class _FakeExport:
    """Stands for a loaded SavedModel: probabilities that say which export it is."""

    def __init__(self, path):
        self.path = str(path)
        self.distribute_strategy = tf.distribute.get_strategy()
        self.value = 0.25 if path.name == MODEL_F32_DIR else 0.75

    def __call__(self, images):
        return tf.fill([tf.shape(images)[0], N_CLASSES], self.value)


def _output(root, folds, f32_folds):
    for k in folds:
        for name in [MODEL_DIR] + ([MODEL_F32_DIR] if k in f32_folds else []):
            (fold_dir(root, k) / name).mkdir(parents=True)
            (fold_dir(root, k) / name / SAVED_MODEL_FILE).write_bytes(b"")
    config = TrainConfig(model="tiny-cnn", weights=None, image_size=32, n_folds=3, folds=tuple(folds))
    return TrainOutput(root=root, config=config, folds=list(folds))


@pytest.fixture
def loads(monkeypatch):
    """Every export loaded, in order, as (path, weak reference), checking at each load that no earlier one lives."""
    seen = []

    def load(path, strategy=None):
        gc.collect()
        alive = [p for p, ref in seen if ref() is not None]
        assert not alive, f"loading {path} while {alive} still held"
        model = _FakeExport(path)
        seen.append((path, weakref.ref(model)))
        return model

    monkeypatch.setattr(ensemble, "load_for_inference", load)
    return seen


@pytest.fixture
def images(tiny_competition):
    return sorted(str(p) for p in (tiny_competition / "test").iterdir())[:6]


def test_one_fold_model_at_a_time_each_loaded_once(tmp_path, loads, images):  # finding 3
    out = _output(tmp_path, [0, 1, 2], f32_folds=[])
    probs = predict_ensemble([out], images, views=("center",), batch_size=4, seconds_left=3600.0, on_gpu=True)
    assert probs.shape == (len(images), N_CLASSES)
    assert [p.parent.name for p, _ in loads] == ["fold0", "fold1", "fold2"]  # the timed first one is not reloaded
    gc.collect()
    assert all(ref() is None for _, ref in loads)


def test_a_cpu_session_predicts_with_the_float32_exports_a_gpu_with_the_trained_ones(tmp_path, loads, images):  # 4
    out = _output(tmp_path, [0, 1], f32_folds=[0])  # fold 1 was trained in float32: it has no copy
    assert predict_ensemble([out], images, views=("center",), batch_size=4, on_gpu=False) == pytest.approx(0.5)
    assert [(p.parent.name, p.name) for p, _ in loads] == [("fold0", MODEL_F32_DIR), ("fold1", MODEL_DIR)]
    loads.clear()
    assert predict_ensemble([out], images, views=("center",), batch_size=4, on_gpu=True) == pytest.approx(0.75)
    assert [p.name for p, _ in loads] == [MODEL_DIR, MODEL_DIR]


def test_the_float32_copy_of_a_float16_model_computes_in_float32_with_its_weights(tmp_path):  # finding 4
    import keras

    from imet_utils.models import computes_in_16_bits, create_model, export_float32_copy

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = create_model("tiny-cnn", N_CLASSES, image_size=32, device_augment=True, bn_momentum=0.9)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert computes_in_16_bits(model)
    assert export_float32_copy(model, tmp_path / "f32")
    loaded = tf.saved_model.load(str(tmp_path / "f32"))
    assert "DT_HALF" not in str(loaded.serve.concrete_functions[0].graph.as_graph_def())
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert np.abs(loaded.serve(x).numpy() - model.predict(x, verbose=0)).max() < 1e-2
    assert not export_float32_copy(create_model("tiny-cnn", N_CLASSES, image_size=32), tmp_path / "none")
    assert not (tmp_path / "none").exists()
