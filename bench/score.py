"""Test F2 against clean labels and cross-fitted OOF F2, with bootstrap error bars, for each step of the pipeline.

    python bench/score.py DATA_DIR [--work W] [--family NAME:K=V,K=V ...] [--tta 4] [--boot 1000] [--reuse] [--set K=V]

DATA_DIR: an iMet-format folder with ``solution.csv`` (the test images' clean labels, as train.csv). Each model
family (``FAMILIES``: ``--set`` train overrides on the local profile; ``--set`` applies to all) is trained by
``build_kernel.py --run-local`` into WORK/<NAME> (``--reuse``: not if its train output exists). Each fold model
predicts its own validation images and all test images one view at a time (WORK/<NAME>/score_views.npz, reused
with ``--reuse``): centre = the first view, TTA = the mean of the first ``--tta``. Rules, blend weights and the
second level are the submit kernel's calls with SubmitConfig's defaults. F2 is a mean of per-image F2 with a 95%
percentile bootstrap interval over images; deltas are paired (the same resamples). OOF is scored against train.csv
(noisy in ``realistic`` data), test against solution.csv. Last line: ``score: data=... key=value ...``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imet_utils.config import TTA_VIEWS, SubmitConfig  # noqa: E402
from imet_utils.data import multi_hot, read_competition, read_train  # noqa: E402
from imet_utils.decision import apply_rule, choose_rule  # noqa: E402
from imet_utils.metrics import bootstrap_interval, f2_per_sample, threshold_grid  # noqa: E402
from imet_utils.outputs import oof_views  # noqa: E402
from kernel_build.scoring import best_constant_f2, fit_rule  # noqa: E402

# The local profile (EfficientNet-Lite0 fine-tuned on cached features), and Lite1 trained the same way (its split
# before the same stage: the 192-channel blocks, 16 of its 21), as a Kaggle ensemble blends two backbones.
FAMILIES = (("A", {}), ("B", {"model": "efficientnet-lite1", "split_block": 16}))
SUBMIT = SubmitConfig()
GRID = threshold_grid(*SUBMIT.threshold_grid)
BOUNDS = {"min_labels": SUBMIT.min_labels, "max_labels": SUBMIT.max_labels}
RULES = tuple(SUBMIT.decision_rules)
VIEWS_FILE = "score_views.npz"
PREDICT_BATCH = 64  # images per predict call


def crossfit_f2(
    rule: str,
    y: np.ndarray,
    probs: np.ndarray,
    folds: np.ndarray,
    groups: dict[str, np.ndarray],
    grid: np.ndarray = GRID,
    **bounds,
) -> np.ndarray:
    """Per-image F2 of every OOF row under ``rule`` fitted on the other folds' rows (choose_rule's oof_f2 with the
    same grid and ``bounds``, min_labels/max_labels, default the submit kernel's, is the mean)."""
    out = np.empty(len(y))
    for f in np.unique(folds):
        held = np.asarray(folds) == f
        params = fit_rule(rule, y[~held], probs[~held], groups, grid, **{**BOUNDS, **bounds})
        out[held] = f2_per_sample(y[held], apply_rule(params, probs[held], groups))
    return out


def parse_family(text: str) -> tuple:
    """``NAME:KEY=VAL,KEY=VAL`` -> (NAME, {KEY: VAL}); a comma inside a value (``folds=[0,1]``) is kept."""
    name, _, rest = text.partition(":")
    parts = [p for p in re.split(r",(?=\s*[A-Za-z_]\w*=)", rest) if p.strip()]
    if not name or any("=" not in p for p in parts):
        raise argparse.ArgumentTypeError(f"--family {text!r}: expected NAME:KEY=VAL,KEY=VAL")
    return name, dict(p.strip().split("=", 1) for p in parts)


def train_dirs(work: Path) -> list[Path]:
    """The train outputs of a ``--run-local`` work folder (WORK/<train-slug>/kaggle/working)."""
    return sorted(
        d.parent for d in Path(work).glob("*/kaggle/working/config.json") if d.parent.parent.parent.name != "submit"
    )


def run_family(data: Path, work: Path, sets: Sequence[str]) -> float:
    cmd = [
        sys.executable,
        str(ROOT / "build_kernel.py"),
        "--run-local",
        "--data-dir",
        str(data),
        "--work-dir",
        str(work),
        *[a for s in sets for a in ("--set", s)],
    ]
    print("$ python " + " ".join(cmd[1:]), flush=True)
    (work / VIEWS_FILE).unlink(missing_ok=True)
    start = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.time() - start


def _predict_fold(output, fold: int, path_of: dict, test_paths: list, views: Sequence[str], saved: dict) -> dict:
    """One fold model's probabilities of its OOF file's readable ids and of ``test_paths``, one entry per split and
    view ("fold/split/view"), with "fold/ids" and "fold/stamp" (the model file's mtime); ``saved`` entries of the
    same model file are reused."""
    from imet_utils.outputs import MODEL_DIR, OOF_FILE, SAVED_MODEL_FILE, fold_dir
    from imet_utils.prediction import load_for_inference, predict_views

    folder = fold_dir(output.root, fold)
    ids = np.load(folder / OOF_FILE)["ids"].astype(str)
    ids = ids[[path_of.get(i) is not None for i in ids]]
    stamp = (folder / MODEL_DIR / SAVED_MODEL_FILE).stat().st_mtime
    same_model = f"{fold}/stamp" in saved and float(saved[f"{fold}/stamp"]) == stamp
    found = {key: value for key, value in saved.items() if key.startswith(f"{fold}/")} if same_model else {}
    found[f"{fold}/ids"] = ids
    found[f"{fold}/stamp"] = stamp
    model = None
    for split, paths in (("oof", [path_of[i] for i in ids]), ("test", test_paths)):
        for view in views:
            key = f"{fold}/{split}/{view}"
            if len(found.get(key, ())) != len(paths) or not len(paths):
                model = model or load_for_inference(folder / MODEL_DIR)
                found[key] = predict_views(
                    model, paths, size=output.config.image_size, batch_size=PREDICT_BATCH, views=(view,)
                )
    return found


def predict_folds(outputs, comp, cache_root: Path, views: Sequence[str], saved: dict) -> tuple:
    """Each fold model's probabilities of its OOF file's ids and the readable test images, per view
    (``_predict_fold``'s entries, all folds), and the mask of readable test images."""
    from imet_utils.images import cache_for_model

    predictions: dict = {}
    good = None
    for output in outputs:
        config = output.config
        train = cache_for_model(comp.train["id"], comp.train_dir, split="train", model_config=config, root=cache_root)
        test = cache_for_model(comp.test_ids["id"], comp.test_dir, split="test", model_config=config, root=cache_root)
        path_of = dict(zip(train.ids, train.paths))
        good = test.good_mask()
        test_paths = [p for p in test.paths if p]
        for fold in output.folds:
            predictions.update(_predict_fold(output, fold, path_of, test_paths, views, saved))
    return predictions, good


@dataclasses.dataclass
class Family:
    """One model family's re-predicted probabilities: OOF rows in train.csv order, test rows of readable images."""

    name: str
    config: object
    ids: np.ndarray
    folds: np.ndarray
    oof: dict[str, np.ndarray]  # "centre" / "tta" -> (n, classes)
    test: dict[str, np.ndarray]  # "centre" / "tta" -> (good, classes): the mean over fold models
    fold_test: dict[int, np.ndarray]  # fold -> its model's centre test probs
    good: np.ndarray
    saved_oof: np.ndarray  # the OOF the train kernel saved (what the submit kernel decides on), rows as ``ids``
    saved_check: str  # the saved OOF against the mean of the same views re-predicted here


def _mean_of_views(predictions: dict, folds: list[int], fold_of: np.ndarray, row_in_fold: list[int], views) -> tuple:
    """(OOF, test) probabilities averaged over ``views``: each OOF row from its own fold's model, each test row over
    every fold model (the mean of the fold means)."""
    first = predictions[f"{folds[0]}/oof/{views[0]}"]
    oof = np.zeros((len(fold_of), first.shape[1]), np.float32)
    for fold in folds:
        rows = np.flatnonzero(fold_of == fold)
        fold_oof = np.mean([predictions[f"{fold}/oof/{view}"] for view in views], axis=0)
        oof[rows] = fold_oof[[row_in_fold[r] for r in rows]]
    test = np.mean([predictions[f"{fold}/test/{view}"] for fold in folds for view in views], axis=0)
    return oof, test


def load_family(name: str, work: Path, comp, views: Sequence[str], reuse: bool) -> Family:
    from imet_utils.ensemble import load_train_output, oof_predictions

    outputs = [load_train_output(d) for d in train_dirs(work)]
    if not outputs:
        raise SystemExit(f"no train output under {work}/*/kaggle/working")
    views_file = work / VIEWS_FILE
    saved = dict(np.load(views_file)) if reuse and views_file.is_file() else {}
    predictions, good = predict_folds(outputs, comp, work.parent / "image_cache", views, saved)
    np.savez(views_file, **predictions)
    folds = sorted(int(key.split("/")[0]) for key in predictions if key.endswith("/ids"))
    position = {img_id: (fold, row) for fold in folds for row, img_id in enumerate(predictions[f"{fold}/ids"])}
    ids = np.array([i for i in comp.train["id"] if i in position], dtype=str)
    fold_of = np.array([position[i][0] for i in ids])
    row_in_fold = [position[i][1] for i in ids]
    # What the train kernel's saved OOF averages; re-predicted here too if it is one set of views among ``views``.
    saved_views = sorted({v for output in outputs for v in oof_views(output.root, output.config.n_folds)})
    repredict_saved = len(saved_views) == 1 and set(saved_views[0]) <= set(views)
    view_sets = {"centre": views[:1], "tta": views}
    if repredict_saved:
        view_sets["saved"] = saved_views[0]
    oof = {}
    test = {}
    for label, label_views in view_sets.items():
        oof[label], test[label] = _mean_of_views(predictions, folds, fold_of, row_in_fold, label_views)
    saved_ids, saved_probs, _ = oof_predictions([outputs], list(ids))
    saved_oof = saved_probs[0][pd.Index(saved_ids).get_indexer(ids)]
    check = f"the saved OOF averages {saved_views}"
    if repredict_saved:
        check += f"; re-predicted here: max |diff| {np.abs(oof['saved'] - saved_oof).max():.2e}"
    return Family(
        name=name,
        config=outputs[0].config,
        ids=ids,
        folds=fold_of,
        oof=oof,
        test=test,
        fold_test={fold: predictions[f"{fold}/test/{views[0]}"] for fold in folds},
        good=good,
        saved_oof=saved_oof,
        saved_check=check,
    )


@dataclasses.dataclass
class Row:
    what: str
    test: np.ndarray | None  # per test image (all of sample_submission's)
    oof: np.ndarray | None = None  # per OOF image, aligned with oof_ids
    oof_ids: np.ndarray | None = None
    base: Row | None = None  # the row it adds to (the deltas are this row's F2 less its)
    note: str = ""  # the test cell of a row without per-image values


def cell(values, resamples: int, seed: int, signed: bool = False, note: str = "") -> str:
    """``0.xxxx [lo, hi]``; signed (``+0.0123``) for a delta."""
    if values is None or not len(values):
        return note or "—"
    if signed and not np.any(values):
        return "±0 (identical)"
    lo, hi = bootstrap_interval(values, resamples=resamples, seed=seed)
    number = "+.4f" if signed else ".4f"
    return f"{float(np.mean(values)):{number}} [{lo:{number}}, {hi:{number}}]"


def _deltas(row: Row) -> tuple:
    """(test, OOF) per-image F2 of ``row`` less its base's, OOF paired on the images both score; None where either
    lacks them."""
    base = row.base
    if base is None:
        return None, None
    test = row.test - base.test if row.test is not None and base.test is not None else None
    oof = None
    if row.oof is not None and base.oof is not None:
        _, in_row, in_base = np.intersect1d(row.oof_ids, base.oof_ids, return_indices=True)
        oof = row.oof[in_row] - base.oof[in_base]
    return test, oof


def print_table(rows: list[Row], resamples: int, seed: int) -> None:
    number = {id(row): i + 1 for i, row in enumerate(rows)}
    print("| what | test F2 [95% CI] | Δ test [95% CI] | OOF F2 (cross-fitted) [95% CI] | Δ OOF [95% CI] |")
    print("|---|---|---|---|---|")
    for row in rows:
        test_delta, oof_delta = _deltas(row)
        what = f"{number[id(row)]}. {row.what}"
        if row.base is not None:
            what += f" (Δ vs {number[id(row.base)]})"
        cells = [
            cell(row.test, resamples, seed, note=row.note),
            cell(test_delta, resamples, seed, True),
            cell(row.oof, resamples, seed),
            cell(oof_delta, resamples, seed, True),
        ]
        print(f"| {what} | {' | '.join(cells)} |")


class Scorer:
    """Fits and scores rules: test labels as the submit kernel writes them (unreadable images get the fallback)."""

    def __init__(self, comp, y_test: np.ndarray, good: np.ndarray):
        from imet_utils.ensemble import fallback_labels, label_prior

        self.groups = comp.labels.group_index()
        self.y_test = y_test
        self.good = good
        self.fallback = fallback_labels(label_prior(comp.targets()), SUBMIT.fallback_top_k)

    def test_f2(self, params: dict, probs: np.ndarray) -> np.ndarray:
        pred = np.tile(self.fallback, (len(self.good), 1))
        pred[self.good] = apply_rule(params, probs, self.groups)
        return f2_per_sample(self.y_test, pred)

    def choose(self, y, probs, folds, rules=RULES) -> dict:
        return choose_rule(y, probs, folds, self.groups, grid=GRID, rules=rules, **BOUNDS)

    def fit_test_f2(self, rule: str, y, oof, test) -> np.ndarray:
        """Per-image test F2 of ``rule`` fitted on all of (y, oof)."""
        return self.test_f2(fit_rule(rule, y, oof, self.groups, GRID, **BOUNDS), test)

    def rule_row(self, what, rule, y, oof, folds, ids, test, base=None, expect: dict | None = None) -> Row:
        """Test: ``rule`` fitted on all OOF rows; OOF: cross-fitted per image (checked against ``expect``,
        choose_rule's result on the same rows: equal for global, else a warning)."""
        f2 = crossfit_f2(rule, y, oof, folds, self.groups)
        if expect is not None and abs(f2.mean() - expect["oof_f2"][rule]) > 1e-6:
            msg = f"{what}: per-image cross-fitted F2 {f2.mean():.6f} != choose_rule's {expect['oof_f2'][rule]:.6f}"
            assert rule != "global", msg
            print("WARNING " + msg, flush=True)
        return Row(what, self.fit_test_f2(rule, y, oof, test), oof=f2, oof_ids=ids, base=base)

    def second_level_row(self, what, y, oof, folds, ids, test, first: dict, base: Row) -> tuple:
        """The submit kernel's choose_second_level on (y, oof); when it is not chosen its cross-fitted
        probabilities and refit are recomputed (same seeds) so that the row is reported anyway."""
        from imet_utils.stacking import choose_second_level, crossfit_probs, refit_second_level

        stack = choose_second_level(y, oof, folds, self.groups, first=first, grid=GRID, rules=RULES, **BOUNDS)
        entry = stack.entry
        if entry.get("skipped"):
            return None, entry
        if stack.level is not None:
            stacked = stack.probs
            level = stack.level
        else:
            stacked = crossfit_probs(y, oof, folds, self.groups)
            level = refit_second_level(y, oof, folds, self.groups)
        f2 = crossfit_f2(entry["rule"], y, stacked, folds, self.groups)
        assert abs(f2.mean() - entry["oof_f2"]) < 1e-6, (f2.mean(), entry["oof_f2"])
        chosen = "chosen" if entry["chosen"] else "not chosen"
        what = f"{what} (rule `{entry['rule']}`; choose_second_level: {chosen})"
        test_f2 = self.test_f2(entry["rule_params"], level.predict(test))
        return Row(what, test_f2, oof=f2, oof_ids=ids, base=base), entry


def solution_truth(data: Path, comp) -> np.ndarray:
    solution = read_train(data / "solution.csv", comp.labels.n_classes)
    rows = pd.Index(solution["id"]).get_indexer(list(comp.test_ids["id"]))
    if (rows < 0).any():
        raise SystemExit(f"{data}/solution.csv lacks {int((rows < 0).sum())} test id(s)")
    return multi_hot([solution["labels"].iat[r] for r in rows], comp.labels.n_classes)


def submission_row(name: str, work: Path, comp, y_test) -> Row | None:
    """The test F2 of the submission.csv the family's local run wrote (its submit kernel: tta and OOF as built)."""
    path = work / "submit" / "kaggle" / "working" / "submission.csv"
    if not path.is_file():
        return None
    submission = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("id")
    labels = submission.loc[list(comp.test_ids["id"]), "attribute_ids"]
    pred = multi_hot([[int(t) for t in s.split()] for s in labels], comp.labels.n_classes)
    return Row(
        f"family {name}: its local run's submission.csv (its submit kernel: tta={SUBMIT.tta}, decided on "
        f"the saved OOF)",
        f2_per_sample(y_test, pred),
    )


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path, help="iMet-format competition folder with solution.csv")
    p.add_argument("--work", type=Path, help="run folder (default: local_run/score/<DATA_DIR name>)")
    p.add_argument(
        "--family",
        type=parse_family,
        action="append",
        metavar="NAME:KEY=VAL,KEY=VAL",
        help=f"a model family (repeatable; replaces the default {[n for n, _ in FAMILIES]})",
    )
    p.add_argument("--tta", type=int, default=4, help=f"views for the TTA rows (1..{len(TTA_VIEWS)})")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--reuse", action="store_true", help="reuse trained families and their saved view predictions")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VAL",
        help="train override for every family (a family's own value wins)",
    )
    args = p.parse_args()
    if not 1 <= args.tta <= len(TTA_VIEWS) or args.boot < 1:
        p.error(f"--tta must be in 1..{len(TTA_VIEWS)} and --boot >= 1")
    return args


def family_rows(scorer: Scorer, comp, family: Family, views) -> tuple:
    """Rows of the first family: one fold, the fold ensemble, TTA, each rule, the second level; the best rule's row
    (what a blend adds to) and the figures of the last line."""
    y = comp.targets_for(family.ids)
    fold = int(family.folds.min())
    in_fold = family.folds == fold
    n_folds = len(np.unique(family.folds))

    def row(what, rule, view_set, base=None, expect=None):
        return scorer.rule_row(
            what, rule, y, family.oof[view_set], family.folds, family.ids, family.test[view_set], base, expect
        )

    centre = family.oof["centre"]
    global_only = scorer.choose(y, centre, family.folds, rules=("global",))
    ensemble = row(f"{n_folds}-fold ensemble (centre)", "global", "centre", expect=global_only)
    one_fold = Row(
        f"one fold's model (fold {fold}, centre)",
        scorer.fit_test_f2("global", y[in_fold], centre[in_fold], family.fold_test[fold]),
        oof=ensemble.oof[in_fold],
        oof_ids=family.ids[in_fold],
    )
    ensemble.base = one_fold
    decision = scorer.choose(y, family.oof["tta"], family.folds)
    tta = row(f"+ TTA ({len(views)} views)", "global", "tta", ensemble, decision)
    rule_rows = {
        rule: row(
            f"TTA, rule `{rule}`" + (" (chosen)" if rule == decision["chosen"] else ""), rule, "tta", tta, decision
        )
        for rule in RULES
    }
    best = rule_rows[decision["chosen"]]
    second, entry = scorer.second_level_row(
        "TTA + second level", y, family.oof["tta"], family.folds, family.ids, family.test["tta"], decision, best
    )
    figures = {
        "one_fold_test": one_fold.test.mean(),
        "ensemble_test": ensemble.test.mean(),
        "ensemble_tta_test": tta.test.mean(),
        "best_rule": decision["chosen"],
        "best_test": best.test.mean(),
        "best_oof": best.oof.mean(),
        "second_test": second.test.mean() if second else float("nan"),
        "second_chosen": int(bool(entry.get("chosen"))),
    }
    rows = [one_fold, ensemble, tta, *rule_rows.values()]
    return rows + ([second] if second else []), best, figures


def alone_row(scorer: Scorer, comp, family: Family) -> Row:
    """Another family on its own: TTA, its best rule."""
    y = comp.targets_for(family.ids)
    decision = scorer.choose(y, family.oof["tta"], family.folds)
    rule = decision["chosen"]
    what = f"family {family.name} alone (TTA, best rule `{rule}`)"
    return scorer.rule_row(
        what, rule, y, family.oof["tta"], family.folds, family.ids, family.test["tta"], expect=decision
    )


def blend_rows(scorer: Scorer, comp, families: list[Family], best: Row) -> tuple:
    """Each other family alone, then all blended as the submit kernel blends (fit_weights, blend), + second level."""
    from imet_utils.ensemble import blend, fit_weights

    first = families[0]
    names = "+".join(f.name for f in families)
    rows = [alone_row(scorer, comp, f) for f in families[1:]]
    in_all = [set(f.ids) for f in families[1:]]
    ids = np.array([i for i in first.ids if all(i in others for others in in_all)])
    picks = [pd.Index(f.ids).get_indexer(ids) for f in families]
    y = comp.targets_for(ids)
    folds = first.folds[picks[0]]
    oofs = [f.oof["tta"][pick] for f, pick in zip(families, picks)]
    weights = fit_weights(y, oofs)
    weights = weights / weights.sum()
    kernel_weights = fit_weights(y, [f.saved_oof[pick] for f, pick in zip(families, picks)])
    print(
        f"blend weights {names}: {np.round(weights, 3).tolist()} (fit_weights on the TTA OOF); the submit kernel's "
        f"(on the saved OOF): {np.round(kernel_weights / kernel_weights.sum(), 3).tolist()}"
    )
    blend_oof = blend(oofs, weights)
    blend_test = blend([f.test["tta"] for f in families], weights)
    decision = scorer.choose(y, blend_oof, folds)
    rule = decision["chosen"]
    blended = scorer.rule_row(
        f"{names} blended (TTA, best rule `{rule}`)", rule, y, blend_oof, folds, ids, blend_test, best, decision
    )
    second, _ = scorer.second_level_row(
        f"{names} blended + second level", y, blend_oof, folds, ids, blend_test, decision, blended
    )
    figures = {
        "blend_test": blended.test.mean(),
        "blend_oof": blended.oof.mean(),
        "blend_second_test": second.test.mean() if second else float("nan"),
    }
    return rows + [blended] + ([second] if second else []), figures


def train_families(args: argparse.Namespace, data: Path, work: Path, specs: list) -> None:
    """``build_kernel.py --run-local`` for each family (with ``--reuse``, not where its train output exists)."""
    for name, overrides in specs:
        if args.reuse and train_dirs(work / name):
            print(f"family {name}: reusing {train_dirs(work / name)[0]}")
            continue
        sets = [*args.sets, *(f"{key}={value}" for key, value in overrides.items())]
        seconds = run_family(data, work / name, sets)
        print(f"family {name}: build_kernel.py --run-local took {seconds:.0f}s", flush=True)


def load_families(work: Path, comp, specs: list, views, reuse: bool) -> list[Family]:
    families = []
    for name, _ in specs:
        start = time.time()
        families.append(load_family(name, work / name, comp, views, reuse))
        print(f"family {name}: predictions {time.time() - start:.0f}s; {families[-1].saved_check}", flush=True)
    if any(not np.array_equal(f.good, families[0].good) for f in families):
        raise SystemExit("the families' readable test images differ")
    return families


def score_rows(scorer: Scorer, comp, families: list[Family], views, submissions: list) -> tuple:
    """Every row of the table, and the figures of the last line (``data`` first, filled in by the caller)."""
    rows, best, figures = family_rows(scorer, comp, families[0], views)
    if len(families) > 1:
        more, blend_figures = blend_rows(scorer, comp, families, best)
        rows += more
        figures.update(blend_figures)
    rows += [row for row in submissions if row]
    figures["constant_test"] = best_constant_f2(scorer.y_test)
    rows.append(
        Row(
            "best constant prediction (the k most frequent test labels, k chosen on test)",
            None,
            note=f"{figures['constant_test']:.4f} (oracle)",
        )
    )
    return rows, figures


def print_report(args, data: Path, comp, scorer: Scorer, families: list[Family], views, rows: list[Row]) -> None:
    first = families[0]
    configs = "; ".join(
        f"{f.name}: model={f.config.model} image_size={f.config.image_size} epochs={f.config.epochs}" for f in families
    )
    groups = ", ".join(f"{group} {len(labels)}" for group, labels in scorer.groups.items())
    print(
        f"**{data}**: train {len(comp.train)}, test {len(comp.test_ids)} ({int(first.good.sum())} readable), "
        f"labels {comp.labels.n_classes} ({groups}); "
        f"OOF {len(first.ids)} images in {len(np.unique(first.folds))} folds; families {configs}; "
        f"TTA views {list(views)}; "
        f"bootstrap {args.boot} resamples (seed {args.seed}), 95% percentile intervals, Δ paired\n"
    )
    print_table(rows, args.boot, args.seed)
    print(
        "\nOOF cannot see the fold ensemble (each OOF image is predicted by its own fold's model: Δ OOF of 2 is "
        "0 by construction). OOF is scored against train.csv's labels, test against solution.csv's."
    )


def main() -> int:
    args = arguments()
    started = time.time()
    data = args.data.resolve()
    work = (args.work or ROOT / "local_run" / "score" / data.name).resolve()
    specs = args.family or [(name, {k: str(v) for k, v in overrides.items()}) for name, overrides in FAMILIES]
    train_families(args, data, work, specs)
    comp = read_competition(data)
    views = TTA_VIEWS[: args.tta]
    families = load_families(work, comp, specs, views, args.reuse)
    start = time.time()
    y_test = solution_truth(data, comp)
    scorer = Scorer(comp, y_test, families[0].good)
    submissions = [submission_row(name, work / name, comp, y_test) for name, _ in specs]
    rows, figures = score_rows(scorer, comp, families, views, submissions)
    print(f"decisions and second levels: {time.time() - start:.0f}s\n")
    print_report(args, data, comp, scorer, families, views, rows)
    print(f"total {time.time() - started:.0f}s")
    figures = {"data": data.name, **figures}
    print("score: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
