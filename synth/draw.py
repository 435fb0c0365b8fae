"""Pixels: colours, shapes and PNG files, for every generated image (toy, realistic and bench/scale.py's).

``paint_shape`` takes its colour as RGB and draws it in cv2's channel order (BGR). The toy mode draws into a
BGR image and the realistic mode into an RGB one, so one of them has its shapes', the other its backgrounds'
channels swapped; both are kept so that regenerated data stay byte-identical, and no model cares.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np


def hsv_rgb(hue: float, sat: float, val: float) -> np.ndarray:
    """The RGB colour (floats in 0..255) of ``hue`` (taken modulo 1), ``sat`` and ``val`` (clipped to 0..1)."""
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, min(max(sat, 0.0), 1.0), min(max(val, 0.0), 1.0))) * 255


def hsv_rgb_int(hue: float, sat: float, val: float) -> tuple[int, int, int]:
    """``hsv_rgb`` truncated to integers."""
    return tuple(int(c) for c in hsv_rgb(hue, sat, val))


def palette(n: int, *, offset: float, sat: float, val: float) -> list[tuple[int, int, int]]:
    """``n`` integer RGB colours of hues evenly spaced from ``offset``."""
    return [hsv_rgb_int(offset + i / n, sat, val) for i in range(n)]


def paint_shape(img: np.ndarray, shape: str, cx: int, cy: int, r: int, color: tuple, *, min_bar: int) -> None:
    """Draws one filled ``shape`` (circle, square, triangle, diamond, ring; else a cross, its bars at least
    ``min_bar`` thick) of radius ``r`` at (cx, cy) in ``color`` (RGB, drawn in cv2's BGR order)."""
    c = color[::-1]
    if shape == "circle":
        cv2.circle(img, (cx, cy), r, c, -1)
    elif shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), c, -1)
    elif shape in ("triangle", "diamond"):
        pts = (
            [[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]]
            if shape == "triangle"
            else [[cx, cy - r], [cx - r, cy], [cx, cy + r], [cx + r, cy]]
        )
        cv2.fillPoly(img, [np.array(pts, dtype=np.int32)], c)
    elif shape == "ring":
        cv2.circle(img, (cx, cy), r, c, max(2, r // 3))
    else:
        t = max(min_bar, r // 3)
        cv2.rectangle(img, (cx - r, cy - t), (cx + r, cy + t), c, -1)
        cv2.rectangle(img, (cx - t, cy - r), (cx + t, cy + r), c, -1)


def paint_block(img: np.ndarray, cx: int, cy: int, r: int, color: tuple) -> None:
    """Fills the 2r x 2r square whose top-left corner is (cx - r, cy - r) with ``color``, in ``img``'s channel
    order (``paint_shape``'s square is 2r + 1 px wide)."""
    img[cy - r : cy + r, cx - r : cx + r] = color


def write_png(path: Path | str, rgb: np.ndarray) -> None:
    """Writes an RGB uint8 image as a PNG; raises OSError if cv2 can't."""
    if not cv2.imwrite(str(path), rgb[..., ::-1]):
        raise OSError(f"could not write {path}")
