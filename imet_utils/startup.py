"""One kernel start-up for both kernels: the config, the clock counted from the process start, and the paths."""

from __future__ import annotations

from typing import Any, NamedTuple

from imet_utils.budget import Budget, Stages
from imet_utils.config import from_dict
from imet_utils.paths import KagglePaths, kaggle_paths


class KernelStart(NamedTuple):
    config: Any
    budget: Budget
    stages: Stages
    paths: KagglePaths


def start_kernel(cls: type, values: dict) -> KernelStart:
    """Validates the kernel's ``CONFIG`` (``cls``: TrainConfig or SubmitConfig), starts its budget from the
    process start (Kaggle's limit runs from the session's start) and its stage clock, and makes the output folder.
    """
    config = from_dict(cls, values)
    budget = Budget.from_process_start(config.time_budget_hours)
    paths = kaggle_paths()
    paths.working.mkdir(parents=True, exist_ok=True)
    return KernelStart(config, budget, Stages(budget), paths)
