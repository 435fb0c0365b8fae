"""The Kaggle workflow: --check, per-fold kernels, notebooks, and iMet 2020-style data (pushing, waiting and
submitting: tests/test_orchestrate.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import kernel_build
from synth import IMET_2020_GROUPS, generate_competition

ROOT = Path(__file__).resolve().parents[1]


def _build(*args, env=None):
    return subprocess.run(
        [sys.executable, "build_kernel.py", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


@pytest.fixture
def repo_flags(user_repo):
    """The user_repo copy and the --metadata/--out flags that build into it."""
    return user_repo, ["--metadata", user_repo / "kernel-metadata.json", "--out", user_repo / "build"]


def _own(meta_path):
    """The metadata made the user's: the template's placeholder owner replaced (--check refuses it)."""
    meta_path.write_text(meta_path.read_text().replace('"your-kaggle-username/', '"me/'))


@pytest.mark.parametrize("flags", [[], ["--split-folds"], ["--notebook"], ["--split-folds", "--notebook"]])
def test_check_passes_on_every_build_form(repo_flags, flags):
    repo, where = repo_flags
    _own(repo / "kernel-metadata.json")
    res = _build(*where, "--check", *flags)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 problem(s)" in res.stdout


def test_check_refuses_the_placeholder_owner_but_a_plain_build_works(tmp_path):
    assert _build("--out", tmp_path).returncode == 0
    res = _build("--out", tmp_path, "--check")
    assert res.returncode == 1
    assert "id 'your-kaggle-username/imet-2019-train' still has the placeholder owner" in res.stdout


def test_check_lists_every_problem_of_a_broken_metadata(tmp_path):
    base = json.loads((ROOT / "kernel-metadata.json").read_text())
    base.update(
        {
            "id": "me/abc",
            "title": "Something else",
            "enable_gpu": "true",
            "machine_shape": "",
            "competition_sources": [],
            "model_sources": ["me/model"],
            "dataset_sources": ["nodataset"],
        }
    )
    broken = tmp_path / "meta.json"
    broken.write_text(json.dumps(base))
    res = _build("--out", tmp_path / "build", "--metadata", broken, "--check")
    assert res.returncode == 1
    out = res.stdout
    for line in [
        "the slug of id 'me/abc' must have at least 5 characters",
        "title 'Something else' resolves to slug 'something-else', not 'abc'",
        "enable_gpu must be true or false (a JSON boolean), got 'true'",
        "model source 'me/model' must be owner/model/framework/variation/version",
        "dataset source 'nodataset' must be owner/slug",
    ]:
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


@pytest.mark.slow
def test_split_folds_and_notebooks_run_locally(tmp_path):
    data = generate_competition(tmp_path / "data", n_train=150, n_test=20, seed=8)
    res = _build(
        "--run-local",
        "--split-folds",
        "--notebook",
        "--data-dir",
        data,
        "--work-dir",
        tmp_path / "w",
        "--set",
        "n_folds=3",
        "--set",
        "epochs=2",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for k in range(3):
        profile = kernel_build.LOCAL_TRAIN  # the local run's backbone and size, whatever the profile is
        assert f"imet-2019-train-f{k}: {profile['model']} at {profile['image_size']}px, folds [{k}]" in res.stdout
    assert "decision on 150 OOF images" in res.stdout  # every fold's OOF, joined
    sub = pd.read_csv(tmp_path / "w/submit/kaggle/working/submission.csv", dtype=str)
    assert sub["id"].tolist() == pd.read_csv(data / "sample_submission.csv", dtype=str)["id"].tolist()
    nb = json.loads((tmp_path / "w/build/imet-2019-train-f0/imet-2019-train-f0.ipynb").read_text())
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds[:4] == ["markdown", "code", "markdown", "code"] and kinds.count("markdown") >= 6
    assert "def binarize(" in "".join(nb["cells"][3]["source"])  # the package in one cell up front
    # they ran in a Jupyter kernel, as papermill runs them: the executed copies lie beside them
    for slug in ("imet-2019-train-f0", "imet-2019-submit"):
        done = json.loads((tmp_path / f"w/build/{slug}/{slug}.executed.ipynb").read_text())
        code = [c for c in done["cells"] if c["cell_type"] == "code"]
        assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
        assert done["metadata"]["language_info"]["version"].startswith(f"{sys.version_info[0]}.")
        assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert "Traceback" not in res.stdout + res.stderr


def _notebook_with(tmp_path, cells):
    """The built submit notebook with ``cells`` (id -> source) after its config cell, ready to run as --run-local
    runs it."""
    submit = kernel_build.build(tmp_path / "build", notebook=True).submit
    path = submit.code_path()
    assert path.name == "imet-2019-submit.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"][2:2] = [
        {"cell_type": "code", "id": cid, "metadata": {}, "execution_count": None, "outputs": [], "source": src}
        for cid, src in cells.items()
    ]
    path.write_text(json.dumps(nb))
    root = kernel_build.kaggle_dir(tmp_path, "submit", {}, fresh=True)
    return submit, root


@pytest.mark.slow
def test_a_notebook_runs_in_a_jupyter_kernel_with_the_scripts_environment(tmp_path, capfd):
    probe = (
        "import os, sys\n"
        "print('cwd', os.getcwd())\n"
        "print('root', os.environ['IMET_KAGGLE_ROOT'])\n"
        "print('python', sys.executable)\n"
        "print('kernel', type(get_ipython()).__name__)\n"
        "try:\n    import efficientnet\nexcept ImportError as e:\n    print('blocked', e)\n"
        "print('no package', 'imet_utils' not in sys.modules and not any("
        "os.path.isdir(os.path.join(p, 'imet_utils')) for p in sys.path if p))"
    )
    submit, root = _notebook_with(tmp_path, {"probe": probe, "stop": "raise SystemExit('probe done')"})
    with pytest.raises(kernel_build.BuildError):
        kernel_build.run_kernel(
            kernel_build.runnable(submit), root, extra_pythonpath=kernel_build.blocker_dir(tmp_path)
        )
    out = capfd.readouterr().out
    assert f"cwd {root / 'working'}" in out and f"root {root}" in out and f"python {sys.executable}" in out
    assert "kernel ZMQInteractiveShell" in out  # a real IPython kernel, not exec()
    assert "blocked efficientnet is not available in the offline submit kernel" in out
    assert "no package True" in out


@pytest.mark.slow
def test_a_failing_notebook_cell_fails_the_run_with_its_traceback(tmp_path, capfd):
    failing = "def explode():\n    raise RuntimeError('injected failure 1234')\n\nexplode()"
    submit, root = _notebook_with(tmp_path, {"fine": "print('before the failure')", "boom": failing})
    folder = submit.folder
    with pytest.raises(kernel_build.BuildError) as e:
        kernel_build.run_kernel(kernel_build.runnable(submit), root)
    message = str(e.value)
    assert message.startswith("imet-2019-submit.ipynb failed in cell 4 of ")
    heading = "".join(json.loads((folder / "imet-2019-submit.ipynb").read_text())["cells"][0]["source"]).splitlines()[0]
    assert f"(id 'boom', In [3], under {heading!r})" in message  # the markdown cell above it
    assert "RuntimeError: injected failure 1234" in message
    captured = capfd.readouterr()
    assert "before the failure" in captured.out
    assert "----> 4 explode()" in captured.err and "in explode()" in captured.err  # the cell's traceback
    assert "RuntimeError: injected failure 1234" in captured.err
    done = json.loads((folder / "imet-2019-submit.executed.ipynb").read_text())
    boom = next(c for c in done["cells"] if c.get("id") == "boom")
    assert boom["outputs"][-1]["output_type"] == "error"
    assert all(c.get("execution_count") is None for c in done["cells"][4:] if c["cell_type"] == "code")


@pytest.mark.slow
def test_imet_2020_style_competition(tmp_path):
    data = generate_competition(tmp_path / "data", n_train=200, n_test=20, groups=IMET_2020_GROUPS, seed=9)
    res = _build(
        "--run-local",
        "--data-dir",
        data,
        "--work-dir",
        tmp_path / "w",
        "--set",
        "n_folds=2",
        "--set",
        "epochs=2",
        "--set",
        "competition=imet-2020-fgvc7",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "labels in groups ('country', 'culture', 'dimension', 'medium', 'tags')" in res.stdout
    by_group = json.loads((tmp_path / "w/submit/kaggle/working/decision.json").read_text())["oof_f2_by_group"]
    assert list(by_group) == ["country", "culture", "dimension", "medium", "tags"]
    sub = pd.read_csv(tmp_path / "w/submit/kaggle/working/submission.csv", dtype=str)
    assert len(sub) == 20 and sub["attribute_ids"].str.len().min() > 0
    for kernel in ("imet-2019-train", "imet-2019-submit"):
        meta = json.loads((tmp_path / f"w/build/{kernel}/kernel-metadata.json").read_text())
        assert meta["competition_sources"] == ["imet-2020-fgvc7"]  # follows the config


def test_check_passes_after_a_slug_change_and_a_build(repo_flags):
    repo, where = repo_flags
    meta_path = repo / "kernel-metadata.json"
    meta_path.write_text(
        meta_path.read_text()
        .replace("your-kaggle-username/imet-2019-train", "me/imet-b3-model")
        .replace('"title": "imet-2019-train"', '"title": "imet-b3-model"')
    )
    stale = _build(*where, "--check")  # the build/ of before: a plain push here would push nothing
    assert stale.returncode == 0 and "0 problem(s)" in stale.stdout  # (an empty build/ is built first)
    meta_path.write_text(
        meta_path.read_text()
        .replace("me/imet-b3-model", "me/imet-b4-model")
        .replace('"title": "imet-b3-model"', '"title": "imet-b4-model"')
    )
    res = _build(*where, "--check")
    assert res.returncode == 1
    assert (
        f"{meta_path}: no kernel me/imet-b4-model is built in {repo / 'build'}; run python build_kernel.py"
        in res.stdout
    )
    assert _build(*where).returncode == 0
    res = _build(*where, "--check")
    assert res.returncode == 0 and "0 problem(s)" in res.stdout, res.stdout
    meta = json.loads(meta_path.read_text())
    assert meta["code_file"] == "build/imet-b4-model/imet-b4-model.py" and (repo / meta["code_file"]).is_file()


def test_check_passes_on_a_notebook_build_whose_top_level_file_names_the_notebook(repo_flags):
    repo, where = repo_flags
    _own(repo / "kernel-metadata.json")
    res = _build(*where, "--notebook", "--check")
    assert res.returncode == 0 and "0 problem(s)" in res.stdout, res.stdout
    meta = json.loads((repo / "kernel-metadata.json").read_text())
    assert meta["code_file"].endswith(".ipynb") and (repo / meta["code_file"]).is_file()
    assert meta["kernel_type"] == "notebook"
    res = _build(*where, "--check")  # checks build/ as it is: the notebook build
    assert res.returncode == 0 and "0 problem(s)" in res.stdout, res.stdout


def test_check_says_a_split_folds_build_is_pushed_with_push(repo_flags):
    repo, where = repo_flags
    _own(repo / "kernel-metadata.json")
    res = _build(*where, "--split-folds", "--check")
    assert res.returncode == 0, res.stdout
    assert "note: kernel-metadata.json: a --split-folds build has no kernel me/imet-2019-train" in res.stdout
    assert "push the per-fold kernels and the submit kernel with: python build_kernel.py --push" in res.stdout


def test_check_reports_a_hand_broken_top_level_file(repo_flags):
    repo, where = repo_flags
    assert _build(*where).returncode == 0
    meta_path = repo / "kernel-metadata.json"
    meta_path.write_text(
        meta_path.read_text()
        .replace('"build/imet-2019-train/imet-2019-train.py"', '"build/imet-2019-train/train.py"')
        .replace('"kernel_type": "script"', '"kernel_type": "notebook"')
    )
    res = _build(*where, "--check")
    assert res.returncode == 1
    assert (
        f"{meta_path}: code_file 'build/imet-2019-train/train.py' (no such file) is not the built kernel of "
        f"your-kaggle-username/imet-2019-train, build/imet-2019-train/imet-2019-train.py"
    ) in res.stdout
    assert f"{meta_path}: kernel_type is 'notebook' here but 'script' in the built kernel" in res.stdout
    meta_path.write_text("{not json")
    res = _build(*where, "--check")
    assert res.returncode == 1 and f"{meta_path}: not readable JSON" in res.stdout
