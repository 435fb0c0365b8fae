"""What ran is recorded (issue 23, 3): TF, Keras, CUDA and cuDNN versions, and ``plan`` warns when a pulled run
ran other TensorFlow or Keras versions than requirements.txt allows (Kaggle's image follows Colab's runtime)."""

import json

from kernel_build.kernel import plan_kernels
from kernel_build.plan import plan_lines, required_versions, version_warnings
from kernel_build.settings import effective_config


def _run(runs, slug, version, versions):
    d = runs / slug / f"v{version}"
    d.mkdir(parents=True)
    (d / "run_status.json").write_text(json.dumps({"ok": True, "kernel": "train", "versions": versions}))


def test_requirements_give_the_tensorflow_and_keras_specifiers(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# a comment\ntensorflow-cpu==2.20.0  # pinned\nkeras>=3.10,<3.14\nnumpy>=1.26\n")
    assert required_versions(req) == {"tensorflow": "==2.20.0", "keras": "<3.14,>=3.10"}


def test_plan_warns_about_a_run_on_other_versions_only(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("tensorflow-cpu==2.20.0\nkeras>=3.10,<3.14\n")
    runs = tmp_path / "runs"
    _run(runs, "imet-2019-train", 1, {"tensorflow": "2.20.0", "keras": "3.13.2", "cuda": "12.5.1"})
    _run(runs, "imet-2019-train", 2, {"tensorflow": "2.18.0", "keras": "3.8.0", "cuda": "12.5.1"})
    _run(runs, "imet-2019-submit", 1, {"tensorflow": "2.20.0+local", "keras": "3.13.0"})
    (runs / "imet-2019-train" / "v3").mkdir()
    (runs / "imet-2019-train" / "v3" / "run_status.json").write_text('{"ok": true}')  # before versions were kept
    warnings = version_warnings(runs, req)
    assert len(warnings) == 1, warnings
    assert "imet-2019-train/v2 ran tensorflow 2.18.0 (requirements.txt: ==2.20.0), keras 3.8.0" in warnings[0]


def test_the_plan_prints_the_warning(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "imet-2019-train", 1, {"tensorflow": "2.17.1", "keras": "3.5.0"})
    build = plan_kernels({"id": "me/imet-2019-train"}, tmp_path / "build")
    train, submit = effective_config("train", {}), effective_config("submit", {})
    lines = plan_lines(build, train_config=train, submit_config=submit, gpu={k.id: True for k in build}, runs_dir=runs)
    assert any("warning: imet-2019-train/v1 ran tensorflow 2.17.1" in line for line in lines), lines
