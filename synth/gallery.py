"""The gallery mode: museum photographs of framed works, for transfer learning on iMet-like labels.

It differs from the realistic mode (drawn shapes, one per tag) and from the objects mode (one pasted object per
tag, a global filter as the culture) in what a label is and where its evidence lies:

* Works: each is a rectangular crop of a real photograph that an installed package ships (``synth.sources``),
  and several come from the same photograph: the whole of it and details of it (the astronaut, her face, the
  shuttle behind her). Tags are what a work depicts (``WORKS``: portraits, women, uniforms, flags, ...), so a
  tag is shared by many works and one work carries one to six tags: the full photograph and its details are
  near duplicates whose tags differ. A tag can rest on context alone (a crop of a cat's nose is ``cats``).
* Cultures are a workshop: a frame (gilt, dark wood, thin black, white mat, scroll mount, none) with a rendering
  (varnish with craquelure, impressionist, sepia, silver print, cyanotype, woodblock, ink wash, watercolour,
  mosaic, none). Several share a frame or a rendering, so telling them apart is fine-grained. It is a property
  of each work, not of the image: a room mostly shows one culture, sometimes two or three.
* Scenes: one to four works (each seen through a random 70-100% window of its crop) hung on a lit wall
  (sometimes with a floor), a single work filling most of the frame as in most iMet photographs; then the
  camera: a slight keystone and tilt, blur, noise, and JPEG compression (quality 35-90) before the PNG is
  written. Images vary in size and aspect (short side
  ``min_side`` to ``max_side``, aspect 1 to 1.8).
* Labels: which works hang follows Zipf (``WORK_EXPONENT``), each culture prefers a few works, and a room's
  works often come from one photograph (a series); cultures follow Zipf (``CULTURE_EXPONENT``). Train labels
  miss a tag ``DROP_TAG``, a culture ``DROP_CULTURE`` (a second culture ``DROP_SECOND_CULTURE``), and gain a
  wrong one on ``SPURIOUS`` of images; solution.csv and train_clean.csv hold the clean labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from synth.competition import make_folders, random_id, write_label_tables, write_labels
from synth.draw import hsv_rgb, write_png
from synth.objects import check_groups, jitter
from synth.realistic import noisy_labels
from synth.sources import TEXTURES, Region, load_regions

# (region, tags): every crop a work; regions of one source overlap on purpose (a photograph and its details).
WORKS = (
    (Region("astronaut", "astronaut", (0.0, 1.0, 0.0, 1.0)), ("women", "portraits", "uniforms", "flags", "spacecraft")),
    (Region("astronaut face", "astronaut", (0.02, 0.42, 0.24, 0.64)), ("women", "portraits", "faces")),
    (Region("shuttle", "astronaut", (0.0, 0.58, 0.64, 0.96)), ("spacecraft", "rockets")),
    (Region("flag", "astronaut", (0.0, 0.72, 0.0, 0.2)), ("flags", "stars")),
    (Region("helmet", "astronaut", (0.6, 1.0, 0.5, 1.0)), ("spacecraft", "uniforms")),
    (Region("chelsea", "chelsea", (0.0, 1.0, 0.0, 1.0)), ("cats", "animals")),
    (Region("cat eye", "chelsea", (0.18, 0.62, 0.2, 0.52)), ("cats", "animals", "eyes")),
    (Region("cat nose", "chelsea", (0.5, 1.0, 0.4, 0.82)), ("cats", "animals")),
    (Region("coffee", "coffee", (0.0, 1.0, 0.0, 1.0)), ("cups", "drinks", "tableware", "wood")),
    (Region("cup", "coffee", (0.0, 0.6, 0.22, 0.75)), ("cups", "drinks")),
    (Region("spoon", "coffee", (0.5, 0.9, 0.45, 0.76)), ("tableware",)),
    (Region("rocket", "rocket", (0.0, 1.0, 0.0, 1.0)), ("rockets", "night", "towers", "sky")),
    (Region("rocket detail", "rocket", (0.3, 1.0, 0.38, 0.64)), ("rockets",)),
    (Region("gantry", "rocket", (0.0, 1.0, 0.0, 0.26)), ("towers",)),
    (Region("summer palace", "china", (0.0, 1.0, 0.0, 1.0)), ("architecture", "landscapes", "trees", "water")),
    (Region("pagoda", "china", (0.02, 0.92, 0.05, 0.6)), ("architecture", "towers")),
    (Region("lakeside", "china", (0.3, 1.0, 0.55, 1.0)), ("landscapes", "trees", "water")),
    (Region("flower", "flower", (0.0, 1.0, 0.0, 1.0)), ("flowers", "plants")),
    (Region("dahlia", "flower", (0.1, 0.9, 0.2, 0.75)), ("flowers",)),
    (Region("buds", "flower", (0.7, 1.0, 0.3, 0.85)), ("flowers", "plants")),
    (Region("hopper", "hopper", (0.0, 1.0, 0.0, 1.0)), ("women", "portraits", "uniforms", "flags", "stars")),
    (Region("hopper face", "hopper", (0.15, 0.55, 0.22, 0.8)), ("women", "portraits", "faces")),
    (Region("dress uniform", "hopper", (0.6, 1.0, 0.2, 1.0)), ("uniforms",)),
    (Region("garage", "motorcycle", (0.0, 1.0, 0.0, 1.0)), ("motorcycles", "machines", "interiors")),
    (Region("motorcycle", "motorcycle", (0.3, 0.95, 0.15, 0.95)), ("motorcycles", "machines", "wheels")),
    (Region("shelves", "motorcycle", (0.0, 0.5, 0.4, 1.0)), ("interiors",)),
    (Region("deep field", "hubble", (0.0, 1.0, 0.0, 1.0)), ("galaxies", "night", "sky")),
    (Region("galaxies", "hubble", (0.35, 0.7, 0.55, 0.9)), ("galaxies",)),
    (Region("stained tissue", "ihc", (0.0, 1.0, 0.0, 1.0)), ("medicine", "cells")),
    (Region("gland", "ihc", (0.5, 1.0, 0.4, 0.85)), ("cells",)),
    (Region("fundus", "retina", (0.0, 1.0, 0.0, 1.0)), ("eyes", "medicine")),
    (Region("optic disc", "retina", (0.3, 0.7, 0.0, 0.35)), ("eyes",)),
    (Region("cameraman", "camera", (0.0, 1.0, 0.0, 1.0)), ("men", "photographers", "cameras", "tripods", "grass")),
    (Region("cameraman detail", "camera", (0.05, 0.6, 0.2, 0.7)), ("men", "photographers", "cameras")),
    (Region("tripod", "camera", (0.5, 1.0, 0.4, 0.85)), ("tripods", "grass")),
    (Region("coins", "coins", (0.0, 1.0, 0.0, 1.0)), ("coins",)),
    (Region("coin row", "coins", (0.5, 0.75, 0.0, 1.0)), ("coins", "profiles")),
    (Region("coin", "coins", (0.0, 0.25, 0.75, 1.0)), ("coins",)),
    (Region("horse", "horse", (0.0, 1.0, 0.0, 1.0)), ("horses", "animals")),
    (Region("logo", "logo", (0.0, 1.0, 0.0, 1.0)), ("snakes", "logos")),
    (Region("colour wheel", "color", (0.0, 1.0, 0.0, 1.0)), ("colour studies",)),
    (Region("moon", "moon", (0.0, 1.0, 0.0, 1.0)), ("moon",)),
    (Region("page", "page", (0.0, 1.0, 0.0, 1.0)), ("text",)),
    (Region("brick", "brick", (0.0, 1.0, 0.0, 1.0)), ("brick walls",)),
    (Region("grass", "grass", (0.0, 1.0, 0.0, 1.0)), ("grass", "plants")),
    (Region("gravel", "gravel", (0.0, 1.0, 0.0, 1.0)), ("stones",)),
    (Region("cells", "cell", (0.0, 1.0, 0.0, 1.0)), ("cells", "medicine")),
    (Region("clock", "clock", (0.0, 1.0, 0.0, 1.0)), ("clocks", "machines")),
)
TAGS = tuple(dict.fromkeys(t for _, tags in WORKS for t in tags))  # in order of first appearance
FRAMES = ("gilt", "dark wood", "thin black", "white mat", "scroll", "none")
RENDERINGS = (
    "varnish",
    "impressionist",
    "sepia",
    "silver",
    "cyanotype",
    "woodblock",
    "ink wash",
    "watercolour",
    "mosaic",
    "natural",
)
# Each culture: (frame, rendering). Many share one of the two: the fine-grained part.
CULTURES = (
    ("gilt", "varnish"),
    ("gilt", "impressionist"),
    ("dark wood", "varnish"),
    ("dark wood", "sepia"),
    ("thin black", "silver"),
    ("white mat", "silver"),
    ("white mat", "cyanotype"),
    ("scroll", "ink wash"),
    ("scroll", "natural"),
    ("none", "impressionist"),
    ("none", "woodblock"),
    ("thin black", "natural"),
    ("white mat", "watercolour"),
    ("dark wood", "natural"),
    ("white mat", "mosaic"),
    ("gilt", "sepia"),
    ("none", "natural"),
    ("thin black", "woodblock"),
)
GALLERY_GROUPS = (("culture", len(CULTURES)), ("tag", len(TAGS)))
# Zipf exponents: works fall off as iMet 2019's tags over their whole head (1.0; tags shared by works fall off
# more slowly), cultures at 0.8, between iMet's top cultures (0.54) and its top tags (0.81).
WORK_EXPONENT = 1.0
CULTURE_EXPONENT = 0.8
WORKS_PER_IMAGE = {1: 0.55, 2: 0.25, 3: 0.14, 4: 0.06}
SAME_CULTURE = 0.8  # a room's further works share its culture
SERIES = 0.35  # a further work comes from the same photograph as the first
PREFERRED_WORKS = 4
PREFERENCE_BOOST = 6.0
# Train label noise: iMet's one annotator per object (see synth.realistic); a second or third culture is
# missed more often, as an annotator labels the main work.
DROP_TAG = 0.22
DROP_CULTURE = 0.10
DROP_SECOND_CULTURE = 0.35
SPURIOUS = 0.06
JPEG_QUALITY = (35, 90)
WORK_SIDE = 200  # works are cut at most this long, before rendering


def gallery_label_names(groups: Sequence[tuple[str, int]]) -> list[str]:
    """labels.csv's names: the first ``n`` cultures (``frame / rendering``) and tags."""
    (_, n_culture), (_, n_tag) = groups
    cultures = [f"culture::{frame} {rendering}" for frame, rendering in CULTURES[:n_culture]]
    return cultures + [f"tag::{t}" for t in TAGS[:n_tag]]


def gallery_shape(rng: np.random.Generator, *, min_side: int, max_side: int) -> tuple[int, int]:
    """(height, width): a short side from ``min_side`` to ``max_side``, an aspect of 1 to 1.8, either way."""
    short = int(rng.integers(min_side, max_side + 1))
    long_ = int(short * rng.uniform(1.0, 1.8))
    return (short, long_) if rng.random() < 0.6 else (long_, short)


def _noise(h: int, w: int, cell: int, rng: np.random.Generator) -> np.ndarray:
    small = rng.random((max(h // cell, 2), max(w // cell, 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _tone(grey: np.ndarray, dark: tuple, light: tuple) -> np.ndarray:
    t = np.clip(grey / 255.0, 0, 1)[..., None]
    return np.asarray(dark, np.float32) * (1 - t) + np.asarray(light, np.float32) * t


def render_work(rgb: np.ndarray, rendering: str, rng: np.random.Generator) -> np.ndarray:
    """A work's pixels (float32 RGB) in a culture's ``rendering``."""
    h, w = rgb.shape[:2]
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    if rendering == "varnish":
        out = rgb * np.array([1.05, 0.92, 0.7], np.float32) * 0.85
        cracks = np.abs(_noise(h, w, 6, rng) - 0.5) < 0.025
        out[cracks] *= 0.55
    elif rendering == "impressionist":
        u8 = np.clip(rgb, 0, 255).astype(np.uint8)
        out = cv2.medianBlur(u8, 5).astype(np.float32)
        g = out.mean(axis=2, keepdims=True)
        out = g + (out - g) * 1.5 + rng.normal(0, 10, (h, w, 1)).astype(np.float32)
    elif rendering == "sepia":
        out = _tone(grey, (45, 25, 10), (250, 230, 185))
    elif rendering == "silver":
        out = np.repeat(grey[..., None], 3, axis=2) * 1.05 - 8
    elif rendering == "cyanotype":
        out = _tone(grey, (15, 35, 90), (220, 235, 248))
    elif rendering == "woodblock":
        u8 = np.clip(rgb, 0, 255).astype(np.uint8)
        out = np.floor(cv2.GaussianBlur(u8, (3, 3), 0) / 85.0).astype(np.float32) * 85 + 40
        edges = cv2.Canny(u8, 80, 160) > 0
        out[edges] = (40, 30, 25)
        out *= np.array([1.0, 0.95, 0.85], np.float32)
    elif rendering == "ink wash":
        g = cv2.GaussianBlur(grey, (3, 3), 0)
        out = _tone(np.clip((g - 128) * 1.6 + 128, 0, 255), (25, 25, 30), (238, 228, 205))
    elif rendering == "watercolour":
        soft = cv2.GaussianBlur(rgb, (5, 5), 0)
        g = soft.mean(axis=2, keepdims=True)
        out = (g + (soft - g) * 0.7) * 0.65 + 255 * 0.35
        out *= (0.94 + 0.06 * _noise(h, w, 4, rng))[..., None]
    elif rendering == "mosaic":
        cell = max(3, min(h, w) // 18)
        small = cv2.resize(rgb, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        out[::cell] *= 0.6
        out[:, ::cell] *= 0.6
    else:
        out = rgb
    return jitter(out, rng, 0.4)


def add_frame(art: np.ndarray, frame: str, rng: np.random.Generator) -> np.ndarray:
    """``art`` inside a ``frame`` (``FRAMES``); the framed picture is larger than ``art``."""
    h, w = art.shape[:2]
    b = max(3, int(min(h, w) * rng.uniform(0.07, 0.12)))
    if frame == "none":  # canvas: darker edges
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = np.minimum(np.minimum(yy, h - 1 - yy), np.minimum(xx, w - 1 - xx)) / max(b, 1)
        return art * np.clip(0.75 + 0.25 * d, 0, 1)[..., None]
    if frame == "thin black":
        b = max(2, b // 3)
    if frame == "scroll":
        top, side = 2 * b, max(2, b // 3)
    else:
        top = side = b
    out_h, out_w = h + 2 * top, w + 2 * side
    if frame == "gilt":
        base = np.array([190, 150, 65], np.float32)
    elif frame == "dark wood":
        base = np.array([80, 48, 25], np.float32)
    elif frame == "thin black":
        base = np.array([25, 24, 24], np.float32)
    elif frame == "white mat":
        base = np.array([236, 232, 222], np.float32)
    else:  # scroll: a silk mount
        base = hsv_rgb(rng.uniform(0.05, 0.15), 0.35, 0.8).astype(np.float32)
    out = np.broadcast_to(base, (out_h, out_w, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    edge = np.minimum(np.minimum(yy, out_h - 1 - yy), np.minimum(xx, out_w - 1 - xx))
    if frame == "gilt":  # a bevel and an ornament
        out *= (0.7 + 0.5 * np.clip(edge / b, 0, 1) * (1 - np.clip(edge / b, 0, 1)) * 4)[..., None] * 0.8
        out *= (0.85 + 0.15 * np.sin((xx + yy) * 0.9))[..., None]
    elif frame == "dark wood":  # grain along the sides
        out *= (0.8 + 0.2 * np.sin(xx * 0.5 + _noise(out_h, out_w, 8, rng) * 6))[..., None]
    elif frame == "white mat":  # a thin black moulding outside the mat
        out[edge < max(1, b // 4)] = (30, 28, 28)
    else:  # scroll: dark rods across the top and bottom
        r = max(2, top // 4)
        out[:r] = out[-r:] = (45, 30, 20)
    out[top : top + h, side : side + w] = art
    return out


def wall(h: int, w: int, textures, rng: np.random.Generator) -> np.ndarray:
    """A lit museum wall (a muted colour, a spotlight, plaster noise), sometimes with a floor."""
    colour = hsv_rgb(rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.45, 0.92)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(-0.2, 0.4) * h, rng.uniform(0.2, 0.8) * w
    light = 1.15 - 0.45 * np.sqrt(((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2)
    img = colour * light[..., None] * (0.95 + 0.1 * _noise(h, w, 10, rng))[..., None]
    if rng.random() < 0.4:
        fy = int(h * rng.uniform(0.8, 0.92))
        tex = textures[int(rng.integers(len(textures)))].rgb
        floor = cv2.resize(tex, (w, h - fy), interpolation=cv2.INTER_AREA) * rng.uniform(0.3, 0.6)
        img[fy:] = floor
        img[max(fy - 2, 0) : fy] = colour * 0.5
    return img


def _hang(img: np.ndarray, framed: np.ndarray, top: int, left: int) -> None:
    """Pastes ``framed`` at (top, left) over a soft shadow, clipped to ``img``."""
    h, w = img.shape[:2]
    fh, fw = framed.shape[:2]
    s = max(1, min(fh, fw) // 25)
    for dy, dx, weight, src in ((s, s, 0.45, None), (0, 0, 1.0, framed)):
        y0, x0 = top + dy, left + dx
        y1, x1 = min(y0 + fh, h), min(x0 + fw, w)
        ya, xa = max(y0, 0), max(x0, 0)
        if y1 <= ya or x1 <= xa:
            continue
        if src is None:
            img[ya:y1, xa:x1] *= 1 - weight
        else:
            img[ya:y1, xa:x1] = src[ya - y0 : y1 - y0, xa - x0 : x1 - x0]


def camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A handheld photograph of the scene: keystone and tilt, blur, noise, exposure; uint8 RGB out."""
    h, w = img.shape[:2]
    if rng.random() < 0.6:
        d = rng.uniform(-0.05, 0.05, (4, 2)) * (w, h)
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        m = cv2.getPerspectiveTransform(src, (src + d).astype(np.float32))
        img = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.1))
    img = img * rng.uniform(0.8, 1.15) + rng.normal(0, rng.uniform(1, 6), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rgb`` after a JPEG round trip at a random quality (``JPEG_QUALITY``)."""
    q = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise OSError("cv2 could not encode a JPEG")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def render(hung: list[tuple[int, int]], *, h: int, w: int, works, textures, rng: np.random.Generator) -> np.ndarray:
    """One uint8 RGB photograph of ``hung``, (work, culture) pairs, on a wall."""
    img = wall(h, w, textures, rng)
    k = len(hung)
    rows = 2 if k == 4 or (k == 3 and h > w) else 1  # four works, or three on a tall photograph: two rows
    cols = -(-k // rows)
    gap = min(h, w) * 0.04
    slot_w = (w * rng.uniform(0.8, 0.95) - gap * (cols - 1)) / cols
    slot_h = (h * (rng.uniform(0.75, 0.95) if k == 1 else rng.uniform(0.6, 0.85)) - gap * (rows - 1)) / rows
    x0 = (w - slot_w * cols - gap * (cols - 1)) / 2
    y0 = (h - slot_h * rows - gap * (rows - 1)) * rng.uniform(0.3, 0.6)
    for i, (work, culture) in enumerate(hung):
        frame, rendering = CULTURES[culture]
        rgb = works[work].rgb
        ph, pw = rgb.shape[:2]
        # Each photograph of a work frames it a little differently: a random 70-100% window of it.
        ch, cw = int(ph * rng.uniform(0.7, 1.0)), int(pw * rng.uniform(0.7, 1.0))
        y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        rgb = rgb[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            rgb = rgb[:, ::-1]  # a work and its mirror print carry the same labels
        ph, pw = rgb.shape[:2]
        pad = 1.3 if frame == "scroll" else 1.2
        s = min(slot_w / (pw * 1.2), slot_h / (ph * pad)) * rng.uniform(0.85, 1.0)
        art = cv2.resize(rgb, (max(4, round(pw * s)), max(4, round(ph * s))), interpolation=cv2.INTER_AREA)
        framed = add_frame(render_work(art, rendering, rng), frame, rng)
        fh, fw = framed.shape[:2]
        r, c = divmod(i, cols)
        top = int(y0 + r * (slot_h + gap) + (slot_h - fh) * rng.uniform(0.3, 0.7))
        left = int(x0 + c * (slot_w + gap) + (slot_w - fw) / 2 + rng.uniform(-0.05, 0.05) * slot_w)
        _hang(img, framed, top, left)
    return jpeg(camera(img, rng), rng)


class _LabelModel:
    """Which works hang in which cultures: Zipf popularity, cultures preferring works, series from one photograph."""

    def __init__(self, n_culture: int, work_tags: list[list[int]], rng: np.random.Generator):
        self.n_culture = n_culture
        self.work_tags = work_tags
        n_work = len(work_tags)
        w = 1.0 / np.arange(1, n_culture + 1) ** CULTURE_EXPONENT
        self.culture_w = (w / w.sum())[rng.permutation(n_culture)]
        w = 1.0 / np.arange(1, n_work + 1) ** WORK_EXPONENT
        self.work_w = (w / w.sum())[rng.permutation(n_work)]
        self.boost = np.ones((n_culture, n_work))
        for c in range(n_culture):
            self.boost[c, rng.choice(n_work, size=min(PREFERRED_WORKS, n_work), replace=False)] = PREFERENCE_BOOST
        self.source = [r.source for r, _ in WORKS[:n_work]]
        n_tag = 1 + max((t for tags in work_tags for t in tags), default=0)
        tag_w = np.zeros(n_tag)
        for wk, tags in enumerate(work_tags):
            tag_w[tags] += self.work_w[wk]
        self.marginal = np.concatenate([self.culture_w, tag_w])
        self.marginal /= self.marginal.sum()

    def sample(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        """(work, culture) of each work on one wall."""
        room = int(rng.choice(self.n_culture, p=self.culture_w))
        k = int(rng.choice(list(WORKS_PER_IMAGE), p=list(WORKS_PER_IMAGE.values())))
        hung: list[tuple[int, int]] = []
        for i in range(k):
            culture = (
                room if i == 0 or rng.random() < SAME_CULTURE else int(rng.choice(self.n_culture, p=self.culture_w))
            )
            w = self.work_w * self.boost[culture]
            w[[wk for wk, _ in hung]] = 0.0
            if i > 0 and rng.random() < SERIES:  # the series: another work from the first one's photograph
                series = w * np.array([s == self.source[hung[0][0]] for s in self.source], dtype=float)
                w = series if series.sum() > 0 else w
            if w.sum() <= 0:
                break
            hung.append((int(rng.choice(len(w), p=w / w.sum())), culture))
        return hung


def generate_gallery(
    out: Path, *, n_train: int, n_test: int, groups: Sequence[tuple[str, int]], min_side: int, max_side: int, seed: int
) -> Path:
    """Writes a gallery-mode competition to ``out`` (see the module docstring); the arguments are
    ``synth.generate_competition``'s, ``groups`` at most ``GALLERY_GROUPS`` (fewer tags: works whose tags all
    fall outside are not hung). Besides the iMet files it writes ``solution.csv`` and ``train_clean.csv``.

    Raises:
        ValueError: ``groups`` other than culture and tag within ``GALLERY_GROUPS``.
        FileNotFoundError: a source image is missing from its package.
    """
    n_culture, n_tag = check_groups(groups, (len(CULTURES), len(TAGS)), "gallery")
    if min_side > max_side:
        raise ValueError(f"min_side {min_side} is above max_side {max_side}")
    rng = np.random.default_rng(seed)
    index = {t: i for i, t in enumerate(TAGS[:n_tag])}
    kept = [i for i, (_, tags) in enumerate(WORKS) if any(t in index for t in tags)]
    works = load_regions([WORKS[i][0] for i in kept], max_side=WORK_SIDE)
    work_tags = [[index[t] for t in WORKS[i][1] if t in index] for i in kept]
    textures = load_regions(TEXTURES, max_side=160)
    out = make_folders(out)
    write_labels(out, gallery_label_names(groups))
    model = _LabelModel(n_culture, work_tags, rng)
    used: set = set()

    def make(split: str, n: int) -> dict[str, list]:
        rows: dict[str, list] = {"id": [], "clean": [], "noisy": []}
        for _ in range(n):
            img_id = random_id(rng, used)
            hung = model.sample(rng)
            h, w = gallery_shape(rng, min_side=min_side, max_side=max_side)
            write_png(out / split / f"{img_id}.png", render(hung, h=h, w=w, works=works, textures=textures, rng=rng))
            cultures = list(dict.fromkeys(c for _, c in hung))
            tags = sorted({n_culture + t for wk, _ in hung for t in work_tags[wk]})
            rows["id"].append(img_id)
            rows["clean"].append(sorted(cultures) + tags)
            if split == "train":
                # The main work's culture is missed less often than the others'.
                seen = [c for i, c in enumerate(cultures) if i == 0 or rng.random() >= DROP_SECOND_CULTURE]
                rows["noisy"].append(
                    noisy_labels(
                        sorted(seen) + tags,
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
