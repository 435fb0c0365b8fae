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
