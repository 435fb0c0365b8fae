"""The Kaggle steps of build_kernel.py, in the order a run takes them: probe, plan, push, wait, submit, pull,
report. Each is one function over a build; the command line only picks them."""

from __future__ import annotations

import json
from pathlib import Path

from kernel_build.kernel import METADATA_FILE, Build, BuildError
from kernel_build.orchestrate import (
    PLACEHOLDER_OWNER,
    Orchestrator,
    fetch_file,
    placeholder_problems,
    probe,
    submission_message,
)
from kernel_build.plan import plan_lines


def print_plan(build: Build, *, train_config: dict, submit_config: dict) -> None:
    gpu = {k.id: bool(k.metadata().get("enable_gpu")) for k in build}
    for line in plan_lines(build, train_config=train_config, submit_config=submit_config, gpu=gpu):
        print(line)


def _orchestrator(build: Build, args, competition: str) -> Orchestrator:
    return Orchestrator(
        build,
        competition=competition,
        runs_dir=args.runs,
        poll=args.poll,
        max_parallel=args.max_parallel,
        force=args.force,
    )


def push(build: Build, args, *, competition: str, train_config: dict, submit_config: dict) -> None:
    """``--push [train|submit|all] [--wait]``: the plan first, then the pushes in an order that can't go stale."""
    problems = placeholder_problems(build)
    if problems:
        raise BuildError("\n  ".join(["refusing to push:", *problems]))
    print_plan(build, train_config=train_config, submit_config=submit_config)
    if args.push == "all" and not args.wait:
        raise BuildError("--push all pushes the submit kernel after the train kernels complete: add --wait")
    orch = _orchestrator(build, args, competition)
    if args.push in ("train", "all"):
        orch.refuse_running(build.train)
        orch.push(build.train, wait=args.wait)
    if args.push in ("submit", "all"):
        orch.refuse_stale_sources(build.submit)
        orch.refuse_running([build.submit])
        orch.push([build.submit], wait=args.wait)
    if not args.wait:
        print("next: python build_kernel.py --wait   (polls until they end)")
    elif args.push != "train":
        print("next: python build_kernel.py --submit")
    else:
        print("next: python build_kernel.py --push submit --wait")


def wait(build: Build, args, *, competition: str) -> None:
    """``--wait`` alone: waits for every kernel of the build pushed from here whose run isn't seen done."""
    orch = _orchestrator(build, args, competition)
    pending = [k.id for k in build if k.id in orch.state]
    if not pending:
        raise BuildError("no kernel of this build was pushed from here (runs/pushes.json): --push first")
    orch.wait(pending)


def submit(build: Build, args, *, competition: str) -> None:
    """``--submit``: the submit kernel's output, with a message naming model, size, folds, epochs and rule."""
    orch = _orchestrator(build, args, competition)
    kernel = build.submit
    version = args.version or orch.state.get(kernel.id, {}).get("version")
    if not version:
        raise BuildError(f"no pushed version of {kernel.id} is known here: pass --version N")
    status = orch.status(kernel.id)
    if not args.version and not (status == "COMPLETE" and orch.done(kernel.id, status)):
        raise BuildError(
            f"{kernel.id} is not complete on version {version} ({orch._describe(kernel.id, status)}): --wait first"
        )
    train = build.train[0]
    train_version = orch.state.get(train.id, {}).get("version") or 1
    train_config = fetch_file(train.id, train_version, "config.json") or {}
    decision = fetch_file(kernel.id, version, "decision.json") or {}
    defaults = {"model": "?", "image_size": "?", "folds": [], "n_folds": "?", "epochs": "?"}
    train_config = {**defaults, **train_config}
    if len(build.train) > 1:
        train_config["folds"] = [k.fold for k in build.train]
    orch.submit(kernel, message=submission_message(train_config, decision), version=version)


def run_probe(args, *, owner: str, competition: str) -> int:
    if owner == PLACEHOLDER_OWNER:
        raise BuildError(
            f"refusing to probe: {METADATA_FILE}'s id still has the placeholder owner "
            f"{PLACEHOLDER_OWNER!r}: put your Kaggle username there"
        )
    return probe(owner, competition=competition, out_dir=args.out, runs_dir=args.runs, poll=args.poll)


def load_pushes(runs_dir: Path) -> dict:
    path = Path(runs_dir) / "pushes.json"
    return json.loads(path.read_text()) if path.is_file() else {}
