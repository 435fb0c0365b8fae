import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from imet_utils.generate import generate_competition  # noqa: E402


@pytest.fixture(scope="session")
def tiny_competition(tmp_path_factory) -> Path:
    """A small generated iMet-format competition shared by the tests that only read it."""
    return generate_competition(tmp_path_factory.mktemp("comp"), n_train=120, n_test=30, seed=1)


def assert_loads_offline(model, tmp_path: Path, x) -> None:
    """Exports ``model`` and checks, in a process where efficientnet and albumentations can't be imported
    (as in Kaggle's offline image), that the export predicts what the model does."""
    import subprocess

    import numpy as np

    from imet_utils.models import export_for_inference

    expected = model.predict(x, verbose=0)
    export_for_inference(model, tmp_path / "model")
    np.save(tmp_path / "x.npy", x)
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    for pkg in ("efficientnet", "albumentations"):
        (blocker / f"{pkg}.py").write_text("raise ImportError('blocked')\n")
    code = (f"import sys, numpy as np; sys.path.insert(0, {str(ROOT)!r})\n"
            f"from imet_utils.prediction import load_for_inference\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, load_for_inference({str(tmp_path / 'model')!r})"
            f"(np.load({str(tmp_path / 'x.npy')!r})).numpy())\n")
    env = {"PYTHONPATH": str(blocker), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    check = subprocess.run([sys.executable, "-c", "import efficientnet"], env=env, capture_output=True)
    assert check.returncode != 0  # the blocker really blocks
    assert np.allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)
