"""Fine-tuning recipes on cached features, in one process: test F2 and cross-fitted OOF F2 with bootstrap 95%
intervals and paired deltas, for the CPU profile's decisions (imet_utils.transfer).

    python bench/recipes.py DATA_DIR [--work W] [--recipe NAME:K=V,K=V ...] [--folds 0,1,2,3,4] [--tta 2]
                            [--views 4] [--boot 1000] [--reuse] [--set K=V] [--steps] [--blend NAME+NAME]

DATA_DIR: an iMet-format folder with ``solution.csv``. Every recipe is train overrides on the local profile
(``kernel_build.local.LOCAL_TRAIN``, its epochs scaled by ``local_epochs``; ``--set`` applies to all). The frozen
blocks' features of every train and test image are computed once per (model, image_size, split_block) for the
first ``--views`` of ``TTA_VIEWS`` (``transfer.cache_features``, under WORK/features, reused by every recipe and
rerun); a recipe trains on its ``feature_views`` of them. Each recipe trains the ``--folds`` with
``transfer.fit_cached_fold`` (what the train kernel runs) and predicts its validation and the test images view by
view from the features (the same numbers as the exported model on those views: tests/test_transfer.py).
Predictions are saved in WORK/<NAME>.npz (``--reuse``: not retrained).

Rows: each recipe (the first ``--tta`` views, rule ``global``), its delta against the first recipe; a linear probe
(logistic regression on the frozen backbone's pooled centre-view features, one-vs-rest, the threshold chosen on
OOF); with ``--steps``, bench/score.py's pipeline rows for the first recipe (one fold, fold ensemble, TTA, each
rule, second level) and, with ``--blend A+B``, the two recipes blended as the submit kernel blends them. Test F2 is
scored against solution.csv, OOF against train.csv (noisy labels in generated data).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import score  # noqa: E402  bench/score.py: rows, tables, rules, bootstrap

from imet_utils.config import TTA_VIEWS, TrainConfig, from_dict  # noqa: E402
from imet_utils.data import read_competition  # noqa: E402

VIEWS = 4  # cached per image (--views): centre, flipped, two corners (augmentation and TTA draw from them)
PROBE_C = 0.1  # the linear probe's inverse L2 strength, on standardised features


def parse_sets(pairs: list[str]) -> dict:
    from kernel_build.settings import parse_override

    return dict(parse_override(TrainConfig, p) for p in pairs)


def recipe_config(base: dict, overrides: dict, n_train: int) -> TrainConfig:
    from kernel_build.local import LOCAL_TRAIN, local_epochs

    values = {**LOCAL_TRAIN, "epochs": local_epochs(n_train), **base, **overrides}
    return from_dict(TrainConfig, values)


@dataclasses.dataclass
class Features:
    """Every train and test image's frozen-block features for the cached views at one (model, size, split)."""

    train: np.ndarray  # (views, train, h, w, c)
    test: np.ndarray


def features_for(
    config: TrainConfig, train_paths, test_paths, n_classes: int, work: Path, memo: dict, all_views
) -> Features:
    from imet_utils.transfer import cache_features

    key = (config.model, config.weights, config.image_size, config.split_block)
    if key not in memo:
        every = dataclasses.replace(config, feature_views=all_views, oof_tta=1)
        start = time.time()
        memo[key] = Features(
            train=cache_features(every, train_paths, n_classes=n_classes, scratch=work),
            test=cache_features(every, test_paths, n_classes=n_classes, scratch=work),
        )
        print(f"features {key}: {time.time() - start:.0f}s", flush=True)
    return memo[key]


def train_recipe(config: TrainConfig, feats: Features, targets, folds, ids, folds_run, work: Path, all_views) -> dict:
    """Every fold of ``folds_run``: its per-view OOF and test probabilities ("oof/VIEW": rows of the fold's
    validation images, in ``ids`` order, filled in per fold; "test/FOLD/VIEW")."""
    from imet_utils.budget import Budget
    from imet_utils.training import FoldState
    from imet_utils.transfer import _Trainer, fit_cached_fold

    pick = [all_views.index(v) for v in config.feature_views]
    train_feats = np.asarray(feats.train[pick]) if pick != list(range(len(all_views))) else feats.train
    out: dict = {}
    for fold in folds_run:
        d = work / f"fold{fold}"
        d.mkdir(parents=True, exist_ok=True)
        start = time.time()
        model, state = fit_cached_fold(
            config,
            fold,
            ids=ids,
            features=train_feats,
            targets=targets,
            folds=folds,
            d=d,
            state=FoldState(),
            budget=Budget(100),
        )
        trainer = _Trainer(model, config)
        va = np.flatnonzero(folds == fold)
        all_rows = np.arange(feats.test.shape[1])
        for v, view in enumerate(all_views):
            oof = out.setdefault(f"oof/{view}", np.full((len(ids), targets.shape[1]), np.nan, np.float32))
            oof[va] = trainer.probs(feats.train, va, [v], 64)
            out[f"test/{fold}/{view}"] = trainer.probs(feats.test, all_rows, [v], 64)
        out[f"seconds/{fold}"] = np.array(time.time() - start)
        out[f"best_epoch/{fold}"] = np.array(state.best_epoch)
        print(f"  fold {fold}: best epoch {state.best_epoch}, {time.time() - start:.0f}s", flush=True)
    return out


def as_family(name: str, config, preds: dict, ids, folds, folds_run, views, good) -> score.Family:
    """A recipe's predictions as bench/score.py's ``Family`` (only the folds run: OOF rows of their images)."""
    rows = np.isin(folds, folds_run)

    def mean(split_views, prefix):
        return np.mean([preds[prefix.format(view=v)] for v in split_views], axis=0)

    oof = {label: mean(vs, "oof/{view}")[rows] for label, vs in (("centre", views[:1]), ("tta", views))}
    test = {
        label: np.mean([preds[f"test/{k}/{v}"] for k in folds_run for v in vs], axis=0)
        for label, vs in (("centre", views[:1]), ("tta", views))
    }
    # the rules are cross-fitted over the folds run; with one fold, over two halves of its validation images
    crossfit = folds[rows] if len(folds_run) > 1 else np.arange(int(rows.sum())) % 2
    return score.Family(
        name=name,
        config=config,
        ids=ids[rows],
        folds=crossfit,
        oof=oof,
        test=test,
        fold_test={k: preds[f"test/{k}/{views[0]}"] for k in folds_run},
        good=good,
        saved_oof=oof["tta"],
        saved_check="in-process",
    )


def probe_row(scorer, comp, base: TrainConfig, feats: Features, y, ids, folds, folds_run, n_classes: int):
    """Logistic regression on the frozen backbone's pooled centre-view features (ImageNet weights, nothing
    trained), one-vs-rest, each fold fitted on the others; the rule fitted on OOF as for the recipes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from imet_utils.transfer import _Trainer, split_model

    trainer = _Trainer(split_model(base, n_classes), base)
    pooled = trainer.pooled(np.asarray(feats.train[0]), 64)
    pooled_test = trainer.pooled(np.asarray(feats.test[0]), 64)
    oof = np.zeros((len(ids), n_classes), np.float32)
    test = []
    for fold in folds_run:
        tr, va = folds != fold, folds == fold
        keep = y[tr].sum(axis=0) > 0  # a class with no positive in the fold's train part gets 0
        clf = make_pipeline(
            StandardScaler(), OneVsRestClassifier(LogisticRegression(C=PROBE_C, max_iter=500), n_jobs=1)
        )
        clf.fit(pooled[tr], y[tr][:, keep])
        p = np.zeros((va.sum(), n_classes), np.float32)
        p[:, keep] = clf.predict_proba(pooled[va])
        oof[va] = p
        t = np.zeros((len(pooled_test), n_classes), np.float32)
        t[:, keep] = clf.predict_proba(pooled_test)
        test.append(t)
    rows = np.isin(folds, folds_run)
    crossfit = folds[rows] if len(folds_run) > 1 else np.arange(int(rows.sum())) % 2
    what = f"linear probe: logistic regression (C={PROBE_C}) on frozen pooled {base.model} {base.image_size}px features"
    return scorer.rule_row(what, "global", y[rows], oof[rows], crossfit, ids[rows], np.mean(test, axis=0))


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("--work", type=Path, help="default: local_run/recipes/<DATA_DIR name>")
    p.add_argument("--recipe", type=score.parse_family, action="append", metavar="NAME:K=V,K=V", default=[])
    p.add_argument("--folds", default="0,1,2,3,4", help="the folds each recipe trains")
    p.add_argument("--tta", type=int, default=2, help="views of the recipe rows (the submit kernel's tta)")
    p.add_argument("--views", type=int, default=VIEWS, help="views cached per image (the first of TTA_VIEWS)")
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VAL")
    p.add_argument("--steps", action="store_true", help="bench/score.py's pipeline rows for the first recipe")
    p.add_argument("--blend", help="NAME+NAME: two recipes blended as the submit kernel blends families")
    p.add_argument("--no-probe", action="store_true")
    return p.parse_args()


def main() -> int:
    args = arguments()
    started = time.time()
    data = args.data.resolve()
    work = (args.work or ROOT / "local_run" / "recipes" / data.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    from imet_utils.folds import make_folds
    from imet_utils.images import cache_for_model

    comp = read_competition(data)
    n_classes = comp.labels.n_classes
    recipes = args.recipe or [("base", {})]
    base = parse_sets(args.sets)
    configs = {
        name: recipe_config(base, parse_sets([f"{k}={v}" for k, v in o.items()]), len(comp.train))
        for name, o in recipes
    }
    first = configs[recipes[0][0]]
    folds_all = make_folds(
        list(comp.train["labels"]), n_classes, n_folds=first.n_folds, method=first.fold_method, seed=first.seed
    )
    y_test = score.solution_truth(data, comp)
    views = TTA_VIEWS[: args.tta]
    folds_run = [int(f) for f in args.folds.split(",")]
    memo: dict = {}
    rows, families = [], {}
    for name, _ in recipes:
        config = configs[name]
        train = cache_for_model(comp.train["id"], comp.train_dir, split="train", model_config=config, root=work)
        test = cache_for_model(comp.test_ids["id"], comp.test_dir, split="test", model_config=config, root=work)
        good = train.good_mask()
        ids = comp.train["id"].to_numpy()[good].astype(str)
        paths = np.asarray(train.paths, dtype=object)[good].astype(str)
        test_good = test.good_mask()
        test_paths = np.asarray(test.paths, dtype=object)[test_good].astype(str)
        targets = comp.targets()[good]
        folds = folds_all[good]
        feats = features_for(config, paths, test_paths, n_classes, work, memo, TTA_VIEWS[: args.views])
        saved = work / f"{name}.npz"
        if args.reuse and saved.is_file():
            preds = dict(np.load(saved))
        else:
            print(f"recipe {name}: {recipes[[n for n, _ in recipes].index(name)][1]}", flush=True)
            preds = train_recipe(config, feats, targets, folds, ids, folds_run, work / name, TTA_VIEWS[: args.views])
            np.savez(saved, **preds)
        families[name] = as_family(name, config, preds, ids, folds, folds_run, views, test_good)
    scorer = score.Scorer(comp, y_test, families[recipes[0][0]].good)
    base_row = None
    for name, overrides in recipes:
        family = families[name]
        y = comp.targets_for(family.ids)
        seconds = sum(float(v) for k, v in np.load(work / f"{name}.npz").items() if k.startswith("seconds/"))
        what = f"{name}: {overrides or 'the local profile'} ({seconds:.0f}s)"
        row = scorer.rule_row(what, "global", y, family.oof["tta"], family.folds, family.ids, family.test["tta"])
        row.base = base_row
        base_row = base_row or row
        rows.append(row)
    if not args.no_probe:
        family = families[recipes[0][0]]
        feats = memo[next(iter(memo))]
        probe = probe_row(
            scorer, comp, first, feats, comp.targets_for(np.asarray(ids)), np.asarray(ids), folds, folds_run, n_classes
        )
        probe.base = rows[0]
        rows.append(probe)
    if args.steps:
        step_rows, best, _ = score.family_rows(scorer, comp, families[recipes[0][0]], views)
        rows += step_rows
        if args.blend:
            a, b = args.blend.split("+")
            more, _ = score.blend_rows(scorer, comp, [families[a], families[b]], best)
            rows += more
    rows.append(
        score.Row("best constant prediction (oracle k on test)", None, note=f"{score.best_constant_f2(y_test):.4f}")
    )
    print(
        f"\n**{data.name}**: train {len(comp.train)}, test {len(comp.test_ids)}, labels {n_classes}; folds "
        f"{folds_run} of {first.n_folds}; TTA views {list(views)}; {first.model} {first.image_size}px, split "
        f"{first.split_block}; bootstrap {args.boot} (seed {args.seed}), 95% percentile intervals, Δ paired\n"
    )
    score.print_table(rows, args.boot, args.seed)
    print(f"\ntotal {time.time() - started:.0f}s; load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
