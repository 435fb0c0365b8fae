"""Evidence report of a local run: OOF F2 per fold, of the fold ensemble, of each decision rule, TTA on vs off.

    python bench/score.py [WORK_DIR] [--tta 4]

WORK_DIR is a ``build_kernel.py --run-local`` folder (default: local_run/). It reads the train kernel
output(s) under WORK_DIR/<train-slug>/kaggle/working and the competition they read. TTA on vs off
re-predicts every fold's validation images with its own model: the centre view alone against the first
``--tta`` views. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imet_utils.config import TTA_VIEWS  # noqa: E402
from imet_utils.data import read_competition  # noqa: E402
from imet_utils.decision import choose_rule  # noqa: E402
from imet_utils.images import cache_for_model  # noqa: E402
from imet_utils.inference import load_train_output, model_families, oof_predictions  # noqa: E402
from imet_utils.metrics import search_threshold, threshold_grid  # noqa: E402
from imet_utils.layout import MODEL_DIR, OOF_FILE, fold_dir  # noqa: E402
from imet_utils.prediction import load_for_inference, predict_views  # noqa: E402

GRID = threshold_grid(0.05, 0.5, 0.01)


def _f2(y, probs) -> float:
    return search_threshold(y, probs, GRID)[1]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("work", nargs="?", type=Path, default=ROOT / "local_run")
    p.add_argument("--tta", type=int, default=4)
    args = p.parse_args()
    train_dirs = sorted(d.parent for d in args.work.glob("*/kaggle/working/config.json")
                        if not d.parent.parent.parent.name == "submit")
    if not train_dirs:
        print(f"no train output under {args.work}/*/kaggle/working", file=sys.stderr)
        return 1
    outputs = [load_train_output(d) for d in train_dirs]
    competition = outputs[0].config.competition
    comp = read_competition((train_dirs[0].parent / "input" / competition).resolve())
    index = pd.Index(comp.train["id"])
    targets = comp.targets()
    print(f"run: {args.work}; {comp.root}: {len(comp.train)} train images, {comp.labels.n_classes} labels")
    print("config: " + ", ".join(f"{k}={v}" for k, v in json.loads((train_dirs[0] / "config.json").read_text())
                                   .items() if k in ("model", "image_size", "epochs", "batch_size", "lr", "loss",
                                                     "n_folds", "fold_method", "augment", "bn_momentum")))
    print()
    print("| what | OOF F2 (best global threshold unless noted) |")
    print("|---|---|")
    for out in outputs:
        for k in out.folds:
            z = np.load(fold_dir(out.root, k) / OOF_FILE)
            print(f"| {out.root.parent.parent.name} fold {k} ({len(z['ids'])} images) | "
                  f"{_f2(targets[index.get_indexer(z['ids'].astype(str))], z['probs']):.4f} |")

    families = model_families(outputs)
    ids, stacks, folds = oof_predictions(families, list(comp.train["id"]))
    y = targets[index.get_indexer(ids)]
    probs = np.mean(stacks, axis=0)
    print(f"| all folds' OOF pooled ({len(ids)} images; each image predicted by its own fold's model) | "
          f"{_f2(y, probs):.4f} |")
    decision = choose_rule(y, probs, folds, comp.labels.group_index(), grid=GRID)
    for rule, f2 in decision["oof_f2"].items():
        mark = " (chosen)" if rule == decision["chosen"] else ""
        print(f"| decision rule `{rule}`{mark}, cross-fitted | {f2:.4f} (in-sample "
              f"{decision['oof_f2_in_sample'][rule]:.4f}) |")

    views = TTA_VIEWS[: args.tta]
    for label, use in (("TTA off (centre view)", ("center",)), (f"TTA on ({len(views)} views)", views)):
        parts_ids, parts = [], []
        for out in outputs:
            c = out.config
            cache = cache_for_model(comp.train["id"], comp.train_dir, split="train", model_config=c,
                                    root=args.work / "score_cache")
            path_of = dict(zip(cache.ids, cache.paths))
            for k in out.folds:
                fold_ids = np.load(fold_dir(out.root, k) / OOF_FILE)["ids"].astype(str)
                model = load_for_inference(fold_dir(out.root, k) / MODEL_DIR)
                parts.append(predict_views(model, [path_of[i] for i in fold_ids], size=c.image_size,
                                           batch_size=64, views=use))
                parts_ids.extend(fold_ids)
        print(f"| {label}, re-predicted OOF | {_f2(targets[index.get_indexer(parts_ids)], np.concatenate(parts)):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
