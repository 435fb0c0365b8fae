"""``--pull`` and ``--report``: each kernel run's output under ``runs/<slug>/v<N>/``, and one table of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kernel_build.kernel import Build, BuildError
from kernel_build.orchestrate import kaggle

# What --pull leaves out unless --pull-models: the exported models and checkpoints.
NOT_MODELS = r"^(?!.*(^|/)model/)(?!.*\.keras$)(?!.*\.h5$)"


def pull(build: Build, runs_dir: Path, *, version: int | None = None, models: bool = False) -> list[Path]:
    """Downloads each kernel's latest pushed version (or ``version``) into ``runs/<slug>/v<N>/``; a version
    pulled before is kept as it is. Returns the folders."""
    runs_dir = Path(runs_dir)
    pushes_path = runs_dir / "pushes.json"
    pushes = json.loads(pushes_path.read_text()) if pushes_path.is_file() else {}
    folders = []
    for kernel in build:
        n = version or pushes.get(kernel.id, {}).get("version")
        if not n:
            print(f"{kernel.id}: no pushed version known here; pass --version N")
            continue
        dest = runs_dir / kernel.slug / f"v{n}"
        if dest.exists():
            print(f"{kernel.id} v{n}: already pulled in {dest}, kept")
            folders.append(dest)
            continue
        partial = dest.with_name(f".v{n}.partial")
        args = ["kernels", "output", f"{kernel.id}/{n}", "-p", str(partial), "--force"]
        rc, out, err = kaggle(*args, *([] if models else ["--file-pattern", NOT_MODELS]))
        if rc != 0:
            raise BuildError(f"kaggle kernels output {kernel.id}/{n} failed: {err.strip() or out.strip()}")
        partial.rename(dest)
        files = sorted(p for p in dest.rglob("*") if p.is_file())
        print(f"{kernel.id} v{n}: {len(files)} file(s) in {dest}" + ("" if models else " (models left out)"))
        folders.append(dest)
    return folders


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

    def load(p):
        return json.loads(p.read_text()) if p.is_file() else None

    submissions = load(runs_dir / "submissions.json") or []
    pushes = load(runs_dir / "pushes.json") or {}
    folders = sorted(
        (p for p in runs_dir.glob("*/v*") if p.is_dir() and re.fullmatch(r"v\d+", p.name)),
        key=lambda p: (p.parent.name, int(p.name[1:])),
    )
    if not folders:
        raise BuildError(f"nothing pulled in {runs_dir}: python build_kernel.py --pull")
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
