"""Real photographs that installed packages ship, cut into object patches and textures for the objects and gallery
modes: scikit-image's ``skimage/data`` (the files inside its wheel, never its pooch downloads), scikit-learn's
``datasets/images`` and matplotlib's ``mpl-data/sample_data``. Nothing is downloaded.

The files are found by path (``importlib.util.find_spec``), so neither package is imported; scikit-image comes
with ``efficientnet`` (requirements.txt), scikit-learn and matplotlib are requirements themselves. A missing file
raises ``FileNotFoundError`` naming it and its package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Where each source image lives: (package, path inside it).
SOURCE_FILES = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "hubble": ("skimage", "data/hubble_deep_field.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "camera": ("skimage", "data/camera.png"),
    "coins": ("skimage", "data/coins.png"),
    "horse": ("skimage", "data/horse.png"),
    "logo": ("skimage", "data/logo.png"),
    "color": ("skimage", "data/color.png"),
    "brick": ("skimage", "data/brick.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "moon": ("skimage", "data/moon.png"),
    "page": ("skimage", "data/page.png"),
    "text": ("skimage", "data/text.png"),
    "cell": ("skimage", "data/cell.png"),
    "clock": ("skimage", "data/clock_motion.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


@dataclass(frozen=True)
class Region:
    """A named part of a source image: ``box`` is (top, bottom, left, right) as fractions of its height and width;
    ``mask``: how it is cut out, ``ellipse`` (soft oval), ``rect`` (soft-edged rectangle) or ``dark`` (the
    source's dark pixels: the horse's silhouette)."""

    name: str
    source: str
    box: tuple[float, float, float, float]
    mask: str = "ellipse"


# The objects: every region a different thing, none overlapping another of the same source (chosen by eye on
# each image with a 10% grid).
OBJECTS = (
    Region("astronaut face", "astronaut", (0.04, 0.36, 0.28, 0.60)),
    Region("flag", "astronaut", (0.0, 0.70, 0.0, 0.16), "rect"),
    Region("space shuttle", "astronaut", (0.0, 0.56, 0.68, 0.92)),
    Region("space helmet", "astronaut", (0.64, 1.0, 0.52, 1.0)),
    Region("mission patch", "astronaut", (0.66, 0.86, 0.22, 0.42)),
    Region("cat eye", "chelsea", (0.25, 0.56, 0.27, 0.48)),
    Region("cat nose", "chelsea", (0.62, 0.96, 0.45, 0.73)),
    Region("tabby fur", "chelsea", (0.0, 0.26, 0.30, 0.62), "rect"),
    Region("coffee cup", "coffee", (0.02, 0.56, 0.26, 0.71)),
    Region("spoon", "coffee", (0.56, 0.86, 0.50, 0.71)),
    Region("saucer", "coffee", (0.58, 1.0, 0.04, 0.45)),
    Region("rocket", "rocket", (0.30, 1.0, 0.44, 0.58), "rect"),
    Region("launch tower", "rocket", (0.0, 1.0, 0.0, 0.16), "rect"),
    Region("floodlights", "rocket", (0.84, 1.0, 0.16, 0.44)),
    Region("pagoda", "china", (0.05, 0.90, 0.10, 0.55)),
    Region("pine trees", "china", (0.30, 0.96, 0.85, 1.0), "rect"),
    Region("lake", "china", (0.42, 0.66, 0.58, 0.85), "rect"),
    Region("shrubs", "china", (0.74, 1.0, 0.52, 0.84)),
    Region("dahlia", "flower", (0.14, 0.86, 0.25, 0.71)),
    Region("flower bud", "flower", (0.84, 1.0, 0.42, 0.72)),
    Region("foliage", "flower", (0.0, 0.40, 0.72, 1.0), "rect"),
    Region("portrait face", "hopper", (0.20, 0.52, 0.28, 0.75)),
    Region("officer cap", "hopper", (0.0, 0.27, 0.30, 0.75)),
    Region("stars", "hopper", (0.0, 0.55, 0.0, 0.22), "rect"),
    Region("medals", "hopper", (0.82, 0.92, 0.60, 0.90), "rect"),
    Region("necktie", "hopper", (0.75, 0.98, 0.38, 0.62)),
    Region("motorcycle", "motorcycle", (0.30, 0.95, 0.15, 0.95)),
    Region("wheel", "motorcycle", (0.55, 0.95, 0.70, 0.96)),
    Region("engine", "motorcycle", (0.50, 0.78, 0.45, 0.66)),
    Region("storage shelves", "motorcycle", (0.0, 0.45, 0.45, 1.0), "rect"),
    Region("galaxy", "hubble", (0.45, 0.62, 0.66, 0.80)),
    Region("gland", "ihc", (0.58, 1.0, 0.48, 0.80)),
    Region("tissue", "ihc", (0.0, 0.50, 0.0, 0.50), "rect"),
    Region("optic disc", "retina", (0.35, 0.62, 0.0, 0.25)),
    Region("fundus", "retina", (0.0, 1.0, 0.0, 1.0)),
    Region("cameraman", "camera", (0.12, 0.42, 0.32, 0.52)),
    Region("cine camera", "camera", (0.22, 0.42, 0.48, 0.66)),
    Region("tripod", "camera", (0.50, 1.0, 0.45, 0.80)),
    Region("distant tower", "camera", (0.20, 0.50, 0.78, 0.92), "rect"),
    Region("large coin", "coins", (0.02, 0.22, 0.78, 0.96)),
    Region("coin head", "coins", (0.52, 0.72, 0.48, 0.64)),
    Region("small coin", "coins", (0.30, 0.45, 0.38, 0.50)),
    Region("horse", "horse", (0.0, 1.0, 0.0, 1.0), "dark"),
    Region("snake", "logo", (0.10, 0.55, 0.30, 0.85)),
    Region("colour wheel", "color", (0.0, 1.0, 0.0, 1.0)),
)

# Unlabelled backgrounds: textures and parts of the photographs that no object region covers.
TEXTURES = (
    Region("brick", "brick", (0.0, 1.0, 0.0, 1.0), "rect"),
    Region("grass", "grass", (0.0, 1.0, 0.0, 1.0), "rect"),
    Region("gravel", "gravel", (0.0, 1.0, 0.0, 1.0), "rect"),
    Region("moon", "moon", (0.0, 1.0, 0.0, 1.0), "rect"),
    Region("page", "page", (0.0, 1.0, 0.0, 1.0), "rect"),
    Region("wood", "coffee", (0.05, 0.55, 0.74, 1.0), "rect"),
    Region("night sky", "hubble", (0.0, 0.35, 0.0, 1.0), "rect"),
    Region("sky", "china", (0.0, 0.28, 0.62, 1.0), "rect"),
    Region("dusk", "rocket", (0.0, 0.30, 0.20, 0.80), "rect"),
    Region("lawn", "camera", (0.75, 1.0, 0.82, 1.0), "rect"),
)

# Unlabelled clutter pasted like objects: things no label names.
DISTRACTORS = (
    Region("cells", "cell", (0.1, 0.9, 0.1, 0.9), "ellipse"),
    Region("clock", "clock", (0.0, 1.0, 0.0, 1.0), "ellipse"),
    Region("text", "text", (0.0, 1.0, 0.0, 1.0), "rect"),
    Region("gravel stone", "gravel", (0.3, 0.6, 0.3, 0.6), "ellipse"),
    Region("brick patch", "brick", (0.2, 0.6, 0.2, 0.6), "rect"),
)


def source_path(name: str) -> Path:
    """The file of source image ``name`` inside its installed package.

    Raises:
        FileNotFoundError: the package isn't installed or lacks the file.
    """
    package, rel = SOURCE_FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"source image {name!r} needs the package {package!r} ({rel}); install requirements.txt"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise FileNotFoundError(f"source image {name!r}: {path} is missing from the installed {package!r}")
    return path


def load_source(name: str) -> np.ndarray:
    """Source image ``name`` as uint8 RGB (grey images repeated over three channels)."""
    with Image.open(source_path(name)) as im:
        return np.asarray(im.convert("RGB"))


@dataclass(frozen=True)
class Patch:
    """A cut-out region: ``rgb`` float32 (h, w, 3) in 0..255, ``alpha`` float32 (h, w) in 0..1."""

    name: str
    rgb: np.ndarray
    alpha: np.ndarray


def _mask(kind: str, rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if kind == "dark":
        grey = rgb.mean(axis=2)
        return cv2.GaussianBlur((grey < 100).astype(np.float32), (3, 3), 0)
    if kind == "rect":
        alpha = np.zeros((h, w), np.float32)
        e = max(1, min(h, w) // 20)
        alpha[e:-e, e:-e] = 1.0
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = ((yy + 0.5) / h * 2 - 1) ** 2 + ((xx + 0.5) / w * 2 - 1) ** 2
        alpha = np.clip((1.0 - d) / 0.15, 0.0, 1.0).astype(np.float32)
    k = max(3, (min(h, w) // 12) | 1)
    return cv2.GaussianBlur(alpha, (k, k), 0)


def cut(region: Region, images: dict[str, np.ndarray], *, max_side: int) -> Patch:
    """``region`` cut from its (loaded) source image, resized so its longer side is at most ``max_side``."""
    img = images[region.source]
    h, w = img.shape[:2]
    t, b, left, r = region.box
    crop = img[int(t * h) : max(int(b * h), int(t * h) + 2), int(left * w) : max(int(r * w), int(left * w) + 2)]
    ch, cw = crop.shape[:2]
    scale = min(1.0, max_side / max(ch, cw))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(2, round(cw * scale)), max(2, round(ch * scale))), interpolation=cv2.INTER_AREA)
    rgb = crop.astype(np.float32)
    return Patch(region.name, rgb, _mask(region.mask, rgb))


def load_regions(regions, *, max_side: int) -> list[Patch]:
    """Every region of ``regions`` cut from its source, each source read once."""
    images = {name: load_source(name) for name in sorted({r.source for r in regions})}
    return [cut(r, images, max_side=max_side) for r in regions]
