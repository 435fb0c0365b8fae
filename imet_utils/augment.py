"""Train-time augmentation, realised from the presets of ``imet_utils.augment_presets`` (what each one does,
and why it has a CPU and a device realisation, is there).

Where (``TrainConfig.augment``):
- ``"device"`` (default; a preset that ``runs_on_device``, i.e. ``"ours"``): the input pipeline crops and flips
  (cheap, and a JPEG is decoded only inside its crop window); ``DeviceAugment``, the model's first layer after
  rescaling, runs the preset's affine, brightness and noise batched on the accelerator. It is the identity at
  inference, so exported models are unaffected.
- ``"albumentations"``: the preset's ``train_transforms`` per image on the CPU.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from imet_utils.augment_presets import AUGMENT_PRESETS, AugmentPreset, get_augment_preset

_OURS = AUGMENT_PRESETS["ours"]  # DeviceAugment's defaults


def train_transforms(size: int, preset: str = "ours"):
    """The train augmentation of a preset, for albumentations 2.x on the CPU.

    Args:
        size: output crop size; call ``augment_image`` so a smaller image is scaled up first.
        preset: a key of ``AUGMENT_PRESETS``: ``"ours"`` (crop, flip, affine, brightness, noise) or ``"seed"``
            (the 2019 baseline notebook's flip, affine, crop).

    Returns:
        An ``albumentations.Compose``.

    Raises:
        ValueError: an unknown preset, naming the known ones.
    """
    spec = get_augment_preset(preset)
    import albumentations as A  # only the train kernel, and only in this mode, needs it

    crop, flip = A.RandomCrop(height=size, width=size), A.HorizontalFlip(p=0.5)
    steps = [crop, flip, _affine(A, spec)] if spec.crop_first else [flip, _affine(A, spec), crop]
    if spec.brightness:
        steps.append(
            A.RandomBrightnessContrast(brightness_limit=spec.brightness, contrast_limit=0.0, p=spec.brightness_p)
        )
    if spec.noise_std:
        steps.append(A.GaussNoise(std_range=(spec.noise_std / 2, spec.noise_std * 1.5), p=spec.noise_p))
    return A.Compose(steps)


def _affine(A, spec: AugmentPreset):
    """A preset's shift, isotropic scale and rotation as albumentations 2.x's ``Affine``.

    For the ``"seed"`` preset this is the 2019 baseline notebook's ``ShiftScaleRotate(shift_limit=0.1,
    rotate_limit=15, p=0.3)`` of albumentations 0.x. 2.x still has ShiftScaleRotate, deprecated, as an Affine
    with ``keep_ratio=False``: it draws the x and y scales independently and so stretches the image, which 0.x
    never did. 0.x drew one angle in ±15°, one scale in 0.9–1.1 and dx, dy in ±0.1 of the width and height, and
    warped with ``cv2.getRotationMatrix2D(centre, angle, scale)`` plus that shift (linear interpolation,
    BORDER_REFLECT_101). This Affine draws the same, with the same matrix and the same sign of rotation; it
    differs by under a pixel: it rotates about ((w-1)/2, (h-1)/2) rather than (w/2, h/2) and rounds the shift to
    whole pixels (tests/test_augment.py checks this).
    """
    import cv2

    return A.Affine(
        scale=(1 - spec.scale, 1 + spec.scale),
        keep_ratio=True,
        balanced_scale=False,
        translate_percent=(-spec.shift, spec.shift),
        rotate=(-spec.rotate, spec.rotate),
        shear=0,
        interpolation=cv2.INTER_LINEAR,
        border_mode={"constant": cv2.BORDER_CONSTANT, "reflect_101": cv2.BORDER_REFLECT_101}[spec.border],
        p=spec.affine_p,
    )


def augment_image(transform, img: np.ndarray, size: int) -> np.ndarray:
    """Runs an albumentations transform on an image scaled up first if its short side is below ``size``."""
    from imet_utils.images import scale_up_to  # OpenCV: only the CPU realisation needs it

    return transform(image=scale_up_to(img, size))["image"]


REPLICA_SEED_STRIDE = 1_000_003  # replica r draws from seed + r x this: streams no replica shares


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A seed generator whose seeds differ on each replica of a distribution strategy.

    Its state variable is mirrored, so under MirroredStrategy a plain ``SeedGenerator`` gives every replica the
    same seeds: image i on GPU 0 and image i on GPU 1 got the same rotation, shift, brightness and noise. The
    replica's id is mixed into each seed drawn (replica 0, and a run on one device, draw what they did before).
    """

    def next(self, ordered=True):
        import tensorflow as tf  # the train kernel's backend; the replica context is TensorFlow's

        seed = super().next(ordered)
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        offset = ops.cast(ops.convert_to_tensor(replica), seed.dtype) * REPLICA_SEED_STRIDE
        return seed + ops.stack([offset, ops.zeros_like(offset)])


@keras.saving.register_keras_serializable(package="imet_utils")
class DeviceAugment(layers.Layer):
    """A preset's affine, brightness and noise (``"ours"`` by default), batched on the accelerator; identity at
    inference. Build it with ``for_preset``.

    Runs after the pipeline's crop and flip. Each image gets each transform with its own probability, as
    albumentations' ``p``; the affine is a rotation then a translation, with black fill (no scale). Every draw
    comes from one ``ReplicaSeedGenerator``, so each replica augments its share of the batch differently.
    Input: images on a 0..1 scale.
    """

    def __init__(
        self,
        rotate=_OURS.rotate,
        shift=_OURS.shift,
        p_affine=_OURS.affine_p,
        brightness=_OURS.brightness,
        p_brightness=_OURS.brightness_p,
        noise=_OURS.noise_std,
        p_noise=_OURS.noise_p,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotate, self.shift, self.p_affine = rotate, shift, p_affine
        self.brightness, self.p_brightness, self.noise, self.p_noise = brightness, p_brightness, noise, p_noise
        self.seed = seed
        self._rotation = layers.RandomRotation(rotate / 360.0, fill_mode="constant", seed=seed)
        self._translation = layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed)
        self._seeds = ReplicaSeedGenerator(seed)

    @classmethod
    def for_preset(cls, preset: str, **kwargs) -> DeviceAugment:
        """The layer that runs ``preset`` (its crop and flip are the input pipeline's); ``kwargs`` go to the
        layer (its ``name``, ``seed``).

        Raises:
            ValueError: an unknown preset, or one the device can't run (it needs crop first, black borders,
                no scale).
        """
        spec = get_augment_preset(preset)
        if not spec.runs_on_device:
            raise ValueError(f"augment preset {preset!r} can't run on the device: use augment='albumentations'")
        return cls(
            rotate=spec.rotate,
            shift=spec.shift,
            p_affine=spec.affine_p,
            brightness=spec.brightness,
            p_brightness=spec.brightness_p,
            noise=spec.noise_std,
            p_noise=spec.noise_p,
            **kwargs,
        )

    def build(self, input_shape):
        self._rotation.build(input_shape)
        self._translation.build(input_shape)
        super().build(input_shape)

    def _mask(self, batch, p, dtype):
        return ops.cast(keras.random.uniform((batch, 1, 1, 1), seed=self._seeds) < p, dtype)

    def call(self, x, training=None):
        if not training:
            return x
        batch = ops.shape(x)[0]
        m = self._mask(batch, self.p_affine, x.dtype)
        # the layers' own transforms, drawn from our replica-aware seeds (their own generators are mirrored)
        turn = self._rotation.get_random_transformation(x, training=True, seed=self._seeds)
        rotated = self._rotation.transform_images(x, turn, training=True)
        shift = self._translation.get_random_transformation(rotated, training=True, seed=self._seeds)
        moved = self._translation.transform_images(rotated, shift, training=True)
        x = m * ops.cast(moved, x.dtype) + (1 - m) * x
        m = self._mask(batch, self.p_brightness, x.dtype)
        delta = ops.cast(
            keras.random.uniform((batch, 1, 1, 1), -self.brightness, self.brightness, seed=self._seeds), x.dtype
        )
        x = x + m * delta
        m = self._mask(batch, self.p_noise, x.dtype)
        x = x + m * ops.cast(keras.random.normal(ops.shape(x), stddev=self.noise, seed=self._seeds), x.dtype)
        return ops.clip(x, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotate": self.rotate,
            "shift": self.shift,
            "p_affine": self.p_affine,
            "brightness": self.brightness,
            "p_brightness": self.p_brightness,
            "noise": self.noise,
            "p_noise": self.p_noise,
            "seed": self.seed,
        }
