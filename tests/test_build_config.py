"""The built kernels read top-down (CONFIG, then main() with the steps), and every setting comes from the config
dataclass: the CONFIG block, the --set help and the README tables."""

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import built_config

import kernel_build
from imet_utils.config import SubmitConfig, TrainConfig, to_dict
from kernel_build.settings import field_help

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {"train": TrainConfig, "submit": SubmitConfig}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    kernel_build.build(out)
    return out


def _first_heading_lines(source):
    """The markdown headings of a kernel source's step cells (the cells after its last function)."""
    text = source.read_text()
    last_def = max(n.end_lineno for n in ast.parse(text).body if isinstance(n, ast.FunctionDef))
    steps = "\n".join(text.splitlines()[last_def:])
    return [line for line in steps.splitlines() if line.startswith("# ## ")]


@pytest.mark.parametrize("role", ["train", "submit"])
def test_built_scripts_show_config_and_steps_in_their_first_150_lines(built, role):
    path = built / f"imet-2019-{role}" / f"imet-2019-{role}.py"
    code = path.read_text()
    tree = ast.parse(code)
    config = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "CONFIG")
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert ast.get_docstring(tree).startswith("iMet Collection 2019")
    assert config.end_lineno < main.lineno and main.end_lineno <= 150, (config.lineno, main.lineno, main.end_lineno)
    first = code.splitlines()[:150]
    for heading in _first_heading_lines(kernel_build.SOURCES[role]):  # every step, under its heading
        assert "    " + heading in first, heading
    # the helpers come after main(), then the package; main() is called last, at the top level
    helper = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name != "main")
    assert main.lineno < helper.lineno < code.index("imet_utils/config.py (inlined)") and "def binarize(" in code
    assert ast.unparse(tree.body[-1]) == "main()"
    assert isinstance(tree.body[1], ast.ImportFrom) and tree.body[1].module == "__future__"


def test_a_traceback_names_real_lines_of_the_built_script(built, tmp_path):
    """A Kaggle user edits CONFIG in the built kernel and breaks it: each frame of the traceback in the built file
    shows the line that really is at that number."""
    path = tmp_path / "kernel.py"
    code = (built / "imet-2019-train" / "imet-2019-train.py").read_text()
    path.write_text(code.replace("    image_size=288,", "    image_size=8,", 1))
    res = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert res.returncode != 0 and "image_size" in res.stderr, res.stderr[-2000:]
    lines = path.read_text().splitlines()
    frames = re.findall(rf'File "{re.escape(str(path))}", line (\d+), in (\S+)\n +(.+)', res.stderr)
    assert [f[1] for f in frames][:2] == ["<module>", "main"], res.stderr[-2000:]
    assert len(frames) >= 3  # and into the inlined package
    for number, _, shown in frames:
        assert lines[int(number) - 1].strip() == shown.strip()


@pytest.mark.parametrize("role", ["train", "submit"])
def test_the_built_config_block_lists_every_field_with_its_help(built, role):
    cls = CLASSES[role]
    code = (built / f"imet-2019-{role}" / f"imet-2019-{role}.py").read_text()
    config = built_config(code)
    assert list(config) == [f.name for f in dataclasses.fields(cls)]
    for f in dataclasses.fields(cls):
        assert f"    {f.name}=" in code and f"  # {field_help(f)}" in code
    flag = "--set" if role == "train" else "--set-submit"
    assert f"# ==== CONFIG: on Kaggle, edit here; locally: python build_kernel.py {flag} key=value ====" in code


@pytest.mark.parametrize("role", ["train", "submit"])
def test_kernel_sources_hold_only_what_they_override(role):
    defaults = to_dict(CLASSES[role]())
    overrides = kernel_build.settings.source_config(role)
    assert not {k for k, v in overrides.items() if v == defaults[k]}, "a kernel source repeats a default"


@pytest.mark.parametrize(
    "block, message",
    [
        ("CONFIG = dict(epochs=3 * 2)", r"CONFIG epochs= must be a literal .* got '3 \* 2'"),
        ("CONFIG = {'epochs': 3}", "must be one CONFIG = dict"),
        ("CONFIG = dict(**OTHER)", "must be one CONFIG = dict"),
    ],
)
def test_a_non_literal_config_block_is_refused(tmp_path, monkeypatch, block, message):
    source = tmp_path / "train.py"
    source.write_text(kernel_build.SOURCES["train"].read_text().replace("CONFIG = dict()", block, 1))
    monkeypatch.setitem(kernel_build.SOURCES, "train", source)
    with pytest.raises(kernel_build.BuildError, match=message):
        kernel_build.build(tmp_path / "build")


def test_a_source_override_and_a_set_reach_the_built_block(tmp_path, monkeypatch):
    source = tmp_path / "train.py"
    source.write_text(kernel_build.SOURCES["train"].read_text().replace("CONFIG = dict()", "CONFIG = dict(lr=1e-3)"))
    monkeypatch.setitem(kernel_build.SOURCES, "train", source)
    train = kernel_build.build(tmp_path / "build", train_overrides={"n_folds": 3}).train[0]
    config = built_config(train.code_path().read_text())
    assert (config["lr"], config["n_folds"], config["folds"], config["epochs"]) == (1e-3, 3, [0, 1, 2], 8)


def test_set_help_lists_every_valid_key():
    res = subprocess.run(
        [sys.executable, "build_kernel.py", "build", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    text = " ".join(res.stdout.split())
    text = text[text.index("options:") :]
    train_help = text[text.index("--set KEY=VALUE") : text.index("--set-submit KEY=VALUE")]
    submit_help = text[text.index("--set-submit KEY=VALUE") : text.index("--split-folds ")]
    for cls, help_text in ((TrainConfig, train_help), (SubmitConfig, submit_help)):
        for f in dataclasses.fields(cls):
            assert re.search(rf"\b{f.name}\b", help_text), f.name


def test_the_readme_holds_the_generated_config_tables(tmp_path):
    readme = (ROOT / "docs" / "configuration.md").read_text()
    for role in ("train", "submit"):
        assert kernel_build.config_table(role) in readme, (
            "run: python build_kernel.py config-table docs/configuration.md"
        )
    assert kernel_build.replace_config_tables(readme) == readme
    # --config-table FILE rewrites a drifted table
    copy = tmp_path / "configuration.md"
    copy.write_text(readme.replace("| `epochs` |", "| `epochs (old)` |"))
    res = subprocess.run(
        [sys.executable, "build_kernel.py", "--config-table", str(copy)], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert copy.read_text() == readme


def test_build_code_names_the_metadata_file_once_and_no_competition():
    """The metadata file's name is one constant; the competition always comes from the config."""
    found = {"kernel-metadata.json": [], "imet-2019": []}
    for path in [ROOT / "build_kernel.py", *sorted((ROOT / "kernel_build").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body and isinstance(n.body[0], ast.Expr)
        }
        # The one data table of competitions (their train and test sizes, for --plan) may name them.
        sizes = {
            id(k)
            for n in tree.body
            if isinstance(n, ast.Assign)
            and getattr(n.targets[0], "id", "") == "SIZES"
            and isinstance(n.value, ast.Dict)
            for k in n.value.keys
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and id(node) not in sizes
            ):
                for text in found:
                    if text in node.value:
                        found[text].append(f"{path.name}:{node.lineno}")
    assert len(found["kernel-metadata.json"]) == 1, found
    assert not found["imet-2019"], found


def test_kernel_type_names_each_kernel_once(tmp_path):
    base = {"id": "me/imet-b3-train", "title": "imet b3 train"}
    plan = kernel_build.kernel.plan_kernels(base, tmp_path, split_folds=[0, 2])
    assert [(k.role, k.fold, k.id, k.title, k.folder.name) for k in plan] == [
        ("train", 0, "me/imet-b3-train-f0", "imet b3 train-f0", "imet-b3-train-f0"),
        ("train", 2, "me/imet-b3-train-f2", "imet b3 train-f2", "imet-b3-train-f2"),
        ("submit", None, "me/imet-b3-submit", "imet b3 submit", "imet-b3-submit"),
    ]
    assert plan.submit.slug == "imet-b3-submit" and len(plan.train) == 2
    with pytest.raises(ValueError, match="role must be one of"):
        kernel_build.Kernel("train-f0", "me/x", "x", tmp_path)


@pytest.mark.parametrize(
    "definitions, steps, message",
    [
        ("def report():\n    print(out)\n", "out = 1\nreport()\n", r"report reads \['out'\], which a step assigns"),
        ("print(1)\n\ndef f():\n    pass\n", "f()\n", "only imports, definitions and constants may come before"),
        ("def f(x=binarize):\n    pass\n", "f()\n", r"'def f\(x=binarize\):' uses \['binarize'\] before the inlined"),
        ("GRID = binarize(1)\n", "print(GRID)\n", r"'GRID = binarize\(1\)' uses \['binarize'\] before the inlined"),
    ],
)
def test_what_the_script_layout_needs_of_a_kernel_source(definitions, steps, message):
    from kernel_build.render import _check_definitions

    with pytest.raises(kernel_build.BuildError, match=message):
        _check_definitions(definitions, steps, {"binarize"}, "k.py")
    _check_definitions(
        "import numpy as np\n\nN = 3\n\n\ndef f(config):\n    return np.sum(config) + N\n",
        "y = f(1)\n",
        {"binarize"},
        "k.py",
    )
