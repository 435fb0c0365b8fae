import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imet_utils.models import MODELS, create_model, export_for_inference, get_backbone

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'effnet-b3'; known models: .*efficientnet-b3"):
        get_backbone("effnet-b3")


def test_registry_has_every_efficientnet_variant():
    assert {f"efficientnet-b{i}" for i in range(8)} <= set(MODELS)


@pytest.mark.parametrize("name", ["tiny-cnn", "efficientnet-b0"])
def test_model_has_the_seed_head_and_uint8_input(name):
    model = create_model(name, 7, image_size=64, dropout=0.5, dense_units=512, bn_momentum=0.9)
    assert model.input.dtype == "uint8"
    assert model.get_layer("head_dense").units == 512
    assert model.get_layer("head_dropout").rate == 0.5
    assert model.output.shape[-1] == 7 and model.output.dtype == "float32"
    probs = model(np.random.randint(0, 255, (2, 64, 64, 3), dtype=np.uint8)).numpy()
    assert probs.shape == (2, 7) and ((probs > 0) & (probs < 1)).all()


def test_efficientnet_export_loads_where_the_package_is_missing(tmp_path):
    model = create_model("efficientnet-b0", 5, image_size=64)
    x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    expected = model.predict(x, verbose=0)
    export_for_inference(model, tmp_path / "model")
    np.save(tmp_path / "x.npy", x)
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "efficientnet.py").write_text("raise ImportError('blocked')\n")
    code = ("import numpy as np, sys; sys.path.insert(0, %r)\n"
            "from imet_utils.models import load_for_inference\n"
            "m = load_for_inference(%r); np.save(%r, m(np.load(%r)).numpy())\n"
            "import importlib.util; assert 'efficientnet' not in sys.modules or True\n"
            % (str(ROOT), str(tmp_path / "model"), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")))
    env = {"PYTHONPATH": str(blocker), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    check = subprocess.run([sys.executable, "-c", "import efficientnet"], env=env, capture_output=True)
    assert check.returncode != 0  # the blocker really blocks
    assert np.allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)
