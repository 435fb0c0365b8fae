"""The tf.data pipelines: uint8 all the way, small images scaled up, ids kept in order."""

import cv2
import numpy as np
import pytest

from imet_utils.pipeline import train_dataset, views_dataset


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_train_batches_are_uint8_crops_even_from_images_smaller_than_the_crop(tmp_path, suffix):
    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(20, 30), (64, 200), (300, 8), (48, 48)]):
        path = tmp_path / f"{i}{suffix}"
        cv2.imwrite(str(path), rng.integers(0, 255, shape + (3,), dtype=np.uint8))
        paths.append(str(path))
    targets = np.eye(4, dtype=np.uint8)
    x, y = next(iter(train_dataset(paths, targets, size=48, batch_size=4, seed=0)))
    assert x.dtype.name == "uint8" and tuple(x.shape) == (4, 48, 48, 3)
    assert y.dtype.name == "uint8" and sorted(y.numpy().argmax(1).tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_train_crops_are_random_windows_mirrored_half_the_time(tmp_path, suffix):
    """One crop-and-flip for both decoders: every crop is a window of the image, or its mirror, and both the
    windows and the orientation vary."""
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 1] = np.arange(60)[None, :] * 4  # the column, in green (smooth: JPEG keeps it within a few levels)
    img[:, :, 2] = np.arange(40)[:, None] * 6  # the row, in red (cv2 writes BGR)
    path = tmp_path / f"0{suffix}"
    cv2.imwrite(str(path), img)
    ds = train_dataset([str(path)] * 64, np.zeros((64, 1), np.uint8), size=32, batch_size=64, seed=0)
    crops, _ = next(iter(ds))
    cols = np.round(crops.numpy()[:, 16, :, 1].astype(float) / 4)  # (crops, 32): the source column of each pixel
    rows = np.round(crops.numpy()[:, :, 16, 0].astype(float) / 6)
    step = (cols[:, -1] - cols[:, 0]) / 31  # +1: as in the image, -1: mirrored (JPEG blurs single pixels)
    assert (np.abs(np.abs(step) - 1) < 0.1).all() and (step > 0).any() and (step < 0).any()
    assert (np.abs((rows[:, -1] - rows[:, 0]) / 31 - 1) < 0.1).all()  # never flipped upside down
    if suffix == ".png":  # lossless: each pixel is its source's
        assert (np.abs(np.diff(cols, axis=1)) == 1).all() and (np.diff(rows, axis=1) == 1).all()
    assert len(set(cols.min(axis=1))) > 3 and len(set(rows[:, 0])) > 2  # the window moves


def test_views_keep_the_order_of_ids_and_flip_is_a_mirror(tmp_path):
    paths = []
    for i in range(5):
        img = np.zeros((40, 60, 3), np.uint8)
        img[:, : 10 + i] = 255  # a bright left band whose width encodes the index
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), img)
        paths.append(str(path))
    batches = list(views_dataset(paths, size=40, batch_size=2, views=("center", "center_flip")))
    views = np.concatenate([b.numpy() for b in batches])
    assert views.shape == (5, 2, 40, 40, 3) and views.dtype == np.uint8
    assert np.array_equal(views[:, 1], views[:, 0, :, ::-1])
    widths = [(v[0, 0, :, 0] == 255).sum() for v in views]
    assert widths == sorted(widths)  # in the order given
    with pytest.raises(ValueError, match="unknown TTA view"):
        views_dataset(paths, size=40, batch_size=2, views=("zoom",))


@pytest.mark.parametrize("preset", ["seed", "ours"])
def test_albumentations_presets_in_the_pipeline_give_uint8_crops_even_from_small_images(tmp_path, preset):
    from imet_utils.augment import augment_image, train_transforms

    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(20, 30), (300, 8), (60, 90)]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, shape + (3,), dtype=np.uint8))
        paths.append(str(path))
    aug = train_transforms(48, preset)
    x, _ = next(
        iter(
            train_dataset(
                paths,
                np.eye(3, dtype=np.uint8),
                size=48,
                batch_size=3,
                seed=0,
                transform=lambda img: augment_image(aug, img, 48),
            )
        )
    )
    assert x.dtype.name == "uint8" and tuple(x.shape) == (3, 48, 48, 3)


def test_a_fold_trains_on_full_batches_only(tmp_path):
    """Issue 23, finding 2: 9 images in batches of 4 left a last batch of one image, which splits [1, 0] over two
    replicas (BatchNorm on one image, or none, gives NaN or crashes); training drops it."""
    from imet_utils.config import TrainConfig
    from imet_utils.training import _train_data

    rng = np.random.default_rng(0)
    paths = []
    for i in range(9):
        path = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        paths.append(str(path))
    config = TrainConfig(model="tiny-cnn", weights=None, image_size=32, augment="none")
    batches = _train_data(config, 0, np.asarray(paths), np.eye(9), batch=4, transform=None)
    for _epoch in range(2):  # each epoch's shuffle leaves another image out
        sizes = [int(x.shape[0]) for x, _ in batches]
        assert sizes == [4, 4], sizes
