"""The kernel's own word on how its run ended: ``run_status.json``, written as its last act.

Kaggle can report a script kernel ``COMPLETE`` although the script crashed (reported from the field). So the
orchestrator trusts a run only when its output holds this file with ``"ok": true``; a crash never reaches the
line that writes it. A kernel stopped by its time budget writes ``"ok": false`` and the folds left, so that
the next step says "resume" rather than "done". The other fields are for people and for ``plan``: which
kernel, which folds finished, each stage's seconds, and whatever the kernel measured (card, throughput).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

RUN_STATUS_FILE = "run_status.json"


def write_run_status(
    out: Path,
    *,
    ok: bool,
    kernel: str,
    stages: dict[str, float],
    folds_done: list[int] | None = None,
    folds_left: list[int] | None = None,
    **measured,
) -> Path:
    """Writes ``out/run_status.json`` atomically (a reader never sees half a file) and returns its path.

    Args:
        out: the kernel's output folder.
        ok: the run did all it was asked to do.
        kernel: "train" or "submit" (or "probe").
        stages: seconds per stage, as the kernel's ``Stages`` logged them.
        folds_done: the folds whose training finished (train kernels).
        folds_left: the folds still to train (a run stopped by its time budget).
        measured: anything else worth keeping: the card, replicas, throughput figures.
    """
    record = {
        "ok": bool(ok),
        "kernel": kernel,
        "folds_done": sorted(folds_done or []),
        "folds_left": sorted(folds_left or []),
        "stages": {name: round(float(s), 3) for name, s in stages.items()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **measured,
    }
    path = Path(out) / RUN_STATUS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return path
