import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import fake_kaggle  # noqa: E402

from kernel_build.local import blocker_dir  # noqa: E402
from synth import generate_competition  # noqa: E402


@pytest.fixture(autouse=True)
def real_metadata_untouched():
    """Builds rewrite the top-level kernel-metadata.json: tests work on copies and must leave the repo's alone."""
    before = (ROOT / "kernel-metadata.json").read_bytes()
    yield
    assert (ROOT / "kernel-metadata.json").read_bytes() == before, "a test changed the repo's kernel-metadata.json"


@pytest.fixture
def user_repo(tmp_path):
    """A copy of the repo's top-level kernel-metadata.json in a folder of its own, to build into its build/."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "kernel-metadata.json", repo / "kernel-metadata.json")
    return repo


def built_config(code: str) -> dict:
    """The literal CONFIG = dict(...) of a built kernel, as a dict."""
    import ast

    call = next(
        n.value
        for n in ast.parse(code).body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "CONFIG"
    )
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def run_patched_submit(work: Path, tmp_path: Path, replace=None, **config):
    """Reruns the built submit kernel of a ``--run-local`` in ``work``, with ``replace`` = (old, new) applied to
    its source and ``config`` set in its CONFIG, in its simulated /kaggle with an emptied output folder."""
    import json
    import subprocess

    built = next((work / "build").glob("*-submit/*-submit.py")).read_text()
    patched = built
    if replace:
        patched = built.replace(*replace)
        assert patched != built, f"{replace[0]!r} is not in the built submit kernel"
    end = "# ==== END CONFIG ===="
    patched = patched.replace(end, "".join(f"CONFIG[{k!r}] = {json.dumps(v)}\n" for k, v in config.items()) + end, 1)
    script = tmp_path / "patched_submit.py"
    script.write_text(patched)
    root = work / "submit" / "kaggle"
    for f in (root / "working").iterdir():
        f.unlink()
    env = dict(os.environ, IMET_KAGGLE_ROOT=str(root), TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(blocker_dir(work)))
    return subprocess.run(
        [sys.executable, str(script)], cwd=root / "working", env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def tiny_competition(tmp_path_factory) -> Path:
    """A small generated iMet-format competition shared by the tests that only read it."""
    return generate_competition(tmp_path_factory.mktemp("comp"), n_train=120, n_test=30, seed=1)


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """One ``build_kernel.py run-local`` of the built kernels (3 folds, 6 epochs) on generated data, shared by
    the slow tests that only read its outputs: (data, work, log). Tests must not change anything under work."""
    data = generate_competition(tmp_path_factory.mktemp("local_run_data"), n_train=360, n_test=60, seed=3)
    work = tmp_path_factory.mktemp("local_run_work")
    args = ["run-local", "--data-dir", data, "--work-dir", work]
    for setting in ("n_folds=3", "folds=[0,1,2]", "epochs=6"):
        args += ["--set", setting]
    res = subprocess.run(
        [sys.executable, "build_kernel.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return data, work, res.stdout + res.stderr


def assert_loads_offline(model, tmp_path: Path, x) -> None:
    """Exports ``model`` and checks, in a process where efficientnet and albumentations can't be imported
    (as in Kaggle's offline image), that the export predicts what the model does."""
    import subprocess

    import numpy as np

    from imet_utils.models import export_for_inference

    expected = model.predict(x, verbose=0)
    export_for_inference(model, tmp_path / "model")
    np.save(tmp_path / "x.npy", x)
    blocker = blocker_dir(tmp_path)
    code = (
        f"import sys, numpy as np; sys.path.insert(0, {str(ROOT)!r})\n"
        f"from imet_utils.prediction import load_for_inference\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, load_for_inference({str(tmp_path / 'model')!r})"
        f"(np.load({str(tmp_path / 'x.npy')!r})).numpy())\n"
    )
    env = {"PYTHONPATH": str(blocker), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    check = subprocess.run([sys.executable, "-c", "import efficientnet"], env=env, capture_output=True)
    assert check.returncode != 0  # the blocker really blocks
    assert np.allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


@pytest.fixture
def repo(tmp_path):
    """A user's repo for the Kaggle steps: the metadata with a real owner ("me"), a fake Kaggle
    (tests/fake_kaggle.py), and a runner of build_kernel.py's subcommands."""
    meta = json.loads((ROOT / "kernel-metadata.json").read_text())
    meta["id"] = meta["id"].replace("your-kaggle-username", "me")
    (tmp_path / "kernel-metadata.json").write_text(json.dumps(meta, indent=2))
    env = fake_kaggle.install(tmp_path)

    def run(command="build", *args, ok=True):
        res = subprocess.run(
            [
                sys.executable,
                str(ROOT / "build_kernel.py"),
                command,
                "--metadata",
                str(tmp_path / "kernel-metadata.json"),
                "--out",
                str(tmp_path / "build"),
                "--runs",
                str(tmp_path / "runs"),
                "--poll",
                "0.01",
                *map(str, args),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        print(f"$ python build_kernel.py {command} {' '.join(map(str, args))}\n{res.stdout}{res.stderr}")
        if ok is not None:
            assert (res.returncode == 0) == ok, res.stdout + res.stderr
        return res

    return tmp_path, env, run
