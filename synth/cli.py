"""The command line: ``python -m synth OUT [--n-train 1000] [--n-test 200] [--groups culture:6,tag:14]
[--mode toy|realistic|objects|gallery] [--seed 0]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from synth.generate import MODES, generate_competition


def _parse_groups(text: str) -> tuple[tuple[str, int], ...]:
    return tuple((name, int(n)) for name, n in (part.split(":") for part in text.split(",")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synth", description="Write a small iMet-format competition.")
    p.add_argument("out", type=Path)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument(
        "--groups",
        type=_parse_groups,
        default=None,
        help="name:count,... e.g. culture:6,tag:14 (2020 style: country:3,culture:6,dimension:2,"
        "medium:8,tags:8); default: culture:6,tag:14 (toy), culture:10,tag:28 (realistic), culture:10,tag:45 "
        "(objects), culture:18,tag:48 (gallery); objects and gallery take at most their default counts",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="toy",
        help="toy (easy shapes); realistic (cluttered drawn shapes, long-tailed, noisy train labels); objects "
        "(photographed objects from installed packages' sample images pasted on textures, a global filter as the "
        "culture, long-tailed, missed small objects); gallery (museum photographs of framed crops of those images, "
        "a frame and rendering per culture, tags shared by near-duplicate works, Zipf, JPEG artefacts)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    generate_competition(
        args.out, n_train=args.n_train, n_test=args.n_test, groups=args.groups, seed=args.seed, mode=args.mode
    )
    print(f"wrote a {args.mode} competition of {args.n_train} train and {args.n_test} test images to {args.out}")
    return 0
