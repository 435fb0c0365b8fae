"""Mixed precision and the multi-device path, exercised on CPU (two replicas in both policies:
tests/test_two_replicas_fp16.py)."""

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
