"""``--plan``: the GPU hours each kernel of a build will take, before a GPU hour is spent.

Hours come from the configured model, image size, folds, epochs and TTA and a throughput: the latest one a kernel
measured on the same card, for the same model and size (each kernel writes its card and throughput into
``run_status.json``; ``pull`` brings it to ``runs/<slug>/v<N>/run_status.json``; ``bench/gpu.py`` writes the same
record), printed ``measured on <card>, <date>``; else the backbone registry's rough estimate
(``imet_utils.models.MODELS[name].throughput``), printed as an unmeasured estimate. The GPU queue, which field
reports put at about 10 minutes a session, is a line of its own. A pulled run that ran other TensorFlow or
Keras versions than requirements.txt names is a warning (Kaggle's image follows Colab's runtime, not our pins).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from imet_utils.models import MODELS, ThroughputEstimate
from imet_utils.run_status import RUN_STATUS_FILE
from kernel_build.kernel import ROOT, Build

RUNS_DIR = ROOT / "runs"
REQUIREMENTS = ROOT / "requirements.txt"
VERSIONED = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "keras": ("keras",)}  # run_status key: requirements
CARD, THROUGHPUT_SIZE = ThroughputEstimate.CARD, ThroughputEstimate.SIZE  # the registry's estimates are at these
DEFAULT_RATE = (60, 200)  # a model with no figure: assume a slow one, and say so
# (train images, test images) per competition; 2021's test count is not public here: 2020's is assumed.
SIZES = {
    "imet-2019-fgvc6": (109_237, 38_801),
    "imet-2020-fgvc7": (142_119, 21_318),
    "imet-2021-fgvc8": (142_119, 21_318),
}
SESSION_HOURS = {"train": 12.0, "submit": 9.0}  # Kaggle GPU session; iMet 2019's inference-kernel cap
WEEKLY_GPU_HOURS = 30.0
OVERHEAD_HOURS = 0.25  # start-up, pip install, the JPEG cache: counted in the quota
QUEUE_MINUTES = 10.0  # field reports: a GPU session waited about 10 minutes in Kaggle's queue


@dataclasses.dataclass(frozen=True)
class Rates:
    """Training images/s and predicted image views/s (one view, one fold model) of a model at a size on a card."""

    train_ips: float
    infer_ips: float
    source: str


def _card_key(card: str) -> str:
    """ "Tesla T4 x2" (what a kernel records) and "T4 x2" (what the metadata names) are one card."""
    return re.sub(r"[^a-z0-9]", "", card.lower().replace("nvidia", "").replace("tesla", ""))


def measured_records(runs_dir: Path | None = None) -> list[dict]:
    """Every throughput record under ``runs_dir`` (``<slug>/v<N>/run_status.json``); a submit kernel's record
    of several model families gives one record each."""
    records = []
    for path in sorted(Path(runs_dir or RUNS_DIR).glob(f"*/v*/{RUN_STATUS_FILE}")):
        if not re.fullmatch(r"v\d+", path.parent.name):  # not a half-pulled .v<N>.partial folder
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            records += [{**record, **row} for row in record.get("families") or [{}]]
    return records


def _latest(records: list[dict], field: str, *, model: str, size: int, card: str) -> dict | None:
    found = [
        r
        for r in records
        if r.get(field)
        and r.get("model") == model
        and int(r.get("image_size") or 0) == size
        and _card_key(str(r.get("card", ""))) == _card_key(card)
    ]
    return max(found, key=lambda r: str(r.get("finished_at", "")), default=None)


def _measured_on(record: dict) -> str:
    return f"measured on {record.get('card', '?')}, {str(record.get('finished_at', '?'))[:10]}"


def rates(model: str, size: int, *, card: str = CARD, runs_dir: Path | None = None) -> Rates:
    """The throughput the plan uses for ``model`` at ``size`` px on ``card``: each figure the latest measured,
    else the registry's estimate scaled by pixels."""
    estimate = getattr(MODELS.get(model), "throughput", None)
    scale = (THROUGHPUT_SIZE / size) ** 2  # cost grows with pixels
    train, infer = (float(x) * scale for x in (estimate or DEFAULT_RATE))
    guess = "estimate (unmeasured)" if estimate else "estimate (no figure for this model)"
    records = measured_records(runs_dir)
    got_train = _latest(records, "train_ips", model=model, size=size, card=card)
    got_infer = _latest(records, "infer_ips", model=model, size=size, card=card)
    if got_train and got_infer and _measured_on(got_train) == _measured_on(got_infer):
        source = _measured_on(got_train)
    elif got_train or got_infer:
        source = (
            f"train {_measured_on(got_train) if got_train else guess}; "
            f"inference {_measured_on(got_infer) if got_infer else guess}"
        )
    else:
        source = guess
    return Rates(
        train_ips=float(got_train["train_ips"]) if got_train else train,
        infer_ips=float(got_infer["infer_ips"]) if got_infer else infer,
        source=source,
    )


def kernel_hours(
    role: str, config: dict, *, train_config: dict, card: str = CARD, runs_dir: Path | None = None
) -> tuple[float, str]:
    """Hours of one kernel on the GPU (quota hours) and where its throughput comes from.

    Args:
        role: "train" or "submit".
        config: that kernel's full config (a train kernel's ``folds`` are the folds it trains).
        train_config: the train config (the submit kernel predicts with its model and size).
        card: the card the kernels run on.
        runs_dir: pulled runs, whose run_status.json records give measured figures.
    """
    n_train, n_test = SIZES.get(train_config["competition"], max(SIZES.values()))  # unknown: the largest
    r = rates(train_config["model"], int(train_config["image_size"]), card=card, runs_dir=runs_dir)
    if role == "train":
        n_folds, folds, epochs = train_config["n_folds"], len(config["folds"]), config["epochs"]
        fit = n_train * (n_folds - 1) / n_folds * epochs / r.train_ips
        oof_tta = int(config.get("oof_tta", 2))
        valid = n_train / n_folds * (epochs + (oof_tta if oof_tta > 1 else 0)) / r.infer_ips  # + the OOF's views
        return OVERHEAD_HOURS + folds * (fit + valid) / 3600, r.source
    views = len(config.get("tta_views") or []) or int(config.get("tta", 2))
    return OVERHEAD_HOURS + n_test * len(train_config["folds"]) * views / r.infer_ips / 3600, r.source


def _kernel_rows(build: Build, *, train_config: dict, submit_config: dict, gpu: dict[str, bool], **where) -> list:
    """(kernel, hours, source, on GPU) per kernel of the build."""
    rows = []
    for kernel in build:
        if kernel.fold is not None:
            config = dict(train_config, folds=[kernel.fold])
        else:
            config = train_config if kernel.role == "train" else submit_config
        hours, source = kernel_hours(kernel.role, config, train_config=train_config, **where)
        rows.append((kernel, hours, source, gpu.get(kernel.id, kernel.role == "train")))
    return rows


def plan_gpu_hours(
    build: Build,
    *,
    train_config: dict,
    submit_config: dict,
    gpu: dict[str, bool],
    runs_dir: Path | None = None,
    card: str = CARD,
) -> float:
    """The GPU hours of the whole plan, start-up included (what ``kaggle quota`` counts); not the queue."""
    rows = _kernel_rows(
        build, train_config=train_config, submit_config=submit_config, gpu=gpu, runs_dir=runs_dir, card=card
    )
    return sum(hours for _, hours, _, on_gpu in rows if on_gpu)


def plan_lines(
    build: Build,
    *,
    train_config: dict,
    submit_config: dict,
    gpu: dict[str, bool],
    runs_dir: Path | None = None,
    card: str = CARD,
) -> list[str]:
    """One line per kernel (hours, GPU or not, source of the figure), the queue, the total, and warnings."""
    rows = _kernel_rows(
        build, train_config=train_config, submit_config=submit_config, gpu=gpu, runs_dir=runs_dir, card=card
    )
    lines = []
    for kernel, hours, source, on_gpu in rows:
        lines.append(f"  {kernel.id:<44} {hours:5.1f} h {'GPU' if on_gpu else 'CPU'}  {source}")
        if hours > SESSION_HOURS[kernel.role]:
            lines.append(
                f"  warning: {kernel.id} would run {hours:.1f} h, over its {SESSION_HOURS[kernel.role]:.0f} h "
                f"session: train fewer folds per kernel (--split-folds or --set folds=[...])"
            )
    sessions = sum(1 for *_, on_gpu in rows if on_gpu)
    lines.append(
        f"  {'GPU queue':<44} {sessions * QUEUE_MINUTES / 60:5.1f} h wall clock, not quota: about "
        f"{QUEUE_MINUTES:.0f} min per GPU session x {sessions} (field reports); start-up and pip install are "
        f"in each kernel's hours"
    )
    total = sum(hours for _, hours, _, on_gpu in rows if on_gpu)
    lines.append(f"  total: {total:.1f} GPU hours of the weekly quota of about {WEEKLY_GPU_HOURS:.0f}")
    if total > WEEKLY_GPU_HOURS:
        lines.append(
            f"  warning: the plan needs {total:.1f} GPU hours, more than the weekly quota of about "
            f"{WEEKLY_GPU_HOURS:.0f}"
        )
    lines += version_warnings(runs_dir)
    model, size = train_config["model"], train_config["image_size"]
    head = (
        f"plan: {model} at {size}px, {len(train_config['folds'])} fold(s) x {train_config['epochs']} epochs, "
        f"TTA {submit_config.get('tta')}, on {card} (figures are estimates unless marked measured)"
    )
    return [head, *lines]


def required_versions(requirements: Path | None = None) -> dict[str, str]:
    """The version specifiers requirements.txt gives TensorFlow and Keras: {"tensorflow": "==2.20.0", ...}."""
    from packaging.requirements import InvalidRequirement, Requirement

    found = {}
    for line in Path(requirements or REQUIREMENTS).read_text().splitlines():
        try:
            req = Requirement(line.split("#")[0].strip())
        except InvalidRequirement:
            continue
        for key, names in VERSIONED.items():
            if req.name.lower() in names and str(req.specifier):
                found[key] = str(req.specifier)
    return found


def version_warnings(runs_dir: Path | None = None, requirements: Path | None = None) -> list[str]:
    """A warning per pulled run (``runs/<slug>/v<N>/run_status.json``) whose recorded TensorFlow or Keras version
    is outside what requirements.txt allows: what was tested here is not what ran on Kaggle."""
    from packaging.specifiers import SpecifierSet

    required = required_versions(requirements)
    lines = []
    for path in sorted(Path(runs_dir or RUNS_DIR).glob(f"*/v*/{RUN_STATUS_FILE}")):
        try:
            ran = json.loads(path.read_text()).get("versions") or {}
        except (OSError, ValueError, AttributeError):
            continue
        off = [
            f"{key} {ran[key]} (requirements.txt: {spec})"
            for key, spec in required.items()
            if ran.get(key) and not SpecifierSet(spec).contains(str(ran[key]), prereleases=True)
        ]
        if off:
            run = f"{path.parent.parent.name}/{path.parent.name}"
            lines.append(
                f"  warning: {run} ran {', '.join(off)}: Kaggle's image is not what requirements.txt pins; test "
                f"with those versions or update requirements.txt"
            )
    return lines
