"""Robust image decoding and the resized-JPEG cache the input pipeline reads.

Real iMet data holds grayscale, alpha, 16-bit and palette PNGs, slivers and very
long images. ``decode_image`` turns each into 3-channel RGB uint8 or raises
``BadImage`` naming the file. The cache converts every image once to a JPEG whose
short side is the training crop plus a margin, so every epoch, fold and TTA pass
decodes small JPEGs instead of large PNGs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from imet_utils.console import progress

IMAGE_SUFFIX = ".png"
CACHE_SUFFIX = ".jpg"
CACHE_JPEG_QUALITY = 95


class BadImage(ValueError):
    """An image file that can't be used; the message names the file and why."""


def decode_image(path: Path) -> np.ndarray:
    """Reads any PNG/JPEG as RGB uint8 (H, W, 3).

    Handles grayscale, grayscale+alpha, RGBA (composited on white), 16-bit and
    palette images.

    Raises:
        BadImage: missing, empty, truncated or not an image.
    """
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except (FileNotFoundError, IsADirectoryError):
        raise BadImage(f"{path}: file not found") from None
    if data.size == 0:
        raise BadImage(f"{path}: empty file")
    return decode_bytes(data, name=str(path))


def decode_bytes(data: np.ndarray, name: str = "image") -> np.ndarray:
    """Decodes encoded image bytes (uint8 array) to RGB uint8; see ``decode_image``."""
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None or img.size == 0:
        raise BadImage(f"{name}: not a decodable image (truncated or not an image)")
    return to_rgb8(img)


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """cv2's IMREAD_UNCHANGED output (gray, gray+alpha, BGR, BGRA; 8 or 16 bit) -> RGB uint8."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        gray, alpha = img[:, :, 0].astype(np.float32), img[:, :, 1:2].astype(np.float32) / 255.0
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
        return (rgb * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    if channels == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        bgr = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return cv2.cvtColor(bgr.round().astype(np.uint8), cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)


def scale_up_to(img: np.ndarray, size: int) -> np.ndarray:
    """Scales an image whose short side is below ``size`` up to it (aspect kept), so a ``size`` crop never fails."""
    h, w = img.shape[:2]
    if min(h, w) >= size:
        return img
    s = size / min(h, w)
    return cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_LINEAR)


def resize_short_side(img: np.ndarray, short_side: int, *, max_aspect: float) -> np.ndarray:
    """Scales so the short side is ``short_side``; caps the long side at ``max_aspect`` times it."""
    h, w = img.shape[:2]
    scale = short_side / min(h, w)
    long_cap = int(round(short_side * max_aspect))
    nh = short_side if h <= w else min(long_cap, max(short_side, int(round(h * scale))))
    nw = short_side if w < h else min(long_cap, max(short_side, int(round(w * scale))))
    if (nh, nw) == (h, w):
        return img
    interp = cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR
    return cv2.resize(img, (nw, nh), interpolation=interp)


def cache_short_side(image_size: int, cache_scale: float) -> int:
    return max(image_size, int(round(image_size * cache_scale)))


@dataclasses.dataclass
class CachedSplit:
    """Cached JPEG paths for a list of ids; ``bad`` maps unusable ids to the reason."""

    ids: list[str]
    paths: list[str | None]
    bad: dict[str, str]

    def good_mask(self) -> np.ndarray:
        return np.array([p is not None for p in self.paths], dtype=bool)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _cache_one(src: Path, dst: Path, short_side: int, max_aspect: float) -> str | None:
    if dst.is_file():
        return None
    img = resize_short_side(decode_image(src), short_side, max_aspect=max_aspect)
    ok, buf = cv2.imencode(
        CACHE_SUFFIX, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, CACHE_JPEG_QUALITY]
    )
    if not ok:
        raise BadImage(f"{src}: could not be re-encoded")
    _write_atomic(dst, buf.tobytes())
    return None


def cache_dir_for(root: Path, split: str, *, short_side: int, max_aspect: float) -> Path:
    """The cache folder; its name holds the sizes, so a new size never reads stale files."""
    return Path(root) / f"jpeg_s{short_side}_a{max_aspect:g}" / split


def build_cache(
    ids: Sequence[str],
    src_dir: Path,
    cache_root: Path,
    *,
    split: str,
    short_side: int,
    max_aspect: float,
    workers: int = 0,
) -> CachedSplit:
    """Converts ``<src_dir>/<id>.png`` to cached JPEGs once; later calls reuse them.

    Args:
        ids: image ids.
        src_dir: folder of the source PNGs.
        cache_root: scratch folder for caches (not saved as output).
        split: "train" or "test", a sub-folder of the cache.
        short_side: cached short side in pixels.
        max_aspect: cap on long side / short side.
        workers: threads; 0 uses every core.

    Returns:
        The cached paths, with ``None`` and a reason for each bad image.
    """
    out = cache_dir_for(cache_root, split, short_side=short_side, max_aspect=max_aspect)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    ids = [str(i) for i in ids]
    dsts = [out / f"{i}{CACHE_SUFFIX}" for i in ids]

    def job(k: int) -> str | None:
        try:
            _cache_one(Path(src_dir) / f"{ids[k]}{IMAGE_SUFFIX}", dsts[k], short_side, max_aspect)
            return None
        except BadImage as e:
            return str(e)
        except cv2.error as e:  # a decoder error on a malformed file
            return f"{Path(src_dir) / (ids[k] + IMAGE_SUFFIX)}: {str(e).strip().splitlines()[-1]}"

    todo = [k for k, d in enumerate(dsts) if not d.is_file()]
    errors: dict[int, str] = {}
    if todo:
        with ThreadPoolExecutor(workers) as pool:
            for k, err in zip(todo, progress(pool.map(job, todo), total=len(todo), desc=f"cache {split}")):
                if err:
                    errors[k] = err
    paths = [None if k in errors else str(d) for k, d in enumerate(dsts)]
    return CachedSplit(ids=ids, paths=paths, bad={ids[k]: e for k, e in errors.items()})


def cache_for_model(
    ids: Sequence[str], src_dir: Path, *, split: str, model_config, root: Path, workers: int = 0
) -> CachedSplit:
    """The kernels' one way to cache a split for a trained model's input: its ``image_size``, ``cache_scale`` and
    ``max_aspect`` (a TrainConfig) decide the cached size, under ``root`` (a scratch folder, or ``cache_dir``)."""
    return build_cache(
        ids,
        src_dir,
        Path(root),
        split=split,
        short_side=cache_short_side(model_config.image_size, model_config.cache_scale),
        max_aspect=model_config.max_aspect,
        workers=workers,
    )
