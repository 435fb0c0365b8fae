"""Competition CSVs: clear errors naming file, line and value; ids always strings."""

import pytest

from imet_utils.data import CsvError, read_competition, read_labels, read_sample_submission, read_train


def _labels(tmp_path, ids=None, n=4):
    ids = ids if ids is not None else list(range(n))
    names = [f"culture::c{i}" if i < 2 else f"tag::t{i}" for i in range(len(ids))]
    path = tmp_path / "labels.csv"
    path.write_text("attribute_id,attribute_name\n" + "".join(f"{i},{n}\n" for i, n in zip(ids, names)))
    return path


def _train(tmp_path, body, header="id,attribute_ids", newline="\n"):
    path = tmp_path / "train.csv"
    path.write_bytes((header + newline + newline.join(body) + newline).encode())
    return path


def test_labels_give_classes_and_groups(tmp_path):
    labels = read_labels(_labels(tmp_path))
    assert labels.n_classes == 4 and labels.group_names == ("culture", "tag")
    assert labels.group_index()["tag"].tolist() == [2, 3]


@pytest.mark.parametrize(
    "ids,message",
    [
        ([0, 1, 3, 2], r"labels.csv:4: attribute_id '3'; ids must be 0..n-1 in order, expected 2"),
        ([1, 2, 3], r"labels.csv:2: attribute_id '1'"),
        (["0", "x"], r"labels.csv:3: attribute_id 'x'"),
    ],
)
def test_labels_ids_must_be_0_to_n_minus_1(tmp_path, ids, message):
    with pytest.raises(CsvError, match=message):
        read_labels(_labels(tmp_path, ids))


@pytest.mark.parametrize(
    "rows,message",
    [
        (["a,0", "b,1", "a,2"], r"train.csv:4: duplicate id 'a' \(first on line 2\)"),
        (["a,0", "b,0 7"], r"train.csv:3: id 'b' has attribute id 7, not in labels.csv \(0..3\)"),
        (["a,0", "b,"], r"train.csv:3: id 'b' has an empty attribute_ids list"),
        (["a,0 1.5"], r"train.csv:2: id 'a' has non-integer attribute id '1.5'"),
        (["a,0 x"], r"train.csv:2: id 'a' has non-integer attribute id 'x'"),
        (["a,-1"], r"train.csv:2: id 'a' has non-integer attribute id '-1'"),
    ],
)
def test_bad_train_rows_are_named(tmp_path, rows, message):
    with pytest.raises(CsvError, match=message):
        read_train(_train(tmp_path, rows), 4)


def test_digit_ids_crlf_and_extra_columns_are_accepted(tmp_path):
    path = _train(
        tmp_path, ["0123456789012,0 3,x", "1e5,1,y", "00ab,2 2,z"], header="id,attribute_ids,note", newline="\r\n"
    )
    df = read_train(path, 4)
    assert df["id"].tolist() == ["0123456789012", "1e5", "00ab"]  # leading zero kept, '1e5' not a float
    assert df["labels"].tolist() == [[0, 3], [1], [2]]


def test_sample_submission_ids_are_strings_and_unique(tmp_path):
    path = tmp_path / "sample_submission.csv"
    path.write_text("id,attribute_ids\n000123,0 1 2\n123,0 1 2\n")
    assert read_sample_submission(path)["id"].tolist() == ["000123", "123"]
    path.write_text("id,attribute_ids\n000123,0\n000123,1\n")
    with pytest.raises(CsvError, match=r"sample_submission.csv:3: duplicate id '000123'"):
        read_sample_submission(path)


def test_missing_file_and_column_are_named(tmp_path):
    with pytest.raises(CsvError, match=r"train.csv: file not found"):
        read_train(tmp_path / "train.csv", 3)
    with pytest.raises(CsvError, match=r"missing column\(s\) \['attribute_ids'\]"):
        read_train(_train(tmp_path, ["a"], header="id"), 3)


def test_generated_competition_reads_back(tiny_competition):
    comp = read_competition(tiny_competition)
    assert len(comp.train) == 120 and len(comp.test_ids) == 30
    assert comp.targets().shape == (120, comp.labels.n_classes)
    assert all((tiny_competition / "train" / f"{i}.png").is_file() for i in comp.train["id"])


def test_targets_for_follows_the_given_ids_and_names_unknown_ones(tiny_competition):
    import numpy as np

    from imet_utils.data import read_competition

    comp = read_competition(tiny_competition)
    ids = list(comp.train["id"])
    picked = [ids[5], ids[0], ids[5]]
    np.testing.assert_array_equal(comp.targets_for(picked), comp.targets()[[5, 0, 5]])
    with pytest.raises(KeyError, match=r"1 id\(s\) not in .*train.csv, e.g. \['nope'\]"):
        comp.targets_for([ids[0], "nope"])
