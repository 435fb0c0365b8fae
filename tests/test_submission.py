import numpy as np
import pandas as pd
import pytest

from imet_utils.ensemble import fallback_labels, plan_prediction
from imet_utils.submission import SubmissionError, format_labels, validate_submission, write_submission

IDS = ["0001", "abc", "123"]


def _sub(ids=IDS, labels=("0 1", "2", "3")):
    return pd.DataFrame({"id": list(ids), "attribute_ids": list(labels)})


@pytest.mark.parametrize(
    "sub,message",
    [
        (_sub(ids=["0001", "abc"], labels=["0", "1"]), r"2 rows, sample_submission 3; missing e.g. \['123'\]"),
        (_sub(ids=["abc", "0001", "123"]), r"row 1: id 'abc' where sample_submission has '0001'"),
        (_sub(labels=["0 1", "", "3"]), r"row 2: id 'abc' has no label"),
        (_sub(labels=["0 1", "2", "9"]), r"row 3: id '123' has label '9' outside 0..4"),
        (_sub(labels=["0 x", "2", "3"]), r"row 1: id '0001' has label 'x'"),
    ],
)
def test_validation_names_the_row_and_id(sub, message):
    with pytest.raises(SubmissionError, match=message):
        validate_submission(sub, IDS, 5)


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "submission.csv"
    write_submission(_sub(), path, sample_ids=IDS, n_classes=5)
    before = path.read_text()
    assert pd.read_csv(path, dtype=str)["id"].tolist() == IDS

    def crash(self, target, **kw):
        with open(target, "w") as f:
            f.write("id,attribute_ids\n0001,")  # half a file, then the process dies
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)
    with pytest.raises(OSError):
        write_submission(_sub(labels=("4", "4", "4")), path, sample_ids=IDS, n_classes=5)
    assert path.read_text() == before


def test_format_and_fallback():
    assert format_labels(np.array([[0, 1, 0, 1], [1, 0, 0, 0]])) == ["1 3", "0"]
    assert fallback_labels(np.array([0.1, 0.5, 0.3, 0.05]), 2).tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(
    "left,expected",
    [
        (1e9, (5, 4)),  # everything fits
        (5 * 2 * 1000 * 0.01 + 1, (5, 2)),  # TTA dropped first
        (3 * 1 * 1000 * 0.01 + 1, (3, 1)),  # then models
        (0.0, (1, 1)),  # one model, one view always runs
    ],
)
def test_plan_prediction_drops_views_then_models(left, expected):
    assert plan_prediction(n_images=1000, n_models=5, tta=4, seconds_per_view=0.01, seconds_left=left) == expected
