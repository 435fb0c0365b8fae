#!/usr/bin/env python
"""Builds the iMet Kaggle kernels, runs them locally, and drives them on Kaggle.

    python build_kernel.py                         # build: build/<train-slug>/ and build/<submit-slug>/
    python build_kernel.py --set epochs=4          # the build options work without a subcommand too
    python build_kernel.py run-local               # build, then run both built kernels on generated data
    python build_kernel.py check | plan | probe | push [train|submit|all] [--wait] | wait | status
    python build_kernel.py submit | pull | report

Each subcommand has its own --help. Every build also points the top-level metadata file's code_file (and
kernel_type) at the built train kernel of its id, so `kaggle kernels push` in the repo root pushes what was
built. The work is done by the kernel_build package; this file is its command line. Building is text work: it
imports neither TensorFlow nor kaggle.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
from pathlib import Path

import kernel_build
from kernel_build import (
    BASE_METADATA,
    BuildError,
    built_kernels,
    check_build,
    check_top_level,
    config_table,
    effective_config,
    execute_notebook,
    load_base_metadata,
    parse_overrides,
    point_top_level,
    replace_config_tables,
    run_local,
    set_help,
    steps,
)
from kernel_build.kernel import ROOT
from kernel_build.ledger import Ledger, build_lock, ledger_dir, snapshot
from kernel_build.orchestrate import Interrupted, placeholder_problems
from kernel_build.runs import pull, report

SUBCOMMANDS = ("build", "check", "run-local", "plan", "probe", "push", "wait", "status", "submit", "pull", "report")
SUBCOMMANDS += ("config-table", "execute-notebook")
# The flags of the previous release, kept for one release: flag -> subcommand.
OLD_FLAGS = {
    "--check": "check",
    "--run-local": "run-local",
    "--plan": "plan",
    "--probe": "probe",
    "--push": "push",
    "--status": "status",
    "--submit": "submit",
    "--pull": "pull",
    "--report": "report",
    "--config-table": "config-table",
    "--execute-notebook": "execute-notebook",
}


def _common(build: bool = False, kaggle: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--out", type=Path, default=ROOT / "build", help="build folder (default: build/)")
    p.add_argument("--metadata", type=Path, default=BASE_METADATA, help=f"base metadata ({BASE_METADATA.name})")
    if build:
        p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=set_help("train"))
        p.add_argument(
            "--set-submit",
            dest="submit_sets",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=set_help("submit"),
        )
        p.add_argument("--split-folds", action="store_true", help="one train kernel per fold: <slug>-f0, -f1, ...")
        p.add_argument("--notebook", action="store_true", help="build .ipynb notebooks instead of scripts")
    if kaggle or build:
        p.add_argument("--runs", type=Path, default=ROOT / "runs", help="the ledger and pulled outputs (runs/)")
        p.add_argument(
            "--poll",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="first status poll interval (backs off to 5x while nothing changes; default 60)",
        )
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Build, check, run locally and drive on Kaggle the iMet kernels. With no subcommand, or with "
        "only build options (python build_kernel.py --set epochs=4), it builds.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    b, k, bk = _common(build=True), _common(kaggle=True), _common(build=True, kaggle=True)
    sub.add_parser("build", parents=[b], help="build the kernels (the default)")
    sub.add_parser("check", parents=[b], help="check the built metadata; exit 1 with one line per problem")
    local = sub.add_parser("run-local", parents=[b], help="build, then run the built kernels locally")
    local.add_argument("--data-dir", type=Path, help="an iMet-format competition folder (default: generate one)")
    local.add_argument("--work-dir", type=Path, default=ROOT / "local_run", help="local run folder")
    local.add_argument("--resume", action="store_true", help="keep the train output and resume it")
    sub.add_parser("plan", parents=[bk], help="GPU hours of each kernel and of the plan, measured where known")
    sub.add_parser("probe", parents=[bk], help="push a tiny CPU kernel and submit it: are late submissions scored?")
    push = sub.add_parser("push", parents=[bk], help="build, plan, check the quota, push; resumes after any stop")
    push.add_argument(
        "which",
        nargs="?",
        default="train",
        choices=["train", "submit", "all"],
        help="train kernels (default); submit, once every train kernel completed; all (with --wait)",
    )
    push.add_argument("--wait", action="store_true", help="wait until they end (push all: then the submit kernel)")
    push.add_argument("--force", action="store_true", help="push over a failure on the same content, or the quota")
    push.add_argument("--max-parallel", type=int, default=1, help="GPU kernels at a time (1; 2 where allowed)")
    sub.add_parser("wait", parents=[k], help="wait for every pushed kernel that hasn't concluded")
    sub.add_parser("status", parents=[k], help="the ledger against Kaggle: what ran, what runs, what is left")
    submit = sub.add_parser("submit", parents=[k], help="submit the submit kernel's output, wait for its scores")
    submit.add_argument("--version", type=int, help="this version of the submit kernel instead of the latest")
    submit.add_argument("--force", action="store_true", help="submit a version submitted before")
    pull_p = sub.add_parser("pull", parents=[k], help="download complete runs to runs/<slug>/v<N>/")
    pull_p.add_argument("--kernel", help="only this kernel (slug or id)")
    pull_p.add_argument("--version", type=int, help="this version of --kernel instead of its latest")
    pull_p.add_argument("--models", action="store_true", help="the models too (added to a version pulled before)")
    sub.add_parser("report", parents=[k], help="one row per pulled run; writes runs/report.md")
    table = sub.add_parser("config-table", help="print the README's config tables, or rewrite them in a file")
    table.add_argument("target", nargs="?", default="-", metavar="README")
    nb = sub.add_parser("execute-notebook", help="run one notebook as Kaggle's papermill does")
    nb.add_argument("notebook", type=Path)
    return p


def translate_old_flags(argv: list[str]) -> list[str]:
    """``--push all --wait`` -> ``push all --wait`` etc., with a one-line note (kept for one release)."""
    if any(a in SUBCOMMANDS for a in argv[:1]):
        return argv
    found = [a for a in argv if a.split("=")[0] in OLD_FLAGS or a == "--pull-models"]
    if not found and not ("--wait" in argv and "--push" not in argv):
        return argv
    flag = found[0].split("=")[0] if found else "--wait"
    command = OLD_FLAGS.get(flag, "wait" if flag == "--wait" else "pull")
    rest = [a for a in argv if a != found[0]] if found else [a for a in argv if a != "--wait"]
    rest = ["--models" if a == "--pull-models" else a for a in rest]
    print(f"note: {flag} is now the subcommand `{command}` (the flags go in the next release)", file=sys.stderr)
    return [command, *rest]


def main(argv: list[str] | None = None) -> int:
    argv = translate_old_flags(list(sys.argv[1:] if argv is None else argv))
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["build", *argv]  # the design card's `python build_kernel.py && kaggle kernels push`
    args = _parser().parse_args(argv)
    command = args.command or "build"
    try:
        return COMMANDS[command](args) or 0
    except Interrupted as e:
        print(f"build_kernel.py: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("build_kernel.py: stopped; the same command resumes (.kaggle-ledger/, or Kaggle itself)", file=sys.stderr)
        return 130
    except BuildError as e:
        print(f"build_kernel.py: error: {e}", file=sys.stderr)
        return 2


def _overrides(args) -> tuple[dict, dict]:
    return parse_overrides(getattr(args, "sets", []), "train"), parse_overrides(
        getattr(args, "submit_sets", []), "submit"
    )


def _build(args, *, check_only: bool = False) -> kernel_build.Build:
    """What to check or push: ``build/`` as it is for a plain check, else a fresh build."""
    train_overrides, submit_overrides = _overrides(args)
    if check_only and not (args.sets or args.submit_sets or args.split_folds or args.notebook):
        built = built_kernels(args.out)
        if built:
            return built
    start = time.time()
    with build_lock(args.out):  # a reader (a driver taking its snapshot, status, pull) never sees it half-written
        built = kernel_build.build(
            args.out,
            train_overrides=train_overrides,
            submit_overrides=submit_overrides,
            base=load_base_metadata(args.metadata),
            split_folds=args.split_folds,
            notebook=args.notebook,
            check=not check_only,
        )
        top = point_top_level(args.metadata, args.out, notebook=args.notebook, split_folds=args.split_folds)
    for kernel in built:
        print(f"built {kernel.describe()} kernel: {kernel.folder}/")
    print(top)
    print(f"({time.time() - start:.2f}s)")
    return built


def _own_copy(build_dir: Path) -> kernel_build.Build:
    """This command's snapshot of a build folder: a build in another terminal never changes what it reads or
    pushes (removed when the command ends)."""
    copy = Path(tempfile.mkdtemp(prefix="imet-kernels-"))
    atexit.register(shutil.rmtree, copy, True)
    return built_kernels(snapshot(build_dir, copy))


def _configs(args) -> tuple[dict, dict]:
    train_overrides, submit_overrides = _overrides(args)
    return effective_config("train", train_overrides), effective_config("submit", submit_overrides)


def cmd_build(args) -> int:
    built = _build(args)
    train_config, _ = _configs(args)
    top_problems, _ = check_top_level(args.metadata, args.out, competition=train_config["competition"])
    for line in top_problems:
        print(f"warning: {line}")
    print(f"next: python build_kernel.py push   (or kaggle kernels push -p {built.kernels[0].folder})")
    return 0


def cmd_check(args) -> int:
    built = _build(args, check_only=True)
    competition = _configs(args)[0]["competition"]
    problems = check_build(built, competition=competition) + placeholder_problems(built)
    top_problems, notes = check_top_level(args.metadata, args.out, competition=competition)
    for line in problems + top_problems:
        print(line)
    for line in notes:
        print(f"note: {line}")
    print(f"{len(problems) + len(top_problems)} problem(s) in {len(built)} kernel(s)")
    return 1 if problems or top_problems else 0


def cmd_run_local(args) -> int:
    train_overrides, submit_overrides = _overrides(args)
    run_local(
        data_dir=args.data_dir,
        work=args.work_dir,
        train_overrides=train_overrides,
        submit_overrides=submit_overrides,
        resume=args.resume,
        split_folds=args.split_folds,
        notebook=args.notebook,
    )
    return 0


def cmd_plan(args) -> int:
    built = _build(args)
    train_config, submit_config = _configs(args)
    need = steps.print_plan(built, train_config=train_config, submit_config=submit_config, runs_dir=args.runs)
    steps.print_quota(need)
    return 0


def cmd_push(args) -> int:
    # One driver, one snapshot: the lock first, then the build, then pushes only from this command's own copy.
    Ledger(ledger_dir(args.runs), legacy=args.runs).hold_driver(f"push {args.which}")
    _build(args)
    built = _own_copy(args.out)
    train_config, submit_config = _configs(args)
    steps.push(
        built, args, competition=train_config["competition"], train_config=train_config, submit_config=submit_config
    )
    return 0


def _pushed_build(args) -> tuple[kernel_build.Build, str]:
    """What was built (and pushed) from here, and the competition it was built for."""
    built = _own_copy(args.out)
    if not built:
        raise BuildError(f"nothing built in {args.out}: python build_kernel.py first")
    default = effective_config("train", {})["competition"]  # the config's, where the metadata names none
    competition = (built.kernels[0].metadata().get("competition_sources") or [default])[0]
    return built, competition


def cmd_probe(args) -> int:
    owner = load_base_metadata(args.metadata)["id"].split("/")[0]
    competition = _configs(args)[0]["competition"]
    return steps.run_probe(args, owner=owner, competition=competition)


def cmd_wait(args) -> int:
    built, competition = _pushed_build(args)
    steps.wait(built, args, competition=competition)
    return 0


def cmd_status(args) -> int:
    built, competition = _pushed_build(args)
    steps.status(built, args, competition=competition)
    return 0


def cmd_submit(args) -> int:
    built, competition = _pushed_build(args)
    steps.submit_step(built, args, competition=competition)
    return 0


def cmd_pull(args) -> int:
    built, competition = _pushed_build(args)
    orch = steps.orchestrator(built, args, competition)
    pull(built, args.runs, orch=orch, kernel=args.kernel, version=args.version, models=args.models)
    return 0


def cmd_report(args) -> int:
    report(args.runs)
    return 0


def cmd_config_table(args) -> int:
    if args.target == "-":
        print(config_table("train") + "\n\n" + config_table("submit"))
    else:
        Path(args.target).write_text(replace_config_tables(Path(args.target).read_text()))
        print(f"rewrote the config tables in {args.target}")
    return 0


def cmd_execute_notebook(args) -> int:
    execute_notebook(args.notebook)
    return 0


COMMANDS = {
    "build": cmd_build,
    "check": cmd_check,
    "run-local": cmd_run_local,
    "plan": cmd_plan,
    "probe": cmd_probe,
    "push": cmd_push,
    "wait": cmd_wait,
    "status": cmd_status,
    "submit": cmd_submit,
    "pull": cmd_pull,
    "report": cmd_report,
    "config-table": cmd_config_table,
    "execute-notebook": cmd_execute_notebook,
}

if __name__ == "__main__":
    sys.exit(main())
