#!/usr/bin/env python
"""Builds the iMet Kaggle kernels: one self-contained .py each, imet_utils inlined as readable source.

    python build_kernel.py                      # writes build/<train-slug>/ and build/<submit-slug>/
    python build_kernel.py --set epochs=4       # override a train config field (repeatable)
    python build_kernel.py --run-local          # build, then run both built kernels locally on generated data
    python build_kernel.py --run-local --data-dir DIR --work-dir W
    python build_kernel.py --probe | --plan | --push [all] --wait | --submit | --pull | --report   (Kaggle)

Every build also points the top-level metadata file's code_file (and kernel_type) at the built train kernel of
its id, so `kaggle kernels push` in the repo root pushes what was built. The work is done by the kernel_build
package; this file is its command line. Building is text work: it imports neither TensorFlow nor kaggle.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import kernel_build
from kernel_build import (
    BASE_METADATA,
    EXECUTE_NOTEBOOK,
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
    status,
    steps,
)
from kernel_build.kernel import ROOT
from kernel_build.orchestrate import placeholder_problems
from kernel_build.runs import pull, report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Build, check, run locally and push the iMet Kaggle kernels.")
    p.add_argument("--out", type=Path, default=ROOT / "build", help="build folder (default: build/)")
    p.add_argument("--metadata", type=Path, default=BASE_METADATA, help=f"base metadata ({BASE_METADATA.name})")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=set_help("train"))
    p.add_argument(
        "--set-submit", dest="submit_sets", action="append", default=[], metavar="KEY=VALUE", help=set_help("submit")
    )
    p.add_argument("--split-folds", action="store_true", help="one train kernel per fold: <slug>-f0, -f1, ...")
    p.add_argument("--notebook", action="store_true", help="build .ipynb notebooks instead of scripts")
    p.add_argument("--check", action="store_true", help="check the built metadata; exit 1 with one line per problem")
    p.add_argument(
        "--push",
        nargs="?",
        const="train",
        choices=["train", "submit", "all"],
        help="build, check, print the plan, then push: the train kernel(s) (default); 'submit' only once "
        "every train kernel it sources is complete on its latest version; 'all' (with --wait): "
        "train, wait, submit",
    )
    p.add_argument("--wait", action="store_true", help="poll kaggle kernels status until the pushed kernels end")
    p.add_argument("--force", action="store_true", help="push although a run is on or the sources are not complete")
    p.add_argument(
        "--poll",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="first status poll interval (backs off to 5x while nothing changes; default 60)",
    )
    p.add_argument("--max-parallel", type=int, default=2, help="GPU kernels at a time (Kaggle allows 2)")
    p.add_argument("--submit", action="store_true", help="submit the submit kernel's output, wait for its scores")
    p.add_argument(
        "--probe",
        action="store_true",
        help="push a tiny CPU kernel and submit its sample_submission "
        "copy: does the competition take a late kernel submission?",
    )
    p.add_argument("--plan", action="store_true", help="estimated GPU hours of each kernel and of the plan")
    p.add_argument("--pull", action="store_true", help="download each built kernel's output to runs/<slug>/v<N>/")
    p.add_argument("--version", type=int, help="--pull/--submit this version instead of the latest pushed")
    p.add_argument("--pull-models", action="store_true", help="--pull the models too")
    p.add_argument("--report", action="store_true", help="one row per pulled run; writes runs/report.md")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="pulled outputs and push records (runs/)")
    p.add_argument("--status", action="store_true", help="kaggle kernels status for each built kernel")
    p.add_argument("--run-local", action="store_true", help="build, then run the built kernels locally")
    p.add_argument("--data-dir", type=Path, help="an iMet-format competition folder (default: generate one)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "local_run", help="local run folder")
    p.add_argument("--resume", action="store_true", help="--run-local: keep the train output and resume it")
    p.add_argument(
        EXECUTE_NOTEBOOK,
        type=Path,
        metavar="NOTEBOOK",
        help="run one notebook as Kaggle does (papermill's nbclient and an IPython kernel), in the "
        "current folder, saving the executed copy beside it as <name>.executed.ipynb",
    )
    p.add_argument(
        "--config-table",
        nargs="?",
        const="-",
        metavar="README",
        help="print the README's config tables, generated from the config fields; with a file, "
        "rewrite the tables in it",
    )
    return p


def _config_tables(target: str) -> None:
    if target == "-":
        print(config_table("train") + "\n\n" + config_table("submit"))
    else:
        Path(target).write_text(replace_config_tables(Path(target).read_text()))
        print(f"rewrote the config tables in {target}")


def _build(args: argparse.Namespace, train_overrides: dict, submit_overrides: dict) -> kernel_build.Build:
    """What to check or push: ``build/`` as it is for a plain --check, else a fresh build."""
    if args.check and not (args.sets or args.submit_sets or args.split_folds or args.notebook):
        built = built_kernels(args.out)
        if built:
            return built
    start = time.time()
    built = kernel_build.build(
        args.out,
        train_overrides=train_overrides,
        submit_overrides=submit_overrides,
        base=load_base_metadata(args.metadata),
        split_folds=args.split_folds,
        notebook=args.notebook,
        check=not args.check,
    )
    for kernel in built:
        print(f"built {kernel.describe()} kernel: {kernel.folder}/")
    print(point_top_level(args.metadata, args.out, notebook=args.notebook, split_folds=args.split_folds))
    print(f"({time.time() - start:.2f}s)")
    return built


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.execute_notebook:
            execute_notebook(args.execute_notebook)
            return 0
        if args.config_table:
            _config_tables(args.config_table)
            return 0
        train_overrides = parse_overrides(args.sets, "train")
        submit_overrides = parse_overrides(args.submit_sets, "submit")
        train_config = effective_config("train", train_overrides)
        competition = train_config["competition"]
        if args.report:
            report(args.runs)
            return 0
        if args.probe:
            owner = load_base_metadata(args.metadata)["id"].split("/")[0]
            return steps.run_probe(args, owner=owner, competition=competition)
        if args.status or args.wait and not args.push or args.submit or args.pull:
            built = built_kernels(args.out)  # what was built (and pushed) from here
            if not built:
                raise BuildError(f"nothing built in {args.out}: python build_kernel.py first")
            if "competition" not in train_overrides:  # the competition these kernels were built for
                competition = (built.kernels[0].metadata().get("competition_sources") or [competition])[0]
            if args.status:
                status(built)
            if args.wait and not args.push:
                steps.wait(built, args, competition=competition)
            if args.submit:
                steps.submit(built, args, competition=competition)
            if args.pull:
                pull(built, args.runs, version=args.version, models=args.pull_models)
            return 0
        if args.run_local:
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
        built = _build(args, train_overrides, submit_overrides)
        submit_config = effective_config("submit", submit_overrides)
        if args.plan:
            steps.print_plan(built, train_config=train_config, submit_config=submit_config)
            return 0
        problems = check_build(built, competition=competition) + placeholder_problems(built)
        top_problems, notes = check_top_level(args.metadata, args.out, competition=competition)
        if args.check:
            for line in problems + top_problems:
                print(line)
            for line in notes:
                print(f"note: {line}")
            print(f"{len(problems) + len(top_problems)} problem(s) in {len(built)} kernel(s)")
            return 1 if problems or top_problems else 0
        for line in top_problems:
            print(f"warning: {line}")
        if args.push:
            steps.push(built, args, competition=competition, train_config=train_config, submit_config=submit_config)
        else:
            print(f"next: python build_kernel.py --push   (or kaggle kernels push -p {built.kernels[0].folder})")
    except BuildError as e:
        print(f"build_kernel.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
