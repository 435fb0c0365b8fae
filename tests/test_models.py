from pathlib import Path

import numpy as np
import pytest
from conftest import assert_loads_offline

from imet_utils.models import MODELS, Backbone, ThroughputEstimate, _plain_cnn, create_model, get_backbone

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_model_lists_the_known_ones():
    from kernel_build.kernel import BuildError
    from kernel_build.settings import kernel_values

    with pytest.raises(ValueError, match="unknown model 'effnet-b3'; known models: .*efficientnet-b3"):
        get_backbone("effnet-b3")
    with pytest.raises(BuildError, match="unknown model 'effnet-b3'; known models: .*efficientnet-b3"):
        kernel_values("train", {"model": "effnet-b3"})  # the build stops, not the kernel


@pytest.mark.parametrize("name", [n for n, b in MODELS.items() if b.pip and b.pip.startswith("efficientnet==")])
def test_each_efficientnet_entry_loads_the_variant_it_is_named_for(name):
    """A copy-paste slip (b4's entry loading B3) would otherwise train the wrong model under the right name."""
    assert get_backbone(name).build((32, 32, 3), None).name == name


def test_every_entry_is_complete():
    """What the plan, docs/models.md and the train kernel read from an entry is there and consistent."""
    for name, b in MODELS.items():
        assert b.weights_from and len(b.mean) == len(b.std) == 3 and min(b.std) > 0, name
        assert (b.pip is None) == (b.layers_module is None) == (b.needs_package is None), name
        assert b.throughput is None or min(b.throughput) > 0, name


def test_the_registry_imports_no_tensorflow():
    """The build imports imet_utils.models (plan, docs table) and must never import TensorFlow."""
    import subprocess
    import sys

    code = (
        "import sys, imet_utils.models, kernel_build.settings; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_docs_models_md_is_the_generated_table():
    from kernel_build.settings import MODELS_DOC, models_table

    fix = 'python -c "from kernel_build.settings import write_models_doc; write_models_doc()"'
    assert models_table() in MODELS_DOC.read_text(), f"docs/models.md drifted from MODELS: run {fix}"


_NEW = Backbone(
    _plain_cnn("new_cnn", ((8, 1), (16, 1))),
    "none (from scratch)",
    throughput=ThroughputEstimate(1234, 5678),
    note="registered in one entry",
)


def test_a_backbone_registered_in_one_entry_is_picked_up_everywhere(monkeypatch, tmp_path):
    from kernel_build import plan
    from kernel_build.settings import kernel_values, models_table

    monkeypatch.setitem(MODELS, "new-cnn", _NEW)
    assert "| `new-cnn` | none | none (from scratch) |" in models_table()  # the generated table
    assert "| 1234 | 5678 | registered in one entry |" in models_table()
    got = plan.rates("new-cnn", 288, runs_dir=tmp_path)  # the plan's throughput, unmeasured
    assert (got.train_ips, got.infer_ips, got.source) == (1234, 5678, "estimate (unmeasured)")
    assert kernel_values("train", {"model": "new-cnn", "weights": None})["model"] == "new-cnn"  # the build
    model = create_model("new-cnn", 3, image_size=32)  # and the factory
    assert model.output.shape[-1] == 3


@pytest.mark.parametrize("name", ["tiny-cnn", "small-cnn", "cnn6", "efficientnet-b0"])
def test_model_has_the_baseline_head_and_uint8_input(name):
    model = create_model(name, 7, image_size=64, dropout=0.5, dense_units=512, bn_momentum=0.9)
    assert model.input.dtype == "uint8"
    assert model.get_layer("head_dense").units == 512
    assert model.get_layer("head_dropout").rate == 0.5
    assert model.output.shape[-1] == 7 and model.output.dtype == "float32"
    probs = model(np.random.randint(0, 255, (2, 64, 64, 3), dtype=np.uint8)).numpy()
    assert probs.shape == (2, 7) and ((probs > 0) & (probs < 1)).all()


@pytest.mark.parametrize("name", ["tiny-cnn", "small-cnn", "cnn6"])
def test_from_scratch_models_refuse_pretrained_weights(name):
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model(name, 3, image_size=32, weights="imagenet")


@pytest.mark.slow
def test_efficientnet_export_loads_where_the_package_is_missing(tmp_path):
    model = create_model("efficientnet-b0", 5, image_size=64)
    x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    assert_loads_offline(model, tmp_path, x)
