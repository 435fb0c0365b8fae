"""The objects mode: photographed objects pasted on real and procedural textures, for transfer learning.

The realistic mode (``synth.realistic``) draws flat shapes that a small CNN learns from scratch. Here every
tag is a region of a real photograph that an installed package ships (``synth.sources``: the astronaut's face,
the cat's eye, the coffee cup, the pagoda, the horse, ...; 45 of them), so what tells two tags apart is the
kind of visual content an ImageNet backbone has learned and a CNN trained from scratch on a few thousand
images has not:

* Scenes: a background (a texture photograph, a patch of sky or wood, or a procedural noise, gradient or
  stripes; all unlabelled) in a random tint; each tag pastes its object once (sometimes twice) at a random
  scale (a fifth of the objects small), rotation, flip and colour jitter, partly out of frame or under
  another object; zero to two distractors (cells, a clock, text, stones) carry no label.
* Cultures are a global look, one per image or none (``NO_CULTURE``): a printing process or period filter
  (sepia, cyanotype, faded, high contrast, warm, cool, grainy black and white, posterised, vignette,
  duotone), applied to the whole image at a jittered strength.
* Labels: a long tail (Zipf over tags, ``TAG_EXPONENT``, in a seeded order; cultures ``CULTURE_EXPONENT``),
  each culture prefers a few tags, one to five tags per image.
* Train labels are an annotator's (``DROP_CULTURE``, ``DROP_TAG``, ``DROP_SMALL``: small objects are missed
  more often, ``SPURIOUS``); solution.csv holds the clean test labels and train_clean.csv the clean train ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from synth.competition import image_shape, make_folders, random_id, write_label_tables, write_labels
from synth.draw import hsv_rgb, write_png
from synth.realistic import noisy_labels
from synth.sources import DISTRACTORS, OBJECTS, TEXTURES, Patch, load_regions

CULTURES = (
    "sepia",
    "cyanotype",
    "faded",
    "high contrast",
    "warm",
    "cool",
    "grainy black and white",
    "posterised",
    "vignette",
    "duotone",
)
OBJECTS_GROUPS = (("culture", len(CULTURES)), ("tag", len(OBJECTS)))
NO_CULTURE = 0.15  # images without a culture: no filter, as iMet images without a culture label
# Zipf exponents: 0.8 is about the slope of iMet 2019's top 20-30 tags (0.81, see synth.realistic), for the tags
# and, as iMet's top cultures fall off more slowly (0.54) but a group of 10 needs a tail, for the cultures.
CULTURE_EXPONENT = 0.8
TAG_EXPONENT = 0.8
TAG_COUNTS = {1: 0.35, 2: 0.30, 3: 0.20, 4: 0.10, 5: 0.05}
PREFERRED_TAGS = 3
PREFERENCE_BOOST = 8.0
SMALL = 0.2  # the share of objects pasted small
OBJECT_SIZE = (0.30, 0.75)  # an object's longer side, as a fraction of the image's short side (log-uniform)
SMALL_SIZE = (0.14, 0.26)
DISTRACTORS_PER_IMAGE = (0, 2)
# Train label noise (the realistic mode's reasoning): a culture missed 10%, a tag 15%, a small object's tag
# 35% (annotators miss small things), and an extra wrong label on 8% of images.
DROP_CULTURE = 0.10
DROP_TAG = 0.15
DROP_SMALL = 0.35
SPURIOUS = 0.08
PATCH_SIDE = 192  # objects are cut at most this long, before pasting


def objects_label_names(groups: Sequence[tuple[str, int]]) -> list[str]:
    """labels.csv's names: the first ``n`` cultures and tags of ``CULTURES`` and ``OBJECTS``."""
    (_, n_culture), (_, n_tag) = groups
    return [f"culture::{c}" for c in CULTURES[:n_culture]] + [f"tag::{o.name}" for o in OBJECTS[:n_tag]]


def check_groups(groups: Sequence[tuple[str, int]], available: tuple[int, int], mode: str) -> tuple[int, int]:
    """(cultures, tags) of ``groups``, which must be two groups, culture then tag, within what ``mode`` has."""
    names = tuple(g for g, _ in groups)
    if names != ("culture", "tag"):
        raise ValueError(f"the {mode} mode has the groups culture and tag, in that order; got {groups}")
    n_culture, n_tag = (int(n) for _, n in groups)
    if not (1 <= n_culture <= available[0] and 1 <= n_tag <= available[1]):
        raise ValueError(f"the {mode} mode has 1..{available[0]} cultures and 1..{available[1]} tags; got {groups}")
    return n_culture, n_tag


def jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Brightness, contrast, saturation and per-channel gain, drawn at random."""
    grey = rgb.mean(axis=2, keepdims=True)
    sat = 1.0 + strength * rng.uniform(-0.4, 0.3)
    out = grey + (rgb - grey) * sat
    contrast = 1.0 + strength * rng.uniform(-0.25, 0.25)
    mean = float(out.mean())
    out = (out - mean) * contrast + mean * (1.0 + strength * rng.uniform(-0.25, 0.25))
    return out * (1.0 + strength * rng.uniform(-0.08, 0.08, 3)).astype(np.float32)


def paste(
    img: np.ndarray,
    patch: Patch,
    *,
    size: float,
    rng: np.random.Generator,
    angle_sd: float = 20.0,
    strength: float = 1.0,
) -> None:
    """Pastes ``patch`` into ``img`` (float32 RGB) with its longer side ``size`` px, a random flip, rotation
    (normal, ``angle_sd`` degrees) and colour jitter, its centre anywhere in the frame."""
    h, w = img.shape[:2]
    ph, pw = patch.alpha.shape
    s = size / max(ph, pw)
    nh, nw = max(2, round(ph * s)), max(2, round(pw * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(patch.rgb, (nw, nh), interpolation=interp)
    alpha = cv2.resize(patch.alpha, (nw, nh), interpolation=interp)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    angle = float(np.clip(rng.normal(0.0, angle_sd), -60, 60)) if angle_sd > 0 else 0.0
    if abs(angle) > 1.0:
        side = int(np.ceil(np.hypot(nh, nw))) + 2
        m = cv2.getRotationMatrix2D((nw / 2, nh / 2), angle, 1.0)
        m[:, 2] += ((side - nw) / 2, (side - nh) / 2)
        rgb = cv2.warpAffine(np.ascontiguousarray(rgb), m, (side, side), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(np.ascontiguousarray(alpha), m, (side, side), flags=cv2.INTER_LINEAR)
        nh = nw = side
    rgb = jitter(rgb, rng, strength)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, left = cy - nh // 2, cx - nw // 2
    y0, y1, x0, x1 = max(top, 0), min(top + nh, h), max(left, 0), min(left + nw, w)
    if y1 <= y0 or x1 <= x0:
        return
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + rgb[y0 - top : y1 - top, x0 - left : x1 - left] * a


def background(h: int, w: int, textures: list[Patch], rng: np.random.Generator) -> np.ndarray:
    """An unlabelled float32 RGB background: a texture photograph's random crop (two times in three), else
    procedural noise, a gradient or stripes; tinted at random."""
    if rng.random() < 0.67:
        tex = textures[int(rng.integers(len(textures)))].rgb
        th, tw = tex.shape[:2]
        scale = max(h / th, w / tw) * rng.uniform(1.0, 1.8)
        big = cv2.resize(tex, (max(w, round(tw * scale)), max(h, round(th * scale))), interpolation=cv2.INTER_LINEAR)
        y, x = int(rng.integers(0, big.shape[0] - h + 1)), int(rng.integers(0, big.shape[1] - w + 1))
        img = big[y : y + h, x : x + w]
        if rng.random() < 0.5:
            img = img[::-1]
        tint = hsv_rgb(rng.random(), rng.uniform(0.0, 0.5), 1.0) / 255.0
        return jitter(img * tint.astype(np.float32), rng)
    a = hsv_rgb(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.95)).astype(np.float32)
    b = hsv_rgb(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.95)).astype(np.float32)
    kind = int(rng.integers(3))
    if kind == 0:
        small = rng.random((max(h // 24, 2), max(w // 24, 2))).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, np.pi)
        proj = np.cos(ang) * xx + np.sin(ang) * yy
        if kind == 1:
            t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        else:
            t = (np.sin(2 * np.pi * proj / rng.uniform(5, 30)) > 0).astype(np.float32) * rng.uniform(0.3, 1.0)
    img = a * (1 - t[..., None]) + b * t[..., None]
    return img + rng.normal(0, rng.uniform(2, 12), (h, w, 3)).astype(np.float32)


def _tone(grey: np.ndarray, dark: tuple, light: tuple) -> np.ndarray:
    t = np.clip(grey / 255.0, 0, 1)[..., None]
    return np.asarray(dark, np.float32) * (1 - t) + np.asarray(light, np.float32) * t


def apply_filter(img: np.ndarray, culture: int, rng: np.random.Generator) -> np.ndarray:
    """``img`` (float32 RGB) under culture ``culture``'s look (``CULTURES``), blended in at 60-100%."""
    name = CULTURES[culture]
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    h, w = grey.shape
    if name == "sepia":
        out = _tone(grey, (40, 20, 5), (255, 235, 190))
    elif name == "cyanotype":
        out = _tone(grey, (10, 30, 80), (215, 235, 250))
    elif name == "faded":
        out = img * 0.65 + np.array([70, 62, 45], np.float32)
    elif name == "high contrast":
        g = grey[..., None]
        out = (g + (img - g) * 1.5 - 128) * 1.6 + 128
    elif name == "warm":
        out = img * np.array([1.15, 1.0, 0.78], np.float32) + np.array([12, 4, 0], np.float32)
    elif name == "cool":
        out = img * np.array([0.8, 0.97, 1.15], np.float32) + np.array([0, 4, 14], np.float32)
    elif name == "grainy black and white":
        out = np.repeat(grey[..., None], 3, axis=2) + rng.normal(0, 22, (h, w, 1)).astype(np.float32)
    elif name == "posterised":
        out = np.floor(np.clip(img, 0, 255) / 64.0) * 64.0 + 32.0
    elif name == "vignette":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = ((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) * 4
        out = cv2.GaussianBlur(img, (5, 5), 0) * np.clip(1.15 - 0.75 * d, 0.1, 1.15)[..., None]
    else:  # duotone
        out = _tone(grey, (70, 15, 80), (200, 245, 160))
    k = rng.uniform(0.6, 1.0)
    return img * (1 - k) + out * k


class _LabelModel:
    """Clean labels: one culture (or none), one to five tags from a long tail, cultures preferring tags."""

    def __init__(self, n_culture: int, n_tag: int, rng: np.random.Generator):
        self.n_culture, self.n_tag = n_culture, n_tag
        w = 1.0 / np.arange(1, n_culture + 1) ** CULTURE_EXPONENT
        self.culture_w = (w / w.sum())[rng.permutation(n_culture)]
        w = 1.0 / np.arange(1, n_tag + 1) ** TAG_EXPONENT
        self.tag_w = (w / w.sum())[rng.permutation(n_tag)]
        self.boost = np.ones((n_culture + 1, n_tag))  # the last row: no culture
        for c in range(n_culture):
            self.boost[c, rng.choice(n_tag, size=min(PREFERRED_TAGS, n_tag), replace=False)] = PREFERENCE_BOOST
        mass = sum(k * p for k, p in TAG_COUNTS.items())
        self.marginal = np.concatenate([self.culture_w * (1 - NO_CULTURE), self.tag_w * mass])
        self.marginal /= self.marginal.sum()

    def sample(self, rng: np.random.Generator) -> tuple[int | None, list[int]]:
        culture = None if rng.random() < NO_CULTURE else int(rng.choice(self.n_culture, p=self.culture_w))
        w = self.tag_w * self.boost[self.n_culture if culture is None else culture]
        k = min(int(rng.choice(list(TAG_COUNTS), p=list(TAG_COUNTS.values()))), self.n_tag)
        tags = [int(t) for t in rng.choice(self.n_tag, size=k, replace=False, p=w / w.sum())]
        return culture, tags


def render(
    culture: int | None,
    tags: list[int],
    *,
    h: int,
    w: int,
    objects: list[Patch],
    textures: list[Patch],
    distractors: list[Patch],
    rng: np.random.Generator,
) -> tuple[np.ndarray, set[int]]:
    """One uint8 RGB image, and the tags whose objects were all pasted small."""
    img = background(h, w, textures, rng)
    short = min(h, w)
    items: list[tuple[Patch, float]] = []
    small: set[int] = set()
    for t in tags:
        sizes = []
        for _ in range(2 if rng.random() < 0.15 else 1):
            lo, hi = SMALL_SIZE if rng.random() < SMALL else OBJECT_SIZE
            sizes.append(short * float(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
            items.append((objects[t], sizes[-1]))
        if max(sizes) < short * SMALL_SIZE[1] + 1:
            small.add(t)
    for _ in range(int(rng.integers(DISTRACTORS_PER_IMAGE[0], DISTRACTORS_PER_IMAGE[1] + 1))):
        d = distractors[int(rng.integers(len(distractors)))]
        items.append((d, short * rng.uniform(*OBJECT_SIZE)))
    # Roughly larger things first, as a photograph's foreground hides its background: occlusion stays partial.
    order = np.argsort([-size * rng.uniform(0.7, 1.3) for _, size in items], kind="stable")
    for i in order:
        patch, size = items[i]
        paste(img, patch, size=size, rng=rng)
    if culture is not None:
        img = apply_filter(img, culture, rng)
    else:
        img = jitter(img, rng, 0.5)
    return np.clip(img, 0, 255).astype(np.uint8), small


def generate_objects(
    out: Path, *, n_train: int, n_test: int, groups: Sequence[tuple[str, int]], min_side: int, max_side: int, seed: int
) -> Path:
    """Writes an objects-mode competition to ``out`` (see the module docstring); the arguments are
    ``synth.generate_competition``'s, ``groups`` at most ``OBJECTS_GROUPS``. Besides the iMet files it writes
    ``solution.csv`` (clean test labels) and ``train_clean.csv`` (train labels before the annotator's misses).

    Raises:
        ValueError: ``groups`` other than culture and tag within ``OBJECTS_GROUPS``.
        FileNotFoundError: a source image is missing from its package.
    """
    n_culture, n_tag = check_groups(groups, (len(CULTURES), len(OBJECTS)), "objects")
    rng = np.random.default_rng(seed)
    objects = load_regions(OBJECTS[:n_tag], max_side=PATCH_SIDE)
    textures = load_regions(TEXTURES, max_side=256)
    distractors = load_regions(DISTRACTORS, max_side=PATCH_SIDE)
    out = make_folders(out)
    write_labels(out, objects_label_names(groups))
    model = _LabelModel(n_culture, n_tag, rng)
    used: set = set()

    def make(split: str, n: int) -> dict[str, list]:
        rows: dict[str, list] = {"id": [], "clean": [], "noisy": []}
        for _ in range(n):
            img_id = random_id(rng, used)
            culture, tags = model.sample(rng)
            h, w = image_shape(rng, min_side=min_side, max_side=max_side)
            img, small = render(
                culture, tags, h=h, w=w, objects=objects, textures=textures, distractors=distractors, rng=rng
            )
            write_png(out / split / f"{img_id}.png", img)
            clean = sorted(([] if culture is None else [culture]) + [n_culture + t for t in tags])
            rows["id"].append(img_id)
            rows["clean"].append(clean)
            if split == "train":
                # Small objects are missed more often: drop them first, then the usual annotator noise.
                seen = [lab for lab in clean if lab - n_culture not in small or rng.random() >= DROP_SMALL]
                rows["noisy"].append(
                    noisy_labels(
                        seen or clean,
                        n_culture=n_culture,
                        marginal=model.marginal,
                        rng=rng,
                        drop_culture=DROP_CULTURE,
                        drop_tag=DROP_TAG,
                        spurious=SPURIOUS,
                    )
                )
        return rows

    train = make("train", n_train)
    test = make("test", n_test)
    write_label_tables(out, train, test)
    return out
