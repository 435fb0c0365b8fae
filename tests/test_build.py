"""The builder: inlined kernels that parse, carry no package import, and metadata the kaggle CLI accepts."""

import ast
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import built_config

import kernel_build
from kernel_build.inline import check_names, strip_main_block
from kernel_build.toplevel import set_json_keys

ROOT = Path(__file__).resolve().parents[1]


def _build_in(repo, *flags):
    res = subprocess.run(
        [
            sys.executable,
            "build_kernel.py",
            "--metadata",
            str(repo / "kernel-metadata.json"),
            "--out",
            str(repo / "build"),
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    res = subprocess.run(
        [sys.executable, "build_kernel.py", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return out


def _kernels(out):
    return sorted(out.glob("*/kernel-metadata.json"))


def test_build_writes_two_self_contained_kernels(built):
    metas = _kernels(built)
    assert [m.parent.name for m in metas] == ["imet-2019-submit", "imet-2019-train"]
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        code = (meta_path.parent / meta["code_file"]).read_text()
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("imet_utils"), node.lineno
                assert node.level == 0
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("imet_utils") for a in node.names)
        assert "base64" not in code
        assert "def binarize(" in code  # the package is there as readable source
        assert code.index("CONFIG = dict(") < code.index("imet_utils/config.py (inlined)")


def test_submit_kernel_does_not_import_efficientnet_or_albumentations_at_top_level(built):
    code = (built / "imet-2019-submit" / "imet-2019-submit.py").read_text()
    tree = ast.parse(code)
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top for a in n.names} | {
        (n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)
    }
    assert not names & {"efficientnet", "albumentations"}


def test_metadata_derived_from_the_base_file(built):
    base = json.loads((ROOT / "kernel-metadata.json").read_text())
    train = json.loads((built / "imet-2019-train" / "kernel-metadata.json").read_text())
    submit = json.loads((built / "imet-2019-submit" / "kernel-metadata.json").read_text())
    assert train["id"] == base["id"] and train["enable_internet"] is True
    assert submit["enable_internet"] is False
    assert submit["kernel_sources"] == [base["id"]]
    assert submit["competition_sources"] == ["imet-2019-fgvc6"]
    assert train["machine_shape"] and submit["machine_shape"]
    # the submit kernel is told where the train output is
    code = (built / "imet-2019-submit" / "imet-2019-submit.py").read_text()
    assert built_config(code)["train_kernels"] == [base["id"]]
    # a plain `kaggle kernels push` in the repo root pushes the built train kernel
    assert base["code_file"] == "build/imet-2019-train/imet-2019-train.py"


def test_builder_imports_neither_tensorflow_nor_kaggle(tmp_path):
    meta = tmp_path / "kernel-metadata.json"  # the user's own owner: --check refuses the template's placeholder
    meta.write_text((ROOT / "kernel-metadata.json").read_text().replace('"your-kaggle-username/', '"me/'))
    code = (
        "import sys, build_kernel, kernel_build, tempfile; kernel_build.build(tempfile.mkdtemp()); "
        f"assert build_kernel.main(['--out', tempfile.mkdtemp(), '--metadata', {str(meta)!r}, '--check']) == 0; "
        "bad = [m for m in ('tensorflow', 'kaggle', 'keras') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_overrides_are_type_checked_and_inlined(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "build_kernel.py",
            "--out",
            str(tmp_path),
            "--set",
            "epochs=3",
            "--set",
            "folds=[0,1]",
            "--set",
            "weights=null",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    code = (tmp_path / "imet-2019-train" / "imet-2019-train.py").read_text()
    config = built_config(code)
    assert (config["epochs"], config["folds"], config["weights"]) == (3, [0, 1], None)
    assert re.search(r"\n    epochs=3,  # .*\[default 8\]\n", code)  # a changed value names its default
    bad = subprocess.run(
        [sys.executable, "build_kernel.py", "--out", str(tmp_path), "--set", "epoch=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "unknown TrainConfig key(s) ['epoch']; valid keys:" in bad.stderr and "epochs" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "build_kernel.py", "--out", str(tmp_path), "--set", "epochs=many"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "epochs must be an integer, got 'many'" in bad.stderr


def test_name_clash_between_modules_fails_the_build():
    seen = {}
    check_names(seen, {"helper": "def"}, "imet_utils/a.py")
    with pytest.raises(kernel_build.BuildError, match="name clash when inlining: 'helper'"):
        check_names(seen, {"helper": "def"}, "imet_utils/b.py")
    check_names(seen, {"np": "import :numpy"}, "imet_utils/a.py")
    check_names(seen, {"np": "import :numpy"}, "imet_utils/b.py")  # the same import twice is fine


def test_module_cli_blocks_are_stripped():
    src = "def f():\n    return 1\n\n\nif __name__ == '__main__':\n    f()\n"
    assert "__main__" not in strip_main_block(src)


@pytest.fixture
def kaggle_api(tmp_path, monkeypatch):
    """The real kaggle package with a fake client: nothing is sent."""
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("KAGGLE_USERNAME", "dummy-user")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    (tmp_path / "kaggle-config").mkdir()
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    api.authenticate()
    sent = []

    class FakeKernelsClient:
        def save_kernel(self, request):
            sent.append(request)
            return "ok"

    class FakeClient:
        def __enter__(self):
            self.kernels = type("K", (), {"kernels_api_client": FakeKernelsClient()})()
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(api, "build_kaggle_client", lambda: FakeClient())
    return api, sent


def test_built_metadata_passes_the_kaggle_clis_own_checks(built, kaggle_api):
    api, sent = kaggle_api
    for meta_path in _kernels(built):
        assert api.kernels_push(str(meta_path.parent)) == "ok"
    by_slug = {r.slug.split("/")[1]: r for r in sent}
    assert set(by_slug) == {"imet-2019-train", "imet-2019-submit"}
    assert by_slug["imet-2019-submit"].enable_internet is False
    assert by_slug["imet-2019-train"].enable_gpu is True
    assert by_slug["imet-2019-train"].machine_shape == "NvidiaTeslaT4"
    assert by_slug["imet-2019-submit"].kernel_data_sources == ["your-kaggle-username/imet-2019-train"]
    assert "def train_all_folds(" in by_slug["imet-2019-train"].text


def test_notebook_and_split_builds_pass_the_kaggle_clis_checks(tmp_path, kaggle_api):
    api, sent = kaggle_api
    res = subprocess.run(
        [sys.executable, "build_kernel.py", "--out", str(tmp_path), "--notebook", "--split-folds"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    for meta_path in _kernels(tmp_path):
        assert api.kernels_push(str(meta_path.parent)) == "ok"
    assert len(sent) == 6 and all(r.kernel_type == "notebook" for r in sent)
    submit = [r for r in sent if r.slug.endswith("-submit")][0]
    assert submit.kernel_data_sources == [f"your-kaggle-username/imet-2019-train-f{k}" for k in range(5)]
    assert json.loads(submit.text)["cells"][0]["cell_type"] == "markdown"


def test_the_fake_client_sees_a_rejected_metadata(tmp_path, kaggle_api):
    """The check above can fail: a 4-character slug is refused by the CLI itself."""
    api, sent = kaggle_api
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "k.py").write_text("print(1)\n")
    (tmp_path / "k" / "kernel-metadata.json").write_text(
        json.dumps(
            {"id": "me/abcd", "title": "abcd", "code_file": "k.py", "language": "python", "kernel_type": "script"}
        )
    )
    with pytest.raises(ValueError, match="at least five"):
        api.kernels_push(str(tmp_path / "k"))
    assert sent == []


def test_ensemble_train_kernels_become_the_submit_kernels_sources(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "build_kernel.py",
            "--out",
            str(tmp_path),
            "--set-submit",
            'train_kernels=["me/imet-b3-folds","me/imet-convnext"]',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "imet-2019-submit" / "kernel-metadata.json").read_text())
    assert {"me/imet-b3-folds", "me/imet-convnext"} <= set(meta["kernel_sources"])
    code = (tmp_path / "imet-2019-submit" / "imet-2019-submit.py").read_text()
    assert built_config(code)["train_kernels"] == ["me/imet-b3-folds", "me/imet-convnext"]


def _validate_strictly(nb_path):
    """nbformat.validate, with its warnings (a missing or duplicate cell id) as errors."""
    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbformat.validate(nbformat.read(nb_path, as_version=nbformat.NO_CONVERT))


@pytest.mark.parametrize("flags", [[], ["--split-folds"]])
def test_notebooks_are_valid_nbformat_4_5_with_cell_ids(tmp_path, flags):
    res = subprocess.run(
        [sys.executable, "build_kernel.py", "--out", str(tmp_path), "--notebook", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    notebooks = sorted(tmp_path.glob("*/*.ipynb"))
    assert len(notebooks) == (6 if flags else 2)
    for path in notebooks:
        _validate_strictly(path)
        nb = json.loads(path.read_text())
        assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5)
        ids = [c["id"] for c in nb["cells"]]
        assert len(set(ids)) == len(ids) == len(nb["cells"])


def test_a_notebook_without_cell_ids_is_refused():
    nb = kernel_build.inline_kernel("submit", {}).notebook()
    kernel_build.validate_notebook(nb, "kernel x")
    for cell in nb["cells"]:
        del cell["id"]
    with pytest.raises(kernel_build.BuildError, match=r"kernel x: not a valid nbformat 4\.5 notebook: .*missing an id"):
        kernel_build.validate_notebook(nb, "kernel x")
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = "not valid!" if i == 2 else f"c{i}"
    with pytest.raises(kernel_build.BuildError, match="does not match"):
        kernel_build.validate_notebook(nb, "kernel x")


def test_a_plain_kaggle_push_at_top_level_pushes_the_built_kernel_after_a_slug_change(user_repo, kaggle_api):
    api, sent = kaggle_api
    meta_path = user_repo / "kernel-metadata.json"
    original = meta_path.read_text()
    meta_path.write_text(
        original.replace('"your-kaggle-username/imet-2019-train"', '"me/my-imet-model"').replace(
            '"title": "imet-2019-train"', '"title": "my-imet-model"'
        )
    )
    res = _build_in(user_repo)
    assert "a plain `kaggle kernels push` in" in res.stdout and "pushes me/my-imet-model" in res.stdout
    meta = json.loads(meta_path.read_text())
    assert meta["code_file"] == "build/my-imet-model/my-imet-model.py"
    assert (user_repo / meta["code_file"]).is_file()
    # only the code_file line changed: the user's keys keep their order and text
    changed = [(a, b) for a, b in zip(original.splitlines(), meta_path.read_text().splitlines()) if a != b]
    assert [a.split(":")[0].strip() for a, _ in changed] == ['"id"', '"title"', '"code_file"']
    assert api.kernels_push(str(user_repo)) == "ok"  # what `kaggle kernels push` in that folder does
    assert sent[0].slug == "me/my-imet-model" and sent[0].kernel_type == "script"
    assert sent[0].text == (user_repo / "build/my-imet-model/my-imet-model.py").read_text()
    assert not (user_repo / "build/imet-2019-train").exists()  # the old slug's build is gone


def test_a_notebook_build_points_the_top_level_file_at_the_notebook(user_repo, kaggle_api):
    api, sent = kaggle_api
    _build_in(user_repo, "--notebook")
    meta = json.loads((user_repo / "kernel-metadata.json").read_text())
    assert meta["code_file"] == "build/imet-2019-train/imet-2019-train.ipynb" and meta["kernel_type"] == "notebook"
    assert (user_repo / meta["code_file"]).is_file()
    assert api.kernels_push(str(user_repo)) == "ok"
    assert sent[0].kernel_type == "notebook" and json.loads(sent[0].text)["nbformat_minor"] == 5
    _build_in(user_repo)  # and back to the script
    meta = json.loads((user_repo / "kernel-metadata.json").read_text())
    assert meta["code_file"] == "build/imet-2019-train/imet-2019-train.py" and meta["kernel_type"] == "script"


def test_a_split_folds_build_makes_a_plain_top_level_push_stop_before_sending(user_repo, kaggle_api):
    api, sent = kaggle_api
    res = _build_in(user_repo, "--split-folds")
    assert "a --split-folds build has no kernel your-kaggle-username/imet-2019-train" in res.stdout
    assert "python build_kernel.py --push" in res.stdout
    with pytest.raises(ValueError, match="Source file not found"):
        api.kernels_push(str(user_repo))
    assert sent == []


def test_a_build_folder_outside_the_metadata_folder_leaves_it_alone(user_repo, tmp_path):
    before = (user_repo / "kernel-metadata.json").read_bytes()
    res = subprocess.run(
        [
            sys.executable,
            "build_kernel.py",
            "--metadata",
            str(user_repo / "kernel-metadata.json"),
            "--out",
            str(tmp_path / "elsewhere"),
            "--notebook",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert (user_repo / "kernel-metadata.json").read_bytes() == before
    assert "left as it is: the build folder" in res.stdout


@pytest.mark.parametrize(
    "text",
    [
        '{\n  "id": "me/abcde",\n  "code_file": "x.py",\n  "kernel_type": "script",\n  "s": ["a", "b"]\n}\n',
        '{"id": "me/abcde", "code_file": null, "kernel_type": "script", "s": ["a", "b"]}',
    ],
)
def test_set_json_keys_changes_only_those_values(text):
    new = set_json_keys(text, {"code_file": 'build/a b/"q".ipynb', "kernel_type": "notebook"})
    assert json.loads(new) == {
        "id": "me/abcde",
        "code_file": 'build/a b/"q".ipynb',
        "kernel_type": "notebook",
        "s": ["a", "b"],
    }
    assert (
        new.replace('"build/a b/\\"q\\".ipynb"', '"x.py"' if "x.py" in text else "null").replace(
            '"notebook"', '"script"'
        )
        == text
    )
    # a key it can't find is added, the file rewritten with indent 2
    assert json.loads(set_json_keys('{"id": "me/abcde"}', {"code_file": "a.py"}))["code_file"] == "a.py"


@pytest.mark.parametrize("notebook", [False, True])
def test_the_built_kernel_carries_its_content_hash_which_embedding_doesnt_change(tmp_path, notebook):
    """The CONTENT_HASH constant under the CONFIG block is the hash the orchestrator compares; the same build
    gives the same one, a changed kernel another, and its line's value is left out of the hash."""
    from kernel_build.build import build
    from kernel_build.kernel import content_hash, embed_content_hash

    out = tmp_path / "build"
    first = {k.slug: k.embedded_hash() for k in build(out, notebook=notebook)}
    kernels = build(out, notebook=notebook)
    assert {k.slug: k.embedded_hash() for k in kernels} == first
    for k in kernels:
        assert re.fullmatch(r"[0-9a-f]{16}", first[k.slug]) and content_hash(k) == first[k.slug]
        text = k.code_path().read_text()
        if notebook:  # in the config cell
            text = next(
                "".join(c["source"]) for c in json.loads(text)["cells"] if "CONFIG = dict(" in "".join(c["source"])
            )
        assert f'# ==== END CONFIG ====\nCONTENT_HASH = "{first[k.slug]}"' in text
    changed = build(out, notebook=notebook, train_overrides={"epochs": 3})
    train, submit = changed.train[0], changed.submit
    built = train.embedded_hash()
    assert built == content_hash(train) != first[train.slug]
    assert submit.embedded_hash() == first[submit.slug]  # neither its code nor its metadata changed
    code = train.code_path()
    code.write_text(code.read_text().replace(built, "0" * 16))  # its value alone changed: the same content
    assert content_hash(train) == built and train.embedded_hash() == "0" * 16
    assert embed_content_hash(train) == built == train.embedded_hash()
    code.write_text(code.read_text().replace("CONFIG = dict(", "CONFIG = dict(  # edited by hand", 1))
    assert content_hash(train) != built  # a hand edit is other content: embedding (as a push does) names it
    assert embed_content_hash(train) == content_hash(train) == train.embedded_hash()
