"""bench/scale.py: stage parsing, the report, the image drawing, and one tiny end-to-end run of the built kernels."""

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAST_LINE = re.compile(
    r"scale: train_peak_rss_mb=(\d+|nan) submit_peak_rss_mb=(\d+|nan) "
    r"decision_s=([\d.]+|nan) total_s=([\d.]+|nan)"
)


def _load_scale():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass and its pool's pickled function look it up there
    spec.loader.exec_module(module)
    return module


scale = _load_scale()

SAMPLE_LOG = """\
[06:55:10] kernel started 4 s ago; 8.50 h of budget left
[06:55:10] stage setup: 3.7 s (kernel at 0.1 min, 8.50 h left)
cache train:  50%|#####     | 150/300 [00:01<00:01]
[06:55:11] stage csv: 0.0 s
[06:55:12] stage training: 10.5 s
[06:55:13] stage training: 2.25 s
[06:55:14] stage new_name: 7 s
[06:55:14] the stage is set: not a stage line
"""


def test_parse_stages_keeps_order_adds_repeats_and_takes_unknown_names():
    stages = scale.parse_stages(SAMPLE_LOG.splitlines())
    assert list(stages) == ["setup", "csv", "training", "new_name"]
    assert stages["setup"] == pytest.approx(3.7)
    assert stages["training"] == pytest.approx(12.75)
    assert stages["new_name"] == pytest.approx(7.0)


def _run(name, stages, *, rss=500.0, wall=60.0, rc=0):
    return scale.KernelRun(
        name=name,
        returncode=rc,
        wall_s=wall,
        peak_rss_mb=rss,
        stages=stages,
        tail=["Traceback (most recent call last):", "MemoryError"],
        log=Path(f"/x/{name}.log"),
    )


def test_report_lists_every_stage_and_ends_with_the_summary_line():
    runs = [
        _run("train", {"csv": 2.0, "folds": 1.0, "cache": 30.0, "training": 100.0, "oof": 3.0}),
        _run("submit", {"decision": 42.5, "predict": 20.0, "brand_new": 1.0}, rss=7999.0),
    ]
    lines, ok = scale.report(runs, bench_rows=[("data", "CSVs", 5.0)], total_s=300.0)
    assert ok
    table = "\n".join(lines)
    for row in (
        "| train | csv | CSV checks | 2.0 |",
        "| train | oof | OOF assembly | 3.0 |",
        "| submit | decision | decision-rule choice | 42.5 |",
        "| submit | brand_new | brand_new | 1.0 |",
        "| train | **total** | the whole process | 60.0 | 500 |",
    ):
        assert row in table
    assert lines[-1] == "scale: train_peak_rss_mb=500 submit_peak_rss_mb=7999 decision_s=42.5 total_s=300.0"
    assert "- decision stage 42.5 s < 180 s: PASS" in lines


@pytest.mark.parametrize(
    "runs, failing",
    [
        ([_run("train", {}, rss=8000.0), _run("submit", {"decision": 1.0})], "train kernel peak RSS 8000 MB"),
        ([_run("train", {}), _run("submit", {"decision": 180.0})], "decision stage 180.0 s"),
        ([_run("train", {}), _run("submit", {})], "decision stage nan s"),
        ([_run("train", {}, rc=1)], "submit kernel peak RSS nan MB"),
    ],
)
def test_report_fails_a_missed_or_unmeasured_target(runs, failing):
    lines, ok = scale.report(runs, bench_rows=[], total_s=10.0)
    assert not ok
    assert any(line.startswith(f"- {failing}") and "FAIL" in line for line in lines)
    assert LAST_LINE.fullmatch(lines[-1])


def test_report_shows_the_end_of_a_failed_kernel_log():
    lines, ok = scale.report([_run("train", {"csv": 1.0}, rc=137)], bench_rows=[], total_s=1.0)
    assert not ok
    assert "| train | **total** (FAILED, exit 137) | the whole process | 60.0 | 500 |" in lines
    assert "MemoryError" in lines


def test_images_are_small_deterministic_and_drawn_once(tmp_path):
    import cv2

    items = [("00123", 3, 700), ("abc0ff", -1, -1), ("9", 0, 0)]
    for img_id, first, last in items:
        img = scale.draw_image(img_id, first, last)
        assert img.dtype.name == "uint8" and img.shape[2] == 3
        assert all(scale.IMAGE_SIDES[0] <= s <= scale.IMAGE_SIDES[1] for s in img.shape[:2])
        assert (img == scale.draw_image(img_id, first, last)).all()
    assert scale.generate_images(tmp_path, items, workers=2) == 3
    assert cv2.imread(str(tmp_path / "00123.png")) is not None
    assert scale.missing_images(tmp_path, ["00123", "abc0ff", "9", "new"]) == ["new"]
    assert scale.generate_images(tmp_path, items, workers=2) == 0


def test_csvs_keep_string_ids_and_subsample_in_order(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    pd.DataFrame({"attribute_id": [0, 1, 2], "attribute_name": ["culture::a", "tag::b", "tag::c"]}).to_csv(
        real / "labels.csv", index=False
    )
    ids = ["0012", "1e5", "nan", "000"] + [f"{i:x}" for i in range(16, 36)]
    (real / "train.csv").write_text("id,attribute_ids\n" + "".join(f"{i},0 2\n" for i in ids))
    (real / "sample_submission.csv").write_text("id,attribute_ids\n" + "".join(f"t{i},0\n" for i in range(9)))
    train, test = scale.prepare_csvs(real, tmp_path / "data", n_train=None, n_test=4)
    assert [i for i, _, _ in train] == ids and train[0] == ("0012", 0, 2)
    assert (tmp_path / "data" / "train.csv").read_text() == (real / "train.csv").read_text()
    assert len(test) == 4 and all(last == -1 for _, _, last in test)
    sub = pd.read_csv(tmp_path / "data" / "sample_submission.csv", dtype=str)
    assert list(sub["id"]) == sorted(sub["id"], key=lambda s: int(s[1:]))  # the original order
    train, _ = scale.prepare_csvs(real, tmp_path / "data", n_train=5, n_test=None)
    kept = [i for i, _, _ in train]
    assert len(kept) == 5 and kept == [i for i in ids if i in kept]


@pytest.mark.slow
def test_tiny_run_of_the_built_kernels_reports_stages_and_the_summary_line(tmp_path):
    """300 train / 60 test, 2 folds: both built kernels run in their own processes (about 30 s)."""
    from synth import generate_competition

    real = generate_competition(tmp_path / "real", n_train=300, n_test=60, seed=3)
    work = tmp_path / "work"
    res = subprocess.run(
        [
            sys.executable,
            "bench/scale.py",
            "--real-dir",
            str(real),
            "--work",
            str(work),
            "--n-train",
            "250",
            "--n-folds",
            "2",
            "--tta",
            "1",
            "--set",  # a fold of 125 images trains on full batches only: the full-scale batch of 256 can't fill one
            "batch_size=32",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout.strip().splitlines()
    assert res.returncode in (0, 1), (res.stdout[-4000:], res.stderr[-2000:])  # 2: a kernel failed
    m = LAST_LINE.fullmatch(out[-1])
    assert m, out[-1]
    train_rss, submit_rss, decision, total = m.groups()
    assert 0 < float(train_rss) < 8000 and 0 < float(submit_rss) < 8000 and float(total) > 0
    assert "scale rehearsal: 250 train / 60 test images" in res.stdout
    report = (work / "report.md").read_text()
    assert report.strip().splitlines()[-1] == out[-1]
    for kernel in ("train", "submit"):
        assert f"| {kernel} | **total** | the whole process |" in report
        # every stage the kernel printed has its row, whatever the stage names are
        for stage in scale.parse_stages((work / "logs" / f"{kernel}.log").read_text().splitlines()):
            assert re.search(rf"^\| {kernel} \| {re.escape(stage)} \| .* \| [\d.]+ \| \|$", report, re.M), stage
    if "stage decision:" in (work / "logs" / "submit.log").read_text():
        assert not math.isnan(float(decision)) and res.returncode == 0, report
    assert not (work / "submit").exists()  # removed without --keep; the data stays for the next run
    assert len(list((work / "data" / "train").glob("*.png"))) == 250
