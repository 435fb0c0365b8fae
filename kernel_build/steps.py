"""The Kaggle steps of build_kernel.py, in the order a run takes them: probe, plan, push, wait, status, submit.
Each is one function over a build; the command line only picks them. Every one starts with the same reconcile
step (``Orchestrator.settle``): what Kaggle says plus what the ledger says, so none needs another to have run
first, and each resumes after any stop."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from kernel_build.kaggle_cli import KaggleCli, has_credentials
from kernel_build.kernel import METADATA_FILE, Build, BuildError, Kernel
from kernel_build.leaderboard import probe, submission_message, submit
from kernel_build.orchestrate import (
    ACTIVE,
    NOT_PUSHED,
    PLACEHOLDER_OWNER,
    Orchestrator,
    ReadFailed,
    content_hash,
    fetch_file,
    placeholder_problems,
)
from kernel_build.plan import plan_gpu_hours, plan_lines
from kernel_build.quota import check_quota, read_quota


def print_plan(build: Build, *, train_config: dict, submit_config: dict, runs_dir: Path) -> float:
    """Prints the plan; returns its GPU hours."""
    gpu = {k.id: bool(k.metadata().get("enable_gpu")) for k in build}
    kwargs = dict(train_config=train_config, submit_config=submit_config, gpu=gpu, runs_dir=runs_dir)
    for line in plan_lines(build, **kwargs):
        print(line)
    return plan_gpu_hours(build, **kwargs)


def print_quota(need_h: float) -> None:
    """The plan against ``kaggle quota``, where the CLI and credentials are here (a warning, never a refusal)."""
    if not (has_credentials() and shutil.which("kaggle")):
        print("  (no kaggle CLI or credentials here: the plan is not compared with your GPU quota)")
        return
    try:
        for line in check_quota(read_quota(KaggleCli()), need_h, force=False, refuse=False):
            print(line)
    except BuildError as e:
        print(f"  (kaggle quota: {e})")


def orchestrator(build: Build, args, competition: str, budgets_h: dict | None = None) -> Orchestrator:
    return Orchestrator(
        build,
        competition=competition,
        runs_dir=args.runs,
        poll=args.poll,
        max_parallel=getattr(args, "max_parallel", 1),
        force=getattr(args, "force", False),
        budgets_h=budgets_h,
    )


def _budgets(build: Build, train_config: dict, submit_config: dict) -> dict[str, float]:
    return {
        k.id: float((train_config if k.role == "train" else submit_config).get("time_budget_hours") or 0) for k in build
    }


def _waves(build: Build, orch: Orchestrator, which: str) -> list[dict]:
    """The plan as the ledger keeps it: each kernel with its wave and content hash."""
    kernels = (list(build.train) if which in ("train", "all") else []) + (
        [build.submit] if which in ("submit", "all") else []
    )
    rows, gpu_seen = [], 0
    for kernel in kernels:
        gpu = orch.uses_gpu(kernel)
        wave = gpu_seen // max(1, orch.max_parallel) if kernel.role == "train" else None
        gpu_seen += gpu
        rows.append({"id": kernel.id, "role": kernel.role, "wave": wave, "hash": content_hash(kernel), "gpu": gpu})
    if rows and rows[-1]["role"] == "submit":
        rows[-1]["wave"] = max((r["wave"] or 0 for r in rows[:-1]), default=-1) + 1  # last
    return rows


def push(build: Build, args, *, competition: str, train_config: dict, submit_config: dict) -> None:
    """``push [train|submit|all] [--wait]``: the plan and the quota first, then the pushes in their waves."""
    problems = placeholder_problems(build)
    if problems:
        raise BuildError("\n  ".join(["refusing to push:", *problems]))
    if args.which == "all" and not args.wait:
        raise BuildError("push all pushes the submit kernel after the train kernels complete: add --wait")
    orch = orchestrator(build, args, competition, _budgets(build, train_config, submit_config))
    orch.ledger.hold_driver(f"push {args.which}")  # taken before the build already (build_kernel.py): a no-op
    need = print_plan(build, train_config=train_config, submit_config=submit_config, runs_dir=args.runs)
    todo = [k for k in _kernels(build, args.which) if orch.uses_gpu(k) and orch.next_step(k) == "push"]
    if len(todo) > orch.max_parallel and not args.wait:
        raise BuildError(
            f"{len(todo)} GPU kernels to push but at most {orch.max_parallel} run at a time: add --wait to push "
            "them in waves (a stop is resumed by the same command)"
        )
    if todo:
        share = sum(orch.uses_gpu(k) for k in todo) / max(1, sum(orch.uses_gpu(k) for k in build))
        for line in check_quota(read_quota(orch.cli), need * share, force=args.force):
            print(line)
    orch.ledger.set_plan(
        {"command": f"push {args.which}", "at": time.time(), "kernels": _waves(build, orch, args.which)}
    )
    if args.which in ("train", "all"):
        orch.push(build.train, wait=args.wait)
    if args.which in ("submit", "all"):
        refuse_unfinished_sources(orch, build)
        orch.push([build.submit], wait=args.wait)
    if not args.wait:
        print("next: python build_kernel.py wait   (polls until they end; any step resumes after a stop)")
    elif args.which != "train":
        print("next: python build_kernel.py submit")
    else:
        print("next: python build_kernel.py push submit --wait")


def _kernels(build: Build, which: str) -> list[Kernel]:
    return (list(build.train) if which in ("train", "all") else []) + (
        [build.submit] if which in ("submit", "all") else []
    )


def refuse_unfinished_sources(orch: Orchestrator, build: Build) -> None:
    """The submit kernel only after every train kernel it sources completed on the content built now."""
    not_ready = [k for k in build.train if orch.next_step(k) != "skip"]
    if not_ready and not orch.force:
        raise BuildError(
            "refusing to push the submit kernel: these train kernels are not complete on what is built now: "
            + ", ".join(k.id for k in not_ready)
            + ". push train --wait (or push all --wait) first, or --force"
        )


def wait(build: Build, args, *, competition: str) -> None:
    """``wait``: waits for every kernel of the build whose latest push hasn't concluded."""
    orch = orchestrator(build, args, competition)
    orch.ledger.hold_driver("wait")
    pending = []
    for kernel in build:
        try:
            latest = orch.settle(kernel)
        except ReadFailed as e:
            print(f"{kernel.id}: {e}")
            latest = orch.ledger.latest(kernel.id)
        if latest is not None and latest.get("verdict") is None:
            pending.append(kernel)
    if not pending:
        print("nothing to wait for: every pushed kernel has concluded (status shows them)")
        return
    orch.wait(pending)


def status(build: Build, args, *, competition: str) -> None:
    """``status``: the ledger against Kaggle's answers: what ran, what is running, what is left."""
    orch = orchestrator(build, args, competition)
    for kernel in build:
        unread = ""
        try:
            latest = orch.settle(kernel)
        except ReadFailed as e:
            latest, unread = orch.ledger.latest(kernel.id), f"; {e}"
        now = orch.observe(kernel.id)
        if latest is None:
            where = "not pushed from here" if now == NOT_PUSHED else f"{now} on Kaggle, not pushed from here"
            print(f"{kernel.id:<40} left: {where}")
            continue
        stale = "" if latest.get("hash") == content_hash(kernel) else "; the build changed since (push makes a new one)"
        verdict = latest.get("verdict")
        if verdict == "ok":
            what = "ran: complete (run_status ok)"
        elif verdict == "failed":
            what = f"ran: FAILED ({latest.get('why')})"
        elif now in ACTIVE:
            what = f"running: {now}"
        else:
            what = f"pushed, not concluded: Kaggle says {now}"
        print(f"{kernel.id:<40} v{latest['version']}  {what}{stale}{unread}")
    for row in orch.ledger.read()["submissions"]:
        scores = f"public {row.get('public')}, private {row.get('private')}" if row.get("public") else ""
        ref = row.get("ref") or "(no ref yet)"
        print(f"submission {ref}: {row['kernel']} v{row['version']} {row.get('status')} {scores}".rstrip())


def submit_step(build: Build, args, *, competition: str) -> None:
    """``submit``: the submit kernel's output, with a message naming model, size, folds, epochs and rule."""
    orch = orchestrator(build, args, competition)
    orch.ledger.hold_driver("submit")
    kernel = build.submit
    latest = orch.settle(kernel) or {}
    version = args.version or latest.get("version")
    if not version:
        raise BuildError(f"no pushed version of {kernel.id} is known here: push it, or pass --version N")
    if not args.version and latest.get("verdict") != "ok":
        raise BuildError(
            f"{kernel.id} version {version} has not completed with its run_status ok "
            f"({latest.get('why') or 'its run has not ended on Kaggle yet'}): python build_kernel.py wait"
        )
    message = _message(orch, build, kernel, version)
    submit(orch, kernel, version=version, message=message)


def _message(orch: Orchestrator, build: Build, kernel: Kernel, version: int) -> str:
    train = build.train[0]
    train_version = (orch.ledger.latest(train.id) or {}).get("version") or 1
    train_config = fetch_file(orch.cli, train.id, train_version, "config.json") or {}
    decision = fetch_file(orch.cli, kernel.id, version, "decision.json") or {}
    defaults = {"model": "?", "image_size": "?", "folds": [], "n_folds": "?", "epochs": "?"}
    train_config = {**defaults, **train_config}
    if len(build.train) > 1:
        train_config["folds"] = [k.fold for k in build.train]
    return submission_message(train_config, decision)


def run_probe(args, *, owner: str, competition: str) -> int:
    if owner == PLACEHOLDER_OWNER:
        raise BuildError(
            f"refusing to probe: {METADATA_FILE}'s id still has the placeholder owner "
            f"{PLACEHOLDER_OWNER!r}: put your Kaggle username there"
        )
    return probe(owner, competition=competition, out_dir=args.out, runs_dir=args.runs, poll=args.poll)
