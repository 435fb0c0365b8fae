"""Train-time augmentation with albumentations 2.x (the seed's, ported).

The seed used HorizontalFlip, ShiftScaleRotate(0.1, 15, p=0.3), RandomBrightness,
IAAAdditiveGaussianNoise and RandomCrop(288). In albumentations 2 those two are
gone: RandomBrightnessContrast(contrast_limit=0) and GaussNoise replace them, and
Affine replaces the deprecated ShiftScaleRotate. Only the train kernel imports
this module; the offline submit kernel uses the TF-only views in ``pipeline``.
"""
from __future__ import annotations

import albumentations as A
import numpy as np

SEED_SHIFT = 0.1
SEED_ROTATE = 15
SEED_AFFINE_P = 0.3


def train_transforms(size: int) -> A.Compose:
    """Random crop of ``size`` (scaling up a smaller image first), flip, affine, brightness, noise."""
    return A.Compose([
        A.PadIfNeeded(min_height=size, min_width=size, border_mode=0),
        A.RandomCrop(height=size, width=size),
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-SEED_SHIFT, SEED_SHIFT), rotate=(-SEED_ROTATE, SEED_ROTATE),
                 border_mode=0, p=SEED_AFFINE_P),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.0, p=0.3),
        A.GaussNoise(std_range=(0.02, 0.06), p=0.2),
    ])


def scale_up_to(img: np.ndarray, size: int) -> np.ndarray:
    """Scales an image whose short side is below ``size`` up to it, so a crop never fails."""
    import cv2

    h, w = img.shape[:2]
    if min(h, w) >= size:
        return img
    s = size / min(h, w)
    return cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_LINEAR)


def augment_image(transform: A.Compose, img: np.ndarray, size: int) -> np.ndarray:
    return transform(image=scale_up_to(img, size))["image"]
