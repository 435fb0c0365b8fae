"""The kernel's own word on how its run ended: ``run_status.json``, written as its last act.

Kaggle can report a script kernel ``COMPLETE`` although the script crashed (reported from the field). So the
orchestrator trusts a run only when its output holds this file with ``"ok": true``; a crash never reaches the
line that writes it. A kernel stopped by its time budget writes ``"ok": false`` and the folds left, so that
the next step says "resume" rather than "done". The other fields are for people and for ``plan``: which
kernel, which folds finished, each stage's seconds, and whatever the kernel measured (card, throughput).

It also says what ran, so that a version's state can be rebuilt from Kaggle alone: ``content_hash``, the built
kernel's own (its ``CONTENT_HASH`` constant, the hash the orchestrator compares), and for the submit kernel
``inputs``, what each train output it read said of itself (``input_status``).
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
    content_hash: str = "",
    inputs: dict[str, dict] | None = None,
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
        content_hash: the built kernel's content hash (its ``CONTENT_HASH``; "" in an unbuilt source).
        inputs: per kernel output read (its ``owner/slug``), ``input_status`` of it (the submit kernel).
        measured: anything else worth keeping: the card, replicas, throughput figures.
    """
    record = {
        "ok": bool(ok),
        "kernel": kernel,
        "folds_done": sorted(folds_done or []),
        "folds_left": sorted(folds_left or []),
        "stages": {name: round(float(s), 3) for name, s in stages.items()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "content_hash": content_hash,
        **({} if inputs is None else {"inputs": inputs}),
        **measured,
    }
    path = Path(out) / RUN_STATUS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return path


def input_status(folder: Path, kernel: str) -> dict:
    """What another kernel's output (attached as input) says of the run that made it: its ``run_status.json``'s
    ``content_hash`` and ``finished_at``, with ``kernel`` (its ``owner/slug``). An output without the file (a
    run of an earlier release, or one copied by hand) or with an unreadable one is recorded as such."""
    path = Path(folder) / RUN_STATUS_FILE
    if not path.is_file():
        return {"kernel": kernel, "missing": True}
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return {"kernel": kernel, "unreadable": f"{path}: {e}"}
    return {
        "kernel": kernel,
        "content_hash": record.get("content_hash") or None,
        "finished_at": record.get("finished_at"),
        "ok": record.get("ok"),
    }
