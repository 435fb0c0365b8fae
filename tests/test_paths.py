"""Both Kaggle mount layouts, and a clear error listing what is there."""

import pytest

from imet_utils.paths import KagglePaths, find_competition_dir, find_kernel_output


def _mk(root, rel, marker):
    d = root / "input" / rel
    d.mkdir(parents=True)
    (d / marker).write_text("x")
    return d


@pytest.mark.parametrize("rel", ["imet-2019-fgvc6", "competitions/imet-2019-fgvc6"])
def test_competition_under_either_layout(tmp_path, rel):
    d = _mk(tmp_path, rel, "labels.csv")
    assert find_competition_dir(KagglePaths(tmp_path, on_kaggle=False), "imet-2019-fgvc6") == d


@pytest.mark.parametrize(
    "rel,slug",
    [
        ("imet-2019-train", "me/imet-2019-train"),
        ("notebooks/me/imet-2019-train", "me/imet-2019-train"),
        ("notebooks/me/imet-2019-train", "imet-2019-train"),
    ],
)
def test_kernel_output_under_either_layout(tmp_path, rel, slug):
    d = _mk(tmp_path, rel, "config.json")
    assert find_kernel_output(KagglePaths(tmp_path, on_kaggle=False), slug, "config.json") == d


def test_missing_input_names_what_was_tried_and_what_is_there(tmp_path):
    _mk(tmp_path, "something-else", "x.txt")
    with pytest.raises(
        FileNotFoundError,
        match=r"competition 'imet-2019-fgvc6' not found: no labels.csv in .*"
        r"Add the competition as a data source.*holds: something-else",
    ):
        find_competition_dir(KagglePaths(tmp_path, on_kaggle=False), "imet-2019-fgvc6")
