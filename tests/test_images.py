"""Decoding odd PNGs, and the JPEG cache."""

import os
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from imet_utils.images import BadImage, build_cache, cache_dir_for, decode_image, resize_short_side


def _save(path, mode, size=(40, 30)):
    w, h = size
    rng = np.random.default_rng(0)
    if mode == "L":
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L").save(path)
    elif mode == "LA":
        Image.fromarray(rng.integers(0, 255, (h, w, 2), dtype=np.uint8), "LA").save(path)
    elif mode == "RGBA":
        Image.fromarray(rng.integers(0, 255, (h, w, 4), dtype=np.uint8), "RGBA").save(path)
    elif mode == "P":
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB").convert("P").save(path)
    elif mode == "16bit":
        cv2.imwrite(str(path), rng.integers(0, 65535, (h, w, 3), dtype=np.uint16))
    elif mode == "16bit-gray":
        cv2.imwrite(str(path), rng.integers(0, 65535, (h, w), dtype=np.uint16))
    else:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB").save(path)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "16bit", "16bit-gray"])
def test_every_png_mode_becomes_rgb_uint8(tmp_path, mode):
    img = decode_image(_save(tmp_path / "x.png", mode))
    assert img.dtype == np.uint8 and img.shape == (30, 40, 3)


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    Image.fromarray(arr, "RGBA").save(tmp_path / "t.png")
    assert (decode_image(tmp_path / "t.png") == 255).all()


def test_sixteen_bit_keeps_its_range(tmp_path):
    cv2.imwrite(str(tmp_path / "w.png"), np.full((5, 5, 3), 65535, np.uint16))
    assert (decode_image(tmp_path / "w.png") == 255).all()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"this is not an image at all"), "not a decodable image"),
        (lambda p: p.write_bytes(_png_bytes()[:200]), "not a decodable image"),  # truncated
    ],
)
def test_bad_files_raise_badimage_naming_the_file(tmp_path, make, message):
    path = tmp_path / "abc123.png"
    make(path)
    with pytest.raises(BadImage, match=f"abc123.png: {message}"):
        decode_image(path)


def _png_bytes():
    ok, buf = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return buf.tobytes()


@pytest.mark.parametrize(
    "shape,expected",
    [
        ((300, 400), (100, 133)),
        ((1, 500), (100, 400)),  # a sliver: short side scaled up, long side capped at max_aspect
        ((10000, 300), (400, 100)),  # 10,000 px long
        ((50, 50), (100, 100)),  # smaller than the target: scaled up
    ],
)
def test_resize_short_side(shape, expected):
    img = np.zeros(shape + (3,), np.uint8)
    assert resize_short_side(img, 100, max_aspect=4.0).shape[:2] == expected


def test_cache_is_built_once_reused_and_keyed_by_size(tmp_path):
    src = tmp_path / "train"
    src.mkdir()
    ids = ["a1", "0123456789012", "b2"]
    for i in ids:
        _save(src / f"{i}.png", "RGB", size=(120, 90))
    (src / "bad.png").write_bytes(b"")
    first = build_cache(
        ids + ["bad", "missing"], src, tmp_path / "cache", split="train", short_side=64, max_aspect=4.0, workers=2
    )
    assert first.bad.keys() == {"bad", "missing"} and "empty file" in first.bad["bad"]
    assert first.good_mask().tolist() == [True, True, True, False, False]
    cached = first.paths[1]
    assert cached.endswith("0123456789012.jpg") and cv2.imread(cached).shape[:2] == (64, 85)
    stamp = os.stat(cached).st_mtime_ns
    time.sleep(0.01)
    again = build_cache(ids, src, tmp_path / "cache", split="train", short_side=64, max_aspect=4.0)
    assert again.paths == first.paths[:3] and os.stat(cached).st_mtime_ns == stamp  # reused, not rewritten
    other = build_cache(ids, src, tmp_path / "cache", split="train", short_side=80, max_aspect=4.0)
    assert other.paths[0] != first.paths[0]  # a new size never reads the old files
    assert cache_dir_for(tmp_path / "cache", "train", short_side=80, max_aspect=4.0).is_dir()
