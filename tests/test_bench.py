"""The benchmark scripts run and print their summary lines (no timing is asserted here)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # each runs a benchmark script (TensorFlow, minutes on 2 cores)


def test_gpu_bench_smoke_runs_on_cpu():
    res = subprocess.run(
        [sys.executable, "bench/gpu.py", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    last = res.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"gpu=\S+ seed_train=[\d.]+ ours_train=[\d.]+ speedup=[\d.]+ tta_infer=[\d.]+", last), last


def test_pipeline_bench_prints_the_summary_line():
    res = subprocess.run(
        [sys.executable, "bench/pipeline.py", "--n", "24", "--size", "96", "--batch", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    last = res.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"png_vs_decode=[\d.]+ cached_vs_seed=[\d.]+ cores_speedup=[\d.]+", last), last
