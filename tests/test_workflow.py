"""The Kaggle workflow: --check, --push and --status against a fake kaggle CLI, per-fold kernels, notebooks,
and iMet 2020-style data."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from imet_utils.generate import IMET_2020_GROUPS, generate_competition

ROOT = Path(__file__).resolve().parents[1]


def _build(*args, env=None):
    return subprocess.run([sys.executable, "build_kernel.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=env)


@pytest.mark.parametrize("flags", [[], ["--split-folds"], ["--notebook"], ["--split-folds", "--notebook"]])
def test_check_passes_on_every_build_form(tmp_path, flags):
    res = _build("--out", tmp_path, "--check", *flags)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 problem(s)" in res.stdout


def test_check_lists_every_problem_of_a_broken_metadata(tmp_path):
    base = json.loads((ROOT / "kernel-metadata.json").read_text())
    base.update({"id": "me/abc", "title": "Something else", "enable_gpu": "true", "machine_shape": "",
                 "competition_sources": [], "model_sources": ["me/model"], "dataset_sources": ["nodataset"]})
    broken = tmp_path / "meta.json"
    broken.write_text(json.dumps(base))
    res = _build("--out", tmp_path / "build", "--metadata", broken, "--check")
    assert res.returncode == 1
    out = res.stdout
    for line in ["the slug of id 'me/abc' must have at least 5 characters",
                 "title 'Something else' resolves to slug 'something-else', not 'abc'",
                 "enable_gpu must be true or false (a JSON boolean), got 'true'",
                 "model source 'me/model' must be owner/model/framework/variation/version",
                 "dataset source 'nodataset' must be owner/slug"]:
        assert line in out, out
    assert out.strip().splitlines()[-1].endswith("problem(s) in 2 kernel(s)")


def test_check_catches_a_hand_edited_built_file(tmp_path):
    assert _build("--out", tmp_path).returncode == 0
    meta_path = tmp_path / "imet-2019-submit" / "kernel-metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.update(enable_internet=True, kernel_sources=[], enable_gpu=True, machine_shape=None, competition_sources=[])
    meta_path.write_text(json.dumps(meta))
    res = _build("--out", tmp_path, "--check")
    assert res.returncode == 1
    assert "the submit kernel must have enable_internet: false" in res.stdout
    assert "kernel_sources lacks the train kernel(s) ['your-kaggle-username/imet-2019-train']" in res.stdout
    assert "enable_gpu without machine_shape" in res.stdout
    assert "competition_sources is empty" in res.stdout


@pytest.fixture
def fake_kaggle(tmp_path):
    """A kaggle executable first on PATH that records its arguments and can answer with an error."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    script = bin_dir / "kaggle"
    script.write_text(f"""#!{sys.executable}
import os, sys
open({str(log)!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_KAGGLE_ERROR") and "push" in sys.argv:
    print("Kernel push error: Notebook not found")  # the real CLI exits 0 here
    sys.exit(0)
if "status" in sys.argv:
    print(f"{{sys.argv[-1]}} has status \\"KernelWorkerStatus.COMPLETE\\"")
else:
    print("Kernel version 1 successfully pushed.")
""")
    script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", KAGGLE_USERNAME="me",
               KAGGLE_KEY="dummy-key-for-tests", KAGGLE_CONFIG_DIR=str(tmp_path / "cfg"))
    return env, log


def test_push_pushes_train_then_submit_and_prints_next_steps(tmp_path, fake_kaggle):
    env, log = fake_kaggle
    res = _build("--out", tmp_path / "b", "--push", env=env)
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    assert calls == [f"kernels push -p {tmp_path / 'b' / 'imet-2019-train'}",
                     f"kernels push -p {tmp_path / 'b' / 'imet-2019-submit'}"]
    assert "https://www.kaggle.com/code/your-kaggle-username/imet-2019-train" in res.stdout
    assert "kaggle competitions submit imet-2019-fgvc6 -k your-kaggle-username/imet-2019-submit" in res.stdout
    st = _build("--out", tmp_path / "b", "--status", env=env)
    assert st.returncode == 0 and "imet-2019-train has status" in st.stdout


def test_push_error_is_not_mistaken_for_success(tmp_path, fake_kaggle):
    env, log = fake_kaggle
    res = _build("--out", tmp_path / "b", "--push", env={**env, "FAKE_KAGGLE_ERROR": "1"})
    assert res.returncode == 2
    assert "failed: Kernel push error: Notebook not found" in res.stderr
    assert len(log.read_text().splitlines()) == 1  # stopped before pushing the submit kernel


def test_push_without_credentials_gives_a_one_line_hint(tmp_path, fake_kaggle):
    env, log = fake_kaggle
    env = {k: v for k, v in env.items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN")}
    env["HOME"] = str(tmp_path / "home")
    res = _build("--out", tmp_path / "b", "--push", env=env)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "KAGGLE_USERNAME and KAGGLE_KEY" in res.stderr
    assert "Traceback" not in res.stderr and not log.exists()


def test_split_folds_and_notebooks_run_locally(tmp_path):
    data = generate_competition(tmp_path / "data", n_train=150, n_test=20, seed=8)
    res = _build("--run-local", "--split-folds", "--notebook", "--data-dir", data, "--work-dir", tmp_path / "w",
                 "--set", "n_folds=3", "--set", "epochs=2")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for k in range(3):
        assert f"imet-2019-train-f{k}: tiny-cnn at 64px, folds [{k}]" in res.stdout
    assert "decision on 150 OOF images" in res.stdout  # every fold's OOF, joined
    sub = pd.read_csv(tmp_path / "w/submit/kaggle/working/submission.csv", dtype=str)
    assert sub["id"].tolist() == pd.read_csv(data / "sample_submission.csv", dtype=str)["id"].tolist()
    nb = json.loads((tmp_path / "w/build/imet-2019-train-f0/imet-2019-train-f0.ipynb").read_text())
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds[:4] == ["markdown", "code", "markdown", "code"] and kinds.count("markdown") >= 6
    assert "def binarize(" in "".join(nb["cells"][3]["source"])  # the package in one cell up front


def test_imet_2020_style_competition(tmp_path):
    data = generate_competition(tmp_path / "data", n_train=200, n_test=20, groups=IMET_2020_GROUPS, seed=9)
    res = _build("--run-local", "--data-dir", data, "--work-dir", tmp_path / "w", "--set", "n_folds=2",
                 "--set", "epochs=2", "--set", "competition=imet-2020-fgvc7")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "labels in groups ('country', 'culture', 'dimension', 'medium', 'tags')" in res.stdout
    by_group = json.loads((tmp_path / "w/submit/kaggle/working/decision.json").read_text())["oof_f2_by_group"]
    assert list(by_group) == ["country", "culture", "dimension", "medium", "tags"]
    sub = pd.read_csv(tmp_path / "w/submit/kaggle/working/submission.csv", dtype=str)
    assert len(sub) == 20 and sub["attribute_ids"].str.len().min() > 0
    for kernel in ("imet-2019-train", "imet-2019-submit"):
        meta = json.loads((tmp_path / f"w/build/{kernel}/kernel-metadata.json").read_text())
        assert meta["competition_sources"] == ["imet-2020-fgvc7"]  # follows the config
