"""The realistic generator mode: valid iMet files, a long tail, co-occurrence, noisy train labels, a low
constant floor and determinism. No training."""

import numpy as np
import pandas as pd
import pytest

from imet_utils.data import multi_hot, read_competition, read_train
from kernel_build.scoring import best_constant_f2
from synth import generate_competition
from synth.cli import main as synth_cli
from synth.realistic import DROP_CULTURE, DROP_TAG, REALISTIC_GROUPS, SPURIOUS, noisy_labels

N_TRAIN, N_TEST = 600, 400


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    return generate_competition(
        tmp_path_factory.mktemp("realistic"),
        n_train=N_TRAIN,
        n_test=N_TEST,
        min_side=32,
        max_side=48,
        seed=3,
        mode="realistic",
    )


def _y(path, n):
    return multi_hot(list(read_train(path, n)["labels"]), n)


def test_files_are_valid_imet(realistic):
    comp = read_competition(realistic)
    n = comp.labels.n_classes
    assert comp.labels.group_names == tuple(g for g, _ in REALISTIC_GROUPS)
    assert n == sum(k for _, k in REALISTIC_GROUPS)
    ids = list(comp.train["id"]) + list(comp.test_ids["id"])
    assert all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids) == N_TRAIN + N_TEST
    assert all((realistic / "train" / f"{i}.png").is_file() for i in comp.train["id"])
    assert all((realistic / "test" / f"{i}.png").is_file() for i in comp.test_ids["id"])
    solution = read_train(realistic / "solution.csv", n)
    assert list(solution["id"]) == list(comp.test_ids["id"])
    clean = read_train(realistic / "train_clean.csv", n)
    assert list(clean["id"]) == list(comp.train["id"])


def test_frequencies_have_a_long_tail(realistic):
    n = read_competition(realistic).labels.n_classes
    freq = _y(realistic / "train_clean.csv", n).mean(axis=0)
    assert freq.max() >= 3 * np.median(freq)
    n_culture = REALISTIC_GROUPS[0][1]
    for group in (freq[:n_culture], freq[n_culture:]):  # Zipf within each group: head far above tail
        assert group.max() >= 3 * group.min() and group[:3].mean() > group[-3:].mean()
    assert (freq > 0).sum() >= n - 2  # the tail is thin, not empty


def test_cultures_prefer_tags(realistic):
    """P(tag | culture) departs from P(tag) far more than sampling noise would."""
    n_culture = REALISTIC_GROUPS[0][1]
    y = _y(realistic / "train_clean.csv", read_competition(realistic).labels.n_classes)
    cultures, tags = y[:, :n_culture].astype(bool), y[:, n_culture:]
    marginal = tags.mean(axis=0)
    c = int(np.argmax(cultures.sum(axis=0)))  # the most frequent culture, for enough rows
    conditional = tags[cultures[:, c]].mean(axis=0)
    assert np.max(conditional - marginal) > 0.15
    assert np.max(conditional / np.maximum(marginal, 1e-9)) > 2.0


def test_train_labels_are_noisy_at_the_configured_rates(realistic):
    n = read_competition(realistic).labels.n_classes
    n_culture = REALISTIC_GROUPS[0][1]
    noisy, clean = _y(realistic / "train.csv", n), _y(realistic / "train_clean.csv", n)
    missed = (clean == 1) & (noisy == 0)
    added = (clean == 0) & (noisy == 1)
    culture_miss = missed[:, :n_culture].sum() / clean[:, :n_culture].sum()
    tag_miss = missed[:, n_culture:].sum() / clean[:, n_culture:].sum()
    # Rows where everything was missed keep one true label, so the rates sit slightly under the settings.
    assert DROP_CULTURE - 0.05 < culture_miss < DROP_CULTURE + 0.03
    assert DROP_TAG - 0.06 < tag_miss < DROP_TAG + 0.03
    assert SPURIOUS - 0.04 < added.any(axis=1).mean() < SPURIOUS + 0.03
    assert noisy.sum(axis=1).min() >= 1


def test_test_solution_is_clean_and_has_a_low_constant_floor(realistic):
    n = read_competition(realistic).labels.n_classes
    solution = _y(realistic / "solution.csv", n)
    assert best_constant_f2(solution) <= 0.40
    # The clean labels' shape: one or two cultures, one to five tags on every test image.
    n_culture = REALISTIC_GROUPS[0][1]
    assert set(solution[:, :n_culture].sum(axis=1)) <= {1, 2}
    assert set(solution[:, n_culture:].sum(axis=1)) <= {1, 2, 3, 4, 5}


def test_noisy_labels_never_empty():
    rng = np.random.default_rng(0)
    marginal = np.full(4, 0.25)
    for _ in range(200):
        got = noisy_labels(
            [0, 2], n_culture=1, marginal=marginal, rng=rng, drop_culture=1.0, drop_tag=1.0, spurious=0.0
        )
        assert got in ([0], [2])


def test_deterministic_for_a_seed(tmp_path):
    def files(seed, name):
        out = generate_competition(
            tmp_path / name, n_train=40, n_test=10, min_side=32, max_side=48, seed=seed, mode="realistic"
        )
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    a, b, c = files(5, "a"), files(5, "b"), files(6, "c")
    assert a == b
    assert a["train.csv"] != c["train.csv"]


def test_cli_mode_and_unknown_mode(tmp_path, capsys):
    assert synth_cli([str(tmp_path / "r"), "--n-train", "20", "--n-test", "5", "--mode", "realistic"]) == 0
    assert (tmp_path / "r" / "train_clean.csv").is_file()
    assert "realistic" in capsys.readouterr().out
    labels = pd.read_csv(tmp_path / "r" / "labels.csv")
    assert len(labels) == sum(k for _, k in REALISTIC_GROUPS)
    with pytest.raises(ValueError, match="unknown mode 'real'; known: toy, realistic, "):
        generate_competition(tmp_path / "x", n_train=5, n_test=5, mode="real")


def test_toy_mode_is_still_the_default(tmp_path):
    out = generate_competition(tmp_path / "t", n_train=10, n_test=5)
    assert not (out / "train_clean.csv").exists()
    assert len(pd.read_csv(out / "labels.csv")) == 20


def test_local_run_default_data_is_realistic_and_generated_once(tmp_path, monkeypatch):
    from kernel_build import local

    monkeypatch.setattr(local, "LOCAL_DATA", {**local.LOCAL_DATA, "n_train": 30, "n_test": 10})
    data = local.default_data(tmp_path)
    assert data.parent == tmp_path and "realistic" in data.name and "30-10" in data.name
    assert (data / "train_clean.csv").is_file()  # only the realistic mode writes it
    comp = read_competition(data)
    assert len(comp.train) == 30 and len(comp.test_ids) == 10
    stamp = (data / "train.csv").stat().st_mtime_ns
    assert local.default_data(tmp_path) == data and (data / "train.csv").stat().st_mtime_ns == stamp
    monkeypatch.setattr(local, "LOCAL_DATA", {**local.LOCAL_DATA, "seed": 1})
    assert local.default_data(tmp_path) != data  # other settings: other data, never the stale folder


def test_local_profile_trains_fewer_epochs_on_more_images(tmp_path, monkeypatch):
    from kernel_build import local

    full, fewer = local.LOCAL_TRAIN["epochs"], local.local_epochs(4500)
    assert [local.local_epochs(n) for n in (1500, 3000)] == [full, full]  # the 3,000-image competitions: all of it
    assert local.LOCAL_TRAIN["warmup_epochs"] < local.LOCAL_MIN_EPOCHS == local.local_epochs(100_000) <= fewer < full
    seen = []

    def stop_at_build(out, *, train_overrides, **_):
        seen.append(train_overrides["epochs"])
        raise RuntimeError("stop")

    monkeypatch.setattr(local, "build", stop_at_build)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("id,attribute_ids\n" + "".join(f"{i:012x},1\n" for i in range(4500)))
    for overrides, epochs in (({}, fewer), ({"epochs": 5}, 5), ({"max_images": 1500}, full)):
        with pytest.raises(RuntimeError, match="stop"):
            local.run_local(
                data_dir=data, work=tmp_path / "w", train_overrides=overrides, submit_overrides={}, resume=False
            )
        assert seen[-1] == epochs


def test_a_quick_local_try_keeps_one_fine_tuning_epoch():
    """``--set epochs=2`` (the tests' and a user's quick try) must not be refused for the profile's 2 head epochs;
    a warm-up the user set is left for the config's own check."""
    from kernel_build import local

    warmup = local.LOCAL_TRAIN["warmup_epochs"]
    assert local.local_warmup({**local.LOCAL_TRAIN, "epochs": 2}, user_set=False) == 1
    assert local.local_warmup({**local.LOCAL_TRAIN, "epochs": 1}, user_set=False) == 0
    assert local.local_warmup({**local.LOCAL_TRAIN, "epochs": 10}, user_set=False) == warmup
    assert local.local_warmup({**local.LOCAL_TRAIN, "epochs": 2, "warmup_epochs": 3}, user_set=True) == 3
