"""``--plan``: the GPU hours each kernel of a build will take, before a GPU hour is spent.

Hours come from the configured model, image size, folds, epochs and TTA and a throughput table. No figure
here has been measured yet: every row of ``THROUGHPUT`` is a rough estimate, not taken from a cited benchmark,
and is printed as an unmeasured estimate. A figure measured by ``bench/gpu.py`` on a named card goes in
``bench/gpu_measured.json`` (a list of
``{"model", "size", "card", "train_ips", "infer_ips"}``) and then wins, printed as measured.
"""

from __future__ import annotations

import json

from kernel_build.kernel import ROOT, Build

MEASURED_FILE = ROOT / "bench" / "gpu_measured.json"
CARD = "T4 x2"  # the machine_shape the metadata names (NvidiaTeslaT4)
# (train img/s, inference img/s) at 288 px in float16 on T4 x2: rough estimates (relative model costs, an
# assumed T4 rate), not from a cited benchmark; none measured by bench/gpu.py yet. Replace them with measurements.
THROUGHPUT: dict[str, tuple[float, float]] = {
    "efficientnet-b0": (420, 1300),
    "efficientnet-b3": (170, 560),
    "efficientnet-b4": (95, 320),
    "efficientnet-b5": (55, 190),
    "efficientnetv2-b0": (450, 1400),
    "efficientnetv2-b3": (190, 620),
    "efficientnetv2-s": (150, 480),
    "efficientnetv2-m": (75, 250),
    "convnext-tiny": (140, 450),
    "convnext-small": (85, 280),
    "convnext-base": (55, 180),
    "tiny-cnn": (5000, 15000),
}
REFERENCE_SIZE = 288
DEFAULT_RATE = (60, 200)  # a model with no row: assume a slow one, and say so
# (train images, test images) per competition; 2021's test count is not public here: 2020's is assumed.
SIZES = {
    "imet-2019-fgvc6": (109_237, 38_801),
    "imet-2020-fgvc7": (142_119, 21_318),
    "imet-2021-fgvc8": (142_119, 21_318),
}
SESSION_HOURS = {"train": 12.0, "submit": 9.0}  # Kaggle GPU session; iMet 2019's inference-kernel cap
WEEKLY_GPU_HOURS = 30.0
OVERHEAD_HOURS = 0.25  # start-up, pip install, the JPEG cache


def _rates(model: str, size: int) -> tuple[float, float, str]:
    """(train img/s, inference img/s, where the figure comes from) for a model at ``size`` px."""
    try:
        measured = json.loads(MEASURED_FILE.read_text()) if MEASURED_FILE.is_file() else []
    except ValueError:
        measured = []
    for row in measured:
        if row.get("model") == model and int(row.get("size", 0)) == size:
            return float(row["train_ips"]), float(row["infer_ips"]), f"measured on {row.get('card', '?')}"
    train, infer = THROUGHPUT.get(model, DEFAULT_RATE)
    scale = (REFERENCE_SIZE / size) ** 2  # cost grows with pixels
    source = "estimate (unmeasured)" if model in THROUGHPUT else "estimate (no figure for this model)"
    return train * scale, infer * scale, source


def kernel_hours(role: str, config: dict, *, train_config: dict) -> tuple[float, str]:
    """Estimated hours of one kernel and where its throughput comes from.

    Args:
        role: "train" or "submit".
        config: that kernel's full config (a train kernel's ``folds`` are the folds it trains).
        train_config: the train config (the submit kernel predicts with its model and size).
    """
    n_train, n_test = SIZES.get(train_config["competition"], max(SIZES.values()))  # unknown: the largest
    train_ips, infer_ips, source = _rates(train_config["model"], int(train_config["image_size"]))
    if role == "train":
        n_folds, folds, epochs = train_config["n_folds"], len(config["folds"]), config["epochs"]
        fit = n_train * (n_folds - 1) / n_folds * epochs / train_ips
        oof_tta = int(config.get("oof_tta", 2))
        valid = n_train / n_folds * (epochs + (oof_tta if oof_tta > 1 else 0)) / infer_ips  # + the OOF's views
        return OVERHEAD_HOURS + folds * (fit + valid) / 3600, source
    views = len(config.get("tta_views") or []) or int(config.get("tta", 2))
    return OVERHEAD_HOURS + n_test * len(train_config["folds"]) * views / infer_ips / 3600, source


def plan_lines(build: Build, *, train_config: dict, submit_config: dict, gpu: dict[str, bool]) -> list[str]:
    """One line per kernel (hours, GPU or not, source of the figure), the total, and warnings."""
    lines, total = [], 0.0
    for kernel in build:
        config = (
            dict(train_config, folds=[kernel.fold])
            if kernel.fold is not None
            else (train_config if kernel.role == "train" else submit_config)
        )
        hours, source = kernel_hours(kernel.role, config, train_config=train_config)
        on_gpu = gpu.get(kernel.id, kernel.role == "train")
        total += hours if on_gpu else 0.0
        lines.append(f"  {kernel.id:<44} {hours:5.1f} h {'GPU' if on_gpu else 'CPU'}  {source}")
        if hours > SESSION_HOURS[kernel.role]:
            lines.append(
                f"  warning: {kernel.id} would run {hours:.1f} h, over its {SESSION_HOURS[kernel.role]:.0f} h "
                f"session: train fewer folds per kernel (--split-folds or --set folds=[...])"
            )
    lines.append(f"  total: {total:.1f} GPU hours of the weekly quota of about {WEEKLY_GPU_HOURS:.0f}")
    if total > WEEKLY_GPU_HOURS:
        lines.append(
            f"  warning: the plan needs {total:.1f} GPU hours, more than the weekly quota of about "
            f"{WEEKLY_GPU_HOURS:.0f}"
        )
    model, size = train_config["model"], train_config["image_size"]
    head = (
        f"plan: {model} at {size}px, {len(train_config['folds'])} fold(s) x {train_config['epochs']} epochs, "
        f"TTA {submit_config.get('tta')}, on {CARD} (no GPU figure measured yet unless marked measured)"
    )
    return [head, *lines]
