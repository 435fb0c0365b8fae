"""synth: the generated data sets' bytes are pinned, and its command line writes what the function does."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_build.local import LOCAL_DATA
from synth import generate_competition

ROOT = Path(__file__).resolve().parents[1]

# sha256 over a generated folder (each file's relative path and sha256, in path order; see _tree_sha256),
# computed with imet_utils/generate.py and imet_utils/realistic.py before they moved to synth/. A change here
# means regenerated data no longer match data made before: say so in the commit if it is meant.
TINY_TOY = {"n_train": 120, "n_test": 30, "seed": 1}  # conftest's tiny_competition
GOLDEN = {
    "tiny toy": (TINY_TOY, "7dfc7c840f770b2e4f1b50fd68e94fa6247cac8fd4b51ee06bdda49034e5d18e"),
    "2020 groups toy": (
        {
            "n_train": 60,
            "n_test": 20,
            "groups": (("country", 3), ("culture", 6), ("dimension", 2), ("medium", 8), ("tags", 8)),
            "seed": 3,
        },
        "b97d28c042eadefe80f9ac75503034ee83a109ca816c1f241e8863e2aeb959dd",
    ),
    "--run-local default (realistic)": (LOCAL_DATA, "2d839196bd1b42e60decc791150b246964d99acadb1119dccd8256a2e46b1b30"),
}


def _tree_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@pytest.mark.parametrize("name", list(GOLDEN))
def test_generated_data_match_their_pinned_hash(tmp_path, name):
    settings, expected = GOLDEN[name]
    assert _tree_sha256(generate_competition(tmp_path / "data", **settings)) == expected, settings


def test_the_hash_sees_one_changed_pixel(tmp_path):
    data = generate_competition(tmp_path / "data", **TINY_TOY)
    before = _tree_sha256(data)
    png = next((data / "train").glob("*.png"))
    import cv2

    img = cv2.imread(str(png))
    img[0, 0, 0] ^= 1
    cv2.imwrite(str(png), img)
    assert _tree_sha256(data) != before


def test_cli_writes_what_the_function_writes(tmp_path):
    args = ["--n-train", "12", "--n-test", "4", "--groups", "culture:3,tag:5", "--mode", "toy", "--seed", "7"]
    res = subprocess.run(
        [sys.executable, "-m", "synth", str(tmp_path / "cli"), *args], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "wrote a toy competition of 12 train and 4 test images" in res.stdout
    direct = generate_competition(
        tmp_path / "direct", n_train=12, n_test=4, groups=(("culture", 3), ("tag", 5)), seed=7
    )
    assert _tree_sha256(tmp_path / "cli") == _tree_sha256(direct)
