"""The saved OOF records the views it averages, and the submit kernel warns when they are not the test's."""

import numpy as np
import pytest

from imet_utils.config import TTA_VIEWS, ConfigError, TrainConfig, from_dict
from imet_utils.ensemble import TrainOutput, oof_view_mismatches
from imet_utils.outputs import MODEL_DIR, OOF_FILE, fold_dir, oof_views, read_oof, save_oof

CONFIG = TrainConfig(model="tiny-cnn", weights=None, n_folds=2, folds=(0, 1))


def _output(root, views_per_fold):
    for k, views in enumerate(views_per_fold):
        d = fold_dir(root, k)
        (d / MODEL_DIR).mkdir(parents=True)
        ids, probs = [f"{k}a", f"{k}b"], np.full((2, 3), 0.1 * (k + 1), np.float32)
        if views is None:  # a file written before the OOF recorded its views
            np.savez_compressed(d / OOF_FILE, ids=np.asarray(ids), probs=probs)
        else:
            save_oof(d, ids, probs, views)
    return TrainOutput(root=root, config=CONFIG, folds=list(range(len(views_per_fold))))


def test_saved_views_are_read_back_and_old_files_count_as_centre(tmp_path):
    out = _output(tmp_path, [TTA_VIEWS[:2], None])
    assert oof_views(out.root, 2) == [("center", "center_flip"), ("center",)]
    assert sorted(read_oof(out.root, 2)["id"]) == ["0a", "0b", "1a", "1b"]


def test_matching_views_give_no_warning(tmp_path):
    out = _output(tmp_path, [TTA_VIEWS[:2], TTA_VIEWS[:2]])
    assert oof_view_mismatches([[out]], TTA_VIEWS[:2]) == []


@pytest.mark.parametrize("test_views", [TTA_VIEWS[:1], TTA_VIEWS[:4]])
def test_other_views_are_named_with_the_fix(tmp_path, test_views):
    out = _output(tmp_path, [TTA_VIEWS[:2], None])
    (message,) = oof_view_mismatches([[out]], test_views)
    assert str(tmp_path) in message and "center_flip" in message and f"oof_tta={len(test_views)}" in message


@pytest.mark.parametrize("bad", [0, len(TTA_VIEWS) + 1])
def test_oof_tta_out_of_range_is_refused(bad):
    with pytest.raises(ConfigError, match="oof_tta"):
        from_dict(TrainConfig, {"oof_tta": bad})
