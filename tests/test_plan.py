"""--plan learns from runs: a pulled run_status.json's throughput wins over the estimate, for its card, model and
size only, and is marked measured."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_build.kernel import plan_kernels
from kernel_build.plan import CARD, QUEUE_MINUTES, Rates, kernel_hours, plan_gpu_hours, plan_lines, rates
from kernel_build.settings import effective_config

ROOT = Path(__file__).resolve().parents[1]


def _record(runs, slug, version, **fields):
    d = runs / slug / f"v{version}"
    d.mkdir(parents=True)
    (d / "run_status.json").write_text(json.dumps({"ok": True, "kernel": "train", "stages": {}, **fields}))


def _configs(**train):
    return effective_config("train", train), effective_config("submit", {})


MEASURED = dict(card="Tesla T4 x2", replicas=2, model="efficientnet-b3", image_size=288, batch_size=32)


def test_plan_uses_a_pulled_runs_throughput_marked_measured_and_the_estimate_elsewhere(tmp_path):
    runs = tmp_path / "runs"
    _record(
        runs, "imet-2019-train", 1, finished_at="2026-11-30T10:00:00Z", train_ips=100.0, infer_ips=300.0, **MEASURED
    )
    _record(
        runs, "imet-2019-train", 2, finished_at="2026-12-05T10:00:00Z", train_ips=120.0, infer_ips=400.0, **MEASURED
    )
    _record(
        runs,
        "imet-b5",
        1,
        finished_at="2026-12-06T10:00:00Z",
        train_ips=9.0,
        infer_ips=9.0,
        **{**MEASURED, "model": "efficientnet-b5"},
    )
    build = plan_kernels({"id": "me/imet-2019-train"}, tmp_path / "build")
    gpu = {k.id: True for k in build}
    train, submit = _configs(model="efficientnet-b3", image_size=288)
    lines = plan_lines(build, train_config=train, submit_config=submit, gpu=gpu, runs_dir=runs)
    (train_line,) = [line for line in lines if "imet-2019-train " in line]
    assert "measured on Tesla T4 x2, 2026-12-05" in train_line  # the latest run of this card, model and size
    assert rates("efficientnet-b3", 288, runs_dir=runs) == Rates(120.0, 400.0, "measured on Tesla T4 x2, 2026-12-05")
    hours, _ = kernel_hours("train", train, train_config=train, runs_dir=runs)
    n_train, folds, epochs, tta = 109_237, 5, train["epochs"], train["oof_tta"]
    fit = n_train * 4 / 5 * epochs / 120.0 + n_train / 5 * (epochs + tta) / 400.0
    assert hours == pytest.approx(0.25 + folds * fit / 3600)
    # another size, another model, another card: the estimate, and said so
    train_384, _ = _configs(model="efficientnet-b3", image_size=384)
    other = plan_lines(build, train_config=train_384, submit_config=submit, gpu=gpu, runs_dir=runs)
    assert all(line.endswith("estimate (unmeasured)") and "measured on" not in line for line in other[1:3])
    assert rates("efficientnet-b4", 288, runs_dir=runs).source == "estimate (unmeasured)"
    assert rates("efficientnet-b3", 288, card="P100 x1", runs_dir=runs).source == "estimate (unmeasured)"
    # the total the orchestrator compares with `kaggle quota`: the kernels' hours, not the queue
    total = plan_gpu_hours(build, train_config=train, submit_config=submit, gpu=gpu, runs_dir=runs)
    assert f"total: {total:.1f} GPU hours" in "\n".join(lines)
    assert total == pytest.approx(hours + kernel_hours("submit", submit, train_config=train, runs_dir=runs)[0])


def test_an_inference_only_record_mixes_with_the_estimate_and_says_which_is_which(tmp_path):
    runs = tmp_path / "runs"
    _record(runs, "imet-2019-submit", 3, finished_at="2026-12-06T08:00:00Z", infer_ips=777.0, **MEASURED)
    r = rates("efficientnet-b3", 288, runs_dir=runs)
    assert r.infer_ips == 777.0 and r.train_ips == rates("efficientnet-b3", 288, runs_dir=tmp_path / "none").train_ips
    assert r.source == "train estimate (unmeasured); inference measured on Tesla T4 x2, 2026-12-06"


def test_half_pulled_and_unreadable_records_are_skipped(tmp_path):
    runs = tmp_path / "runs"
    _record(runs, "imet-2019-train", 1, finished_at="2026-12-06", train_ips=1.0, infer_ips=1.0, **MEASURED)
    (runs / "imet-2019-train" / "v1").rename(runs / "imet-2019-train" / ".v1.partial-7")
    (runs / "imet-2019-train" / "v2").mkdir()
    (runs / "imet-2019-train" / "v2" / "run_status.json").write_text("{not json")
    assert rates("efficientnet-b3", 288, runs_dir=runs).source == "estimate (unmeasured)"


def test_the_queue_is_its_own_line_per_gpu_session(tmp_path):
    build = plan_kernels({"id": "me/imet-2019-train"}, tmp_path / "build", split_folds=[0, 1, 2])
    train, submit = _configs()
    gpu = {k.id: k.role == "train" for k in build}
    lines = plan_lines(build, train_config=train, submit_config=submit, gpu=gpu, runs_dir=tmp_path)
    (queue,) = [line for line in lines if "GPU queue" in line]
    assert f"{3 * QUEUE_MINUTES / 60:.1f} h wall clock, not quota" in queue and "x 3" in queue
    assert CARD in lines[0]


@pytest.mark.slow
def test_a_gpu_bench_run_writes_the_record_the_plan_reads(tmp_path):
    """bench/gpu.py writes a kernel's record: a run of it on any card calibrates the plan for that card
    (here the CPU, --smoke: tiny-cnn at 64 px)."""
    runs = tmp_path / "runs"
    res = subprocess.run(
        [sys.executable, "bench/gpu.py", "--smoke", "--runs", str(runs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    record = json.loads((runs / "bench-gpu" / "v1" / "run_status.json").read_text())
    assert record["kernel"] == "bench" and record["card"] == "CPU x1" and record["model"] == "tiny-cnn"
    assert record["image_size"] == 64 and record["batch_size"] == 8 and record["replicas"] == 1
    got = rates("tiny-cnn", 64, card="CPU x1", runs_dir=runs)
    assert got == Rates(record["train_ips"], record["infer_ips"], f"measured on CPU x1, {record['finished_at'][:10]}")
    assert rates("tiny-cnn", 64, runs_dir=runs).source == "estimate (unmeasured)"  # T4 x2: not measured
