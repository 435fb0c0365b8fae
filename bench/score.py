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
from imet_utils.layout import oof_views  # noqa: E402
from imet_utils.metrics import f2_per_sample, threshold_grid  # noqa: E402
from kernel_build.scoring import best_constant_f2, fit_rule  # noqa: E402

FAMILIES = (("A", {}), ("B", {"model": "small-cnn"}))  # the local profile, and a deeper CNN
SUBMIT = SubmitConfig()
GRID = threshold_grid(*SUBMIT.threshold_grid)
BOUNDS = {"min_labels": SUBMIT.min_labels, "max_labels": SUBMIT.max_labels}
RULES = tuple(SUBMIT.decision_rules)
VIEWS_FILE = "score_views.npz"
BATCH = 64
BOOT_CELLS = 1 << 22  # resampled values held at once


def bootstrap_means(values: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The means of ``n`` resamples (with replacement) of ``values``; the resamples depend on (len, n, seed) only."""
    values = np.asarray(values, dtype=np.float64)
    rng, out = np.random.default_rng(seed), np.empty(n)
    step = max(1, BOOT_CELLS // max(1, len(values)))
    for s in range(0, n, step):
        out[s : s + step] = values[rng.integers(0, len(values), size=(min(step, n - s), len(values)))].mean(axis=1)
    return out


def bootstrap_ci(values: np.ndarray, n: int, seed: int = 0, level: float = 0.95) -> tuple:
    """Percentile interval of the mean of ``values`` over ``n`` bootstrap resamples."""
    q = 100 * (1 - level) / 2
    return tuple(float(v) for v in np.percentile(bootstrap_means(values, n, seed), [q, 100 - q]))


def paired_diff_ci(a: np.ndarray, b: np.ndarray, n: int, seed: int = 0, level: float = 0.95) -> tuple:
    """Interval of mean(a) - mean(b) with the same resampled images for both (a and b are aligned per image)."""
    return bootstrap_ci(np.asarray(a, np.float64) - np.asarray(b, np.float64), n, seed, level)


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


def predict_folds(outputs, comp, cache_root: Path, views: Sequence[str], saved: dict) -> tuple:
    """Each fold model's probabilities of its OOF file's ids and the readable test images, per view: ({"k/split/view":
    probs, "k/ids": ids, "k/stamp": model mtime}, good test mask); reuses ``saved`` entries of the same model file."""
    from imet_utils.images import cache_for_model
    from imet_utils.layout import MODEL_DIR, OOF_FILE, SAVED_MODEL_FILE, fold_dir
    from imet_utils.prediction import load_for_inference, predict_views

    res, good = {}, None
    for out in outputs:
        c = out.config
        train = cache_for_model(comp.train["id"], comp.train_dir, split="train", model_config=c, root=cache_root)
        test = cache_for_model(comp.test_ids["id"], comp.test_dir, split="test", model_config=c, root=cache_root)
        path_of, good = dict(zip(train.ids, train.paths)), test.good_mask()
        for k in out.folds:
            ids = np.load(fold_dir(out.root, k) / OOF_FILE)["ids"].astype(str)
            ids = ids[[path_of.get(i) is not None for i in ids]]
            stamp = (fold_dir(out.root, k) / MODEL_DIR / SAVED_MODEL_FILE).stat().st_mtime
            fresh = f"{k}/stamp" not in saved or float(saved[f"{k}/stamp"]) != stamp
            res.update({} if fresh else {key: v for key, v in saved.items() if key.startswith(f"{k}/")})  # all views
            res[f"{k}/ids"], res[f"{k}/stamp"], model = ids, stamp, None
            for split, paths in (("oof", [path_of[i] for i in ids]), ("test", [p for p in test.paths if p])):
                for v in views:
                    key = f"{k}/{split}/{v}"
                    if len(res.get(key, ())) != len(paths) or not len(paths):
                        model = model or load_for_inference(fold_dir(out.root, k) / MODEL_DIR)
                        res[key] = predict_views(model, paths, size=c.image_size, batch_size=BATCH, views=(v,))
    return res, good


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


def load_family(name: str, work: Path, comp, views: Sequence[str], reuse: bool) -> Family:
    from imet_utils.inference import load_train_output, oof_predictions

    outputs = [load_train_output(d) for d in train_dirs(work)]
    if not outputs:
        raise SystemExit(f"no train output under {work}/*/kaggle/working")
    path = work / VIEWS_FILE
    saved = dict(np.load(path)) if reuse and path.is_file() else {}
    res, good = predict_folds(outputs, comp, work.parent / "image_cache", views, saved)
    np.savez(path, **res)
    folds = sorted(int(k.split("/")[0]) for k in res if k.endswith("/ids"))
    where = {i: (k, j) for k in folds for j, i in enumerate(res[f"{k}/ids"])}
    ids = np.array([i for i in comp.train["id"] if i in where], dtype=str)
    fold_of = np.array([where[i][0] for i in ids])
    sv = sorted({v for o in outputs for v in oof_views(o.root, o.config.n_folds)})  # what the kernel saved
    again = {"saved": sv[0]} if len(sv) == 1 and set(sv[0]) <= set(views) else {}  # re-predicted here too
    oof, test = {}, {}
    for label, vs in {"centre": views[:1], "tta": views, **again}.items():
        oof[label] = np.zeros((len(ids), res[f"{folds[0]}/oof/{views[0]}"].shape[1]), np.float32)
        for k in folds:
            rows = np.flatnonzero(fold_of == k)
            oof[label][rows] = np.mean([res[f"{k}/oof/{v}"] for v in vs], axis=0)[[where[i][1] for i in ids[rows]]]
        test[label] = np.mean([res[f"{k}/test/{v}"] for k in folds for v in vs], axis=0)  # = mean of fold means
    s_ids, s_probs, _ = oof_predictions([outputs], list(ids))
    saved_oof = s_probs[0][pd.Index(s_ids).get_indexer(ids)]
    check = f"the saved OOF averages {sv}" + (
        f"; re-predicted here: max |diff| {np.abs(oof['saved'] - saved_oof).max():.2e}" if again else ""
    )
    return Family(
        name,
        outputs[0].config,
        ids,
        fold_of,
        oof,
        test,
        {k: res[f"{k}/test/{views[0]}"] for k in folds},
        good,
        saved_oof,
        check,
    )


@dataclasses.dataclass
class Row:
    what: str
    test: np.ndarray | None  # per test image (all of sample_submission's)
    oof: np.ndarray | None = None  # per OOF image, aligned with oof_ids
    oof_ids: np.ndarray | None = None
    base: Row | None = None  # the row it adds to (the deltas are this row's F2 less its)
    note: str = ""  # the test cell of a row without per-image values


def cell(values, n, seed, signed=False, note="") -> str:
    """``0.xxxx [lo, hi]``; signed (``+0.0123``) for a delta."""
    if values is None or not len(values):
        return note or "—"
    if signed and not np.any(values):
        return "±0 (identical)"
    lo, hi = bootstrap_ci(values, n, seed)
    return "{0:{f}} [{1:{f}}, {2:{f}}]".format(float(np.mean(values)), lo, hi, f="+.4f" if signed else ".4f")


def print_table(rows: list[Row], n: int, seed: int) -> None:
    number = {id(r): i + 1 for i, r in enumerate(rows)}
    print("| what | test F2 [95% CI] | Δ test [95% CI] | OOF F2 (cross-fitted) [95% CI] | Δ OOF [95% CI] |")
    print("|---|---|---|---|---|")
    for r in rows:
        b, dt, do = r.base, None, None
        if b is not None and r.test is not None and b.test is not None:
            dt = r.test - b.test
        if b is not None and r.oof is not None and b.oof is not None:  # paired on the images both score
            _, ia, ib = np.intersect1d(r.oof_ids, b.oof_ids, return_indices=True)
            do = r.oof[ia] - b.oof[ib]
        what = f"{number[id(r)]}. {r.what}" + (f" (Δ vs {number[id(b)]})" if b is not None else "")
        print(
            f"| {what} | {cell(r.test, n, seed, note=r.note)} | {cell(dt, n, seed, True)} | "
            f"{cell(r.oof, n, seed)} | {cell(do, n, seed, True)} |"
        )


class Scorer:
    """Fits and scores rules: test labels as the submit kernel writes them (unreadable images get the fallback)."""

    def __init__(self, comp, y_test: np.ndarray, good: np.ndarray):
        from imet_utils.inference import fallback_labels, label_prior

        self.groups, self.y_test, self.good = comp.labels.group_index(), y_test, good
        self.fallback = fallback_labels(label_prior(comp.targets()), SUBMIT.fallback_top_k)

    def test_f2(self, params: dict, probs: np.ndarray) -> np.ndarray:
        pred = np.tile(self.fallback, (len(self.good), 1))
        pred[self.good] = apply_rule(params, probs, self.groups)
        return f2_per_sample(self.y_test, pred)

    def choose(self, y, probs, folds, rules=RULES) -> dict:
        return choose_rule(y, probs, folds, self.groups, grid=GRID, rules=rules, **BOUNDS)

    def rule_row(self, what, rule, y, oof, folds, ids, test, base=None, expect: dict | None = None) -> Row:
        """Test: ``rule`` fitted on all OOF rows; OOF: cross-fitted per image (checked against ``expect``,
        choose_rule's result on the same rows: equal for global, else a warning)."""
        f2 = crossfit_f2(rule, y, oof, folds, self.groups)
        if expect is not None and abs(f2.mean() - expect["oof_f2"][rule]) > 1e-6:
            msg = f"{what}: per-image cross-fitted F2 {f2.mean():.6f} != choose_rule's {expect['oof_f2'][rule]:.6f}"
            assert rule != "global", msg
            print("WARNING " + msg, flush=True)
        return Row(what, self.test_f2(fit_rule(rule, y, oof, self.groups, GRID, **BOUNDS), test), f2, ids, base)

    def second_level_row(self, what, y, oof, folds, ids, test, first: dict, base: Row) -> tuple:
        """The submit kernel's choose_second_level on (y, oof); when it is not chosen its cross-fitted
        probabilities and refit are recomputed (same seeds) so that the row is reported anyway."""
        from imet_utils.stacking import choose_second_level, crossfit_probs, refit_second_level

        stack = choose_second_level(y, oof, folds, self.groups, first=first, grid=GRID, rules=RULES, **BOUNDS)
        e = stack.entry
        if e.get("skipped"):
            return None, e
        stacked, level = (
            (stack.probs, stack.level)
            if stack.level is not None
            else (crossfit_probs(y, oof, folds, self.groups), refit_second_level(y, oof, folds, self.groups))
        )
        f2 = crossfit_f2(e["rule"], y, stacked, folds, self.groups)
        assert abs(f2.mean() - e["oof_f2"]) < 1e-6, (f2.mean(), e["oof_f2"])
        what = f"{what} (rule `{e['rule']}`; choose_second_level: {'' if e['chosen'] else 'not '}chosen)"
        return Row(what, self.test_f2(e["rule_params"], level.predict(test)), f2, ids, base), e


def solution_truth(data: Path, comp) -> np.ndarray:
    sol = read_train(data / "solution.csv", comp.labels.n_classes)
    rows = pd.Index(sol["id"]).get_indexer(list(comp.test_ids["id"]))
    if (rows < 0).any():
        raise SystemExit(f"{data}/solution.csv lacks {int((rows < 0).sum())} test id(s)")
    return multi_hot([sol["labels"].iat[r] for r in rows], comp.labels.n_classes)


def submission_row(name: str, work: Path, comp, y_test) -> Row | None:
    """The test F2 of the submission.csv the family's local run wrote (its submit kernel: tta and OOF as built)."""
    path = work / "submit" / "kaggle" / "working" / "submission.csv"
    if not path.is_file():
        return None
    sub = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("id")
    pred = multi_hot(
        [[int(t) for t in s.split()] for s in sub.loc[list(comp.test_ids["id"]), "attribute_ids"]],
        comp.labels.n_classes,
    )
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


def family_rows(sc: Scorer, comp, a: Family, views) -> tuple:
    """Rows of the first family: one fold, the fold ensemble, TTA, each rule, the second level."""
    y, k0 = comp.targets_for(a.ids), int(a.folds.min())
    f0 = a.folds == k0

    def row(what, rule, p, base=None, expect=None):
        return sc.rule_row(what, rule, y, a.oof[p], a.folds, a.ids, a.test[p], base, expect)

    ens = row(
        f"{len(np.unique(a.folds))}-fold ensemble (centre)",
        "global",
        "centre",
        expect=sc.choose(y, a.oof["centre"], a.folds, rules=("global",)),
    )
    one = Row(
        f"one fold's model (fold {k0}, centre)",
        sc.test_f2(fit_rule("global", y[f0], a.oof["centre"][f0], sc.groups, GRID, **BOUNDS), a.fold_test[k0]),
        ens.oof[f0],
        a.ids[f0],
    )
    ens.base, dec = one, sc.choose(y, a.oof["tta"], a.folds)
    tta = row(f"+ TTA ({len(views)} views)", "global", "tta", ens, dec)
    rows = [one, ens, tta] + [
        row(f"TTA, rule `{r}`" + (" (chosen)" if r == dec["chosen"] else ""), r, "tta", tta, dec) for r in RULES
    ]
    best = rows[3 + RULES.index(dec["chosen"])]
    second, entry = sc.second_level_row("TTA + second level", y, a.oof["tta"], a.folds, a.ids, a.test["tta"], dec, best)
    key = {
        "one_fold_test": one.test.mean(),
        "ensemble_test": ens.test.mean(),
        "ensemble_tta_test": tta.test.mean(),
        "best_rule": dec["chosen"],
        "best_test": best.test.mean(),
        "best_oof": best.oof.mean(),
        "second_test": second.test.mean() if second else float("nan"),
        "second_chosen": int(bool(entry.get("chosen"))),
    }
    return rows + ([second] if second else []), best, key


def blend_rows(sc: Scorer, comp, fams: list[Family], best: Row) -> tuple:
    """Each other family alone, then all blended as the submit kernel blends (fit_weights, blend), + second level."""
    from imet_utils.inference import blend, fit_weights

    a, rows, names = fams[0], [], "+".join(f.name for f in fams)
    for f in fams[1:]:
        yb, decb = comp.targets_for(f.ids), sc.choose(comp.targets_for(f.ids), f.oof["tta"], f.folds)
        rows.append(
            sc.rule_row(
                f"family {f.name} alone (TTA, best rule `{decb['chosen']}`)",
                decb["chosen"],
                yb,
                f.oof["tta"],
                f.folds,
                f.ids,
                f.test["tta"],
                expect=decb,
            )
        )
    others = [set(f.ids) for f in fams[1:]]
    ids = np.array([i for i in a.ids if all(i in o for o in others)])
    pick = [pd.Index(f.ids).get_indexer(ids) for f in fams]
    yb, folds = comp.targets_for(ids), a.folds[pick[0]]
    stacks = [f.oof["tta"][p] for f, p in zip(fams, pick)]
    w = fit_weights(yb, stacks)
    w, w_kernel = w / w.sum(), fit_weights(yb, [f.saved_oof[p] for f, p in zip(fams, pick)])
    print(
        f"blend weights {names}: {np.round(w, 3).tolist()} (fit_weights on the TTA OOF); the submit kernel's "
        f"(on the saved OOF): {np.round(w_kernel / w_kernel.sum(), 3).tolist()}"
    )
    ob, tb = blend(stacks, w), blend([f.test["tta"] for f in fams], w)
    decb = sc.choose(yb, ob, folds)
    bl = sc.rule_row(
        f"{names} blended (TTA, best rule `{decb['chosen']}`)", decb["chosen"], yb, ob, folds, ids, tb, best, decb
    )
    sb, _ = sc.second_level_row(f"{names} blended + second level", yb, ob, folds, ids, tb, decb, bl)
    key = {
        "blend_test": bl.test.mean(),
        "blend_oof": bl.oof.mean(),
        "blend_second_test": sb.test.mean() if sb else float("nan"),
    }
    return rows + [bl] + ([sb] if sb else []), key


def main() -> int:
    args, t0 = arguments(), time.time()
    data = args.data.resolve()
    work = (args.work or ROOT / "local_run" / "score" / data.name).resolve()
    specs = args.family or [(n, {k: str(v) for k, v in o.items()}) for n, o in FAMILIES]
    for name, over in specs:
        if args.reuse and train_dirs(work / name):
            print(f"family {name}: reusing {train_dirs(work / name)[0]}")
        else:
            secs = run_family(data, work / name, [*args.sets, *(f"{k}={v}" for k, v in over.items())])
            print(f"family {name}: build_kernel.py --run-local took {secs:.0f}s", flush=True)
    comp, views = read_competition(data), TTA_VIEWS[: args.tta]
    fams = []
    for name, _ in specs:
        start = time.time()
        fams.append(load_family(name, work / name, comp, views, args.reuse))
        print(f"family {name}: predictions {time.time() - start:.0f}s; {fams[-1].saved_check}", flush=True)
    start, a, y_test = time.time(), fams[0], solution_truth(data, comp)
    if any(not np.array_equal(f.good, a.good) for f in fams):
        raise SystemExit("the families' readable test images differ")
    sc = Scorer(comp, y_test, a.good)
    rows, best, key = family_rows(sc, comp, a, views)
    key = {"data": data.name, **key}
    if len(fams) > 1:
        more, k = blend_rows(sc, comp, fams, best)
        rows, key = rows + more, {**key, **k}
    rows += [r for r in (submission_row(n, work / n, comp, y_test) for n, _ in specs) if r]
    key["constant_test"] = best_constant_f2(y_test)
    rows.append(
        Row(
            "best constant prediction (the k most frequent test labels, k chosen on test)",
            None,
            note=f"{key['constant_test']:.4f} (oracle)",
        )
    )
    print(f"decisions and second levels: {time.time() - start:.0f}s\n")
    cfgs = "; ".join(
        f"{f.name}: model={f.config.model} image_size={f.config.image_size} epochs={f.config.epochs}" for f in fams
    )
    print(
        f"**{data}**: train {len(comp.train)}, test {len(comp.test_ids)} ({int(a.good.sum())} readable), "
        f"labels {comp.labels.n_classes} ({', '.join(f'{g} {len(i)}' for g, i in sc.groups.items())}); "
        f"OOF {len(a.ids)} images in {len(np.unique(a.folds))} folds; families {cfgs}; TTA views {list(views)}; "
        f"bootstrap {args.boot} resamples (seed {args.seed}), 95% percentile intervals, Δ paired\n"
    )
    print_table(rows, args.boot, args.seed)
    print(
        "\nOOF cannot see the fold ensemble (each OOF image is predicted by its own fold's model: Δ OOF of 2 is "
        "0 by construction). OOF is scored against train.csv's labels, test against solution.csv's."
    )
    print(f"total {time.time() - t0:.0f}s")
    print("score: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in key.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
