"""``pull`` and ``report``: each kernel run's output under ``runs/<slug>/v<N>/``, and one table of them."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from kernel_build.kaggle_cli import KaggleCli
from kernel_build.kernel import Build, BuildError
from kernel_build.ledger import Ledger, ledger_dir
from kernel_build.orchestrate import RUN_STATUS, Orchestrator, ReadFailed

# What pull leaves out unless --models: the exported models and checkpoints; and only those with --models.
NOT_MODELS = r"^(?!.*(^|/)model/)(?!.*\.keras$)(?!.*\.h5$)"
ONLY_MODELS = r"((^|/)model/|\.keras$|\.h5$)"
PULLED_FILE = ".pulled.json"  # in a pulled version: what was fetched (models or not)


def pull(
    build: Build,
    runs_dir: Path,
    *,
    orch: Orchestrator,
    kernel: str | None = None,
    version: int | None = None,
    models: bool = False,
) -> list[Path]:
    """Downloads each complete run into ``runs/<slug>/v<N>/`` through a temporary folder renamed when done, so a
    stop never leaves an empty or partial version. A version pulled before is kept; ``models`` adds its models.
    A run that ended on Kaggle is concluded here (``orch.settle``): no ``wait`` is needed first.

    Args:
        orch: the reconcile step's orchestrator (its CLI and ledger).
        kernel: only this kernel (its id or slug); needed with ``version``, since each kernel has its own.
        version: that version instead of the latest pushed from here.
    """
    kernels = [k for k in build if kernel in (None, k.id, k.slug)]
    if kernel and not kernels:
        raise BuildError(f"no kernel {kernel!r} in this build: {[k.slug for k in build]}")
    if version and len(kernels) > 1:
        raise BuildError("--version names one kernel's version: add --kernel SLUG")
    cli: KaggleCli = orch.cli
    folders = []
    for k in kernels:
        try:
            latest = (orch.settle(k) if not version else orch.ledger.latest(k.id)) or {}
        except ReadFailed as e:
            print(f"{k.id}: not pulled: {e}")
            continue
        n = version or latest.get("version")
        if not n:
            print(f"{k.id}: no pushed version known here; pass --kernel {k.slug} --version N")
            continue
        if not version and latest.get("verdict") != "ok":
            why = latest.get("why") or "its run has not ended on Kaggle yet"
            print(f"{k.id} v{n}: not pulled, its run is not complete ({why})")
            continue
        folder = _pull_one(cli, k, n, Path(runs_dir), models=models)
        if folder:
            folders.append(folder)
    return folders


def _pull_one(cli: KaggleCli, kernel, n: int, runs_dir: Path, *, models: bool) -> Path | None:
    dest = runs_dir / kernel.slug / f"v{n}"
    pulled = json.loads((dest / PULLED_FILE).read_text()) if (dest / PULLED_FILE).is_file() else {}
    if dest.is_dir() and (pulled.get("models") or not models):
        print(f"{kernel.id} v{n}: already pulled in {dest}, kept")
        return dest
    adding = dest.is_dir()
    pattern = ONLY_MODELS if adding else (None if models else NOT_MODELS)
    partial = dest.with_name(f".v{n}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        args = ["kernels", "output", f"{kernel.id}/{n}", "-p", str(partial), "--force"]
        answer = cli.call(*args, *(["--file-pattern", pattern] if pattern else []), timeout=3600)
        if answer.kind != "ok":
            raise BuildError(f"kaggle kernels output {kernel.id}/{n} failed: {answer.why()}")
        if not adding and not (partial / RUN_STATUS).is_file():
            raise BuildError(f"{kernel.id} v{n} has no {RUN_STATUS} in its output: not a complete run, not pulled")
        files = _merge(partial, dest) if adding else _rename(partial, dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    (dest / PULLED_FILE).write_text(json.dumps({"models": models or bool(pulled.get("models"))}) + "\n")
    what = "models added" if adding else ("" if models else " (models left out)")
    print(f"{kernel.id} v{n}: {files} file(s) in {dest}{what if not adding else ': ' + what}")
    return dest


def _rename(partial: Path, dest: Path) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(dest)
    return sum(1 for p in dest.rglob("*") if p.is_file())


def _merge(partial: Path, dest: Path) -> int:
    count = 0
    for src in sorted(p for p in partial.rglob("*") if p.is_file()):
        target = dest / src.relative_to(partial)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
        count += 1
    return count


def _log_hours(folder: Path) -> float | None:
    """The run's length from its log (the last event's time)."""
    for log in folder.glob("*.log"):
        try:
            events = json.loads(log.read_text())
            return max(float(e.get("time", 0)) for e in events) / 3600 if events else None
        except (ValueError, TypeError, AttributeError):
            return None
    return None


def _row(folder: Path, submissions: list[dict], pushes: dict[str, dict]) -> dict[str, str]:
    slug, version = folder.parent.name, int(folder.name[1:])
    kid = next((k for k in pushes if k.endswith("/" + slug)), slug)
    row = {
        "kernel": slug,
        "version": str(version),
        "model": "",
        "size": "",
        "epochs": "",
        "folds": "",
        "oof_f2": "",
        "rules": "",
        "chosen": "",
        "lb": "",
        "gpu_h": "",
    }
    config_path = folder / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        row.update(
            model=str(config.get("model", "")),
            size=str(config.get("image_size", "")),
            epochs=str(config.get("epochs", "")),
        )
        states = [json.loads(p.read_text()) for p in sorted(folder.glob("fold*/state.json"))]
        done = [s for s in states if s.get("finished")]
        row["folds"] = f"{len(done)}/{len(config.get('folds', states))}"
        if done:
            row["oof_f2"] = f"{sum(s['best_f2'] for s in done) / len(done):.4f} (fold mean)"
    decision_path = folder / "decision.json"
    if decision_path.is_file():
        decision = json.loads(decision_path.read_text())
        row["rules"] = " ".join(f"{r} {f:.4f}" for r, f in decision.get("oof_f2", {}).items())
        row["chosen"] = str(decision.get("chosen", ""))
        pooled = decision.get("oof_f2_in_sample", {}).get("global")
        row["oof_f2"] = f"{pooled:.4f} (pooled)" if pooled is not None else ""
    scored = [s for s in submissions if s.get("kernel") == kid and int(s.get("version", 0)) == version]
    if scored and scored[-1].get("public"):
        row["lb"] = f"{scored[-1]['public']} / {scored[-1].get('private', '')}"
    hours = _log_hours(folder)
    if hours is not None:
        row["gpu_h"] = f"{hours:.2f}" if pushes.get(kid, {}).get("gpu", True) else f"{hours:.2f} (CPU)"
    return row


COLUMNS = [
    ("kernel", "kernel"),
    ("version", "v"),
    ("model", "model"),
    ("size", "size"),
    ("epochs", "epochs"),
    ("folds", "folds"),
    ("oof_f2", "OOF F2"),
    ("rules", "cross-fitted F2 per rule"),
    ("chosen", "rule"),
    ("lb", "LB public / private"),
    ("gpu_h", "GPU h"),
]


def report(runs_dir: Path) -> str:
    """Prints one row per pulled run and writes ``runs/report.md`` with the training curves side by side."""
    runs_dir = Path(runs_dir)

    ledger = Ledger(ledger_dir(runs_dir), legacy=runs_dir).read()
    submissions = ledger["submissions"]
    pushes = {kid: entry["pushes"][-1] for kid, entry in ledger["kernels"].items() if entry.get("pushes")}
    folders = sorted(
        (p for p in runs_dir.glob("*/v*") if p.is_dir() and re.fullmatch(r"v\d+", p.name)),
        key=lambda p: (p.parent.name, int(p.name[1:])),
    )
    if not folders:
        raise BuildError(f"nothing pulled in {runs_dir}: python build_kernel.py pull")
    rows = [_row(f, submissions, pushes) for f in folders]
    widths = {k: max(len(h), *(len(r[k]) for r in rows)) for k, h in COLUMNS}
    lines = ["  ".join(h.ljust(widths[k]) for k, h in COLUMNS)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k, _ in COLUMNS).rstrip() for r in rows]
    md = ["# Runs", "", "| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(r[k] for k, _ in COLUMNS) + " |" for r in rows]
    curves = [f for f in folders if (f / "training_curves.png").is_file()]
    if curves:
        md += ["", "## Training curves", ""]
        width = 100 // min(len(curves), 3) - 1  # up to three side by side
        md += [
            " ".join(
                f'<img src="{c.relative_to(runs_dir)}/training_curves.png" width="{width}%" '
                f'title="{c.parent.name} {c.name}">'
                for c in curves
            )
        ]
    (runs_dir / "report.md").write_text("\n".join(md) + "\n")
    text = "\n".join(lines)
    print(text)
    print(f"wrote {runs_dir / 'report.md'}")
    return text
