"""F2 averaged over samples, the 2019 baseline notebook's binarize rule, threshold search, the count tables behind
fast search, and the bootstrap interval of a mean.

Pure numpy functions, tested against sklearn's ``fbeta_score(average='samples')``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

F_BETA = 2.0
# The 2019 baseline notebook's label counts per image: at least 1, at most 10.
BASELINE_MIN_LABELS = 1
BASELINE_MAX_LABELS = 10
_B2 = F_BETA * F_BETA


def f_beta_from_counts(tp, n_true, n_pred) -> np.ndarray:
    """F-beta from counts, broadcasting: (1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp) = (1 + b^2) tp / (b^2 n_true +
    n_pred); 0 where nothing is true and nothing predicted."""
    num = (1 + _B2) * np.asarray(tp, dtype=np.float64)
    den = _B2 * np.asarray(n_true, dtype=np.float64) + n_pred
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


TOP_K_BLOCKS = 4  # top_k bounds a row's k-th largest by the maxima of this many column blocks per k
TIE_PER_ROW = 1e-12  # best_counts: scores closer than this per row are ties
BLOCK_CELLS = 1 << 22  # matrix cells per block of rows in the passes over a whole OOF or test matrix


def f2_per_sample(y_true: np.ndarray, y_pred: np.ndarray, beta: float = F_BETA) -> np.ndarray:
    """F-beta of each row of two 0/1 matrices; a row with nothing true and nothing predicted scores 0."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = np.count_nonzero(y_true & y_pred, axis=1).astype(np.float64)
    fp = np.count_nonzero(~y_true & y_pred, axis=1)
    fn = np.count_nonzero(y_true & ~y_pred, axis=1)
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    return np.divide((1 + b2) * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def row_blocks(n_rows: int, n_cols: int) -> list[slice]:
    """Row slices of about ``BLOCK_CELLS`` cells, so that a pass over a large matrix keeps its temporaries small."""
    step = max(1, BLOCK_CELLS // max(1, n_cols))
    return [slice(s, min(s + step, n_rows)) for s in range(0, n_rows, step)]


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest values, largest first; ties go to the lower column, as in a
    stable descending sort.

    Never sorts a whole row: the ``k``-th largest of ``4 k`` disjoint column blocks' maxima bounds the row's
    ``k``-th largest from below, so only the few values above that bound are sorted. Rows where the bound
    leaves too many (heavy ties) or too few (NaN) fall back to a partition."""
    n, c = probs.shape
    k = min(int(k), c)
    if k <= 0 or n == 0:
        return np.zeros((n, max(k, 0)), dtype=np.intp)
    if k == 1:
        return np.argmax(probs, axis=1)[:, None]  # the first maximum: the lower column on ties
    if TOP_K_BLOCKS * k > c:
        return np.argsort(-probs, axis=1, kind="stable")[:, :k]
    starts = (np.arange(TOP_K_BLOCKS * k) * c) // (TOP_K_BLOCKS * k)
    block_max = np.maximum.reduceat(probs, starts, axis=1)
    bound = np.partition(block_max, -k, axis=1)[:, -k]
    rows, cols = np.divmod(np.flatnonzero(probs >= bound[:, None]), c)
    count = np.bincount(rows, minlength=n)
    heavy = (count > TOP_K_BLOCKS * k) | (count < k)  # heavy ties, or NaN
    if heavy.any():
        keep = ~heavy[rows]
        rows, cols = rows[keep], cols[keep]
    out = np.empty((n, k), dtype=np.intp)
    if not heavy.all():
        order = np.lexsort((cols, -probs[rows, cols], rows))
        first = np.searchsorted(rows, np.flatnonzero(~heavy))
        out[~heavy] = cols[order[first[:, None] + np.arange(k)[None, :]]]
    if heavy.any():
        out[heavy] = _top_k_partition(probs[heavy], k)
    return out


def _top_k_partition(probs: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(probs, part, axis=1).min(axis=1)
    tied = np.count_nonzero(probs >= kth[:, None], axis=1) > k
    if tied.any():
        part[tied] = np.argsort(-probs[tied], axis=1, kind="stable")[:, :k]
    part.sort(axis=1)
    order = np.argsort(-np.take_along_axis(probs, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def top_k_mask(probs: np.ndarray, k) -> np.ndarray:
    """Boolean mask of each row's ``k`` largest values (``k``: one count, or one per row); ties as ``top_k``."""
    n, c = probs.shape
    k = np.broadcast_to(np.minimum(k, c), (n,))
    out = np.zeros(probs.shape, dtype=bool)
    k_max = int(k.max()) if n else 0
    if k_max > 0:
        np.put_along_axis(out, top_k(probs, k_max), np.arange(k_max)[None, :] < k[:, None], axis=1)
    return out


def _threshold_for(threshold, dtype) -> np.ndarray:
    """A threshold that float32 values exceed exactly when they exceed ``threshold`` in float64: the largest
    float32 not above it (no float32 lies between the two), so the comparison runs in float32."""
    t = np.asarray(threshold, dtype=np.float64)
    if dtype != np.float32:
        return t
    t32 = t.astype(np.float32)
    return np.where(t32 > t, np.nextafter(t32, np.float32(-np.inf)), t32)


def bound_label_counts(sel: np.ndarray, probs: np.ndarray, min_labels: int, max_labels: int) -> np.ndarray:
    """Bounds each row's label count, in place: a row with fewer than ``min_labels`` adds its most probable
    unselected classes, a row with more than ``max_labels`` keeps its most probable selected ones.

    The one label-count bound: ``binarize`` and every decision rule's total bounds use it.

    Args:
        sel: (n, classes) boolean selection, changed in place.
        probs: the probabilities it was selected from.
        min_labels: at least this many labels per row (capped at the number of classes).
        max_labels: at most this many.

    Returns:
        ``sel``. Ties in probability go to the lower class id.
    """
    count, lo = np.count_nonzero(sel, axis=1), min(min_labels, probs.shape[1])
    few = count < lo
    if few.any():
        sel[few] |= top_k_mask(np.where(sel[few], -np.inf, probs[few]), lo - count[few])
    many = count > max_labels
    if many.any():
        sel[many] = top_k_mask(np.where(sel[many], probs[many], -np.inf), max_labels)
    return sel


def binarize(
    probs: np.ndarray, threshold, *, min_labels: int = BASELINE_MIN_LABELS, max_labels: int = BASELINE_MAX_LABELS
) -> np.ndarray:
    """The 2019 baseline notebook's ``binarize_prediction``: p > threshold, then at least ``min_labels`` and at most
    ``max_labels``.

    Args:
        probs: (n, classes) probabilities.
        threshold: scalar, or an array broadcastable to ``probs`` (per class or per image). Compared in float64,
            so float32 probabilities meet the threshold exactly as the threshold search saw them.
        min_labels: rows with fewer labels take their top ``min_labels`` instead.
        max_labels: rows with more labels keep their top ``max_labels`` of those above the threshold.

    Returns:
        (n, classes) boolean matrix. Ties in probability go to the lower class id.
    """
    probs = np.asarray(probs)
    return bound_label_counts(probs > _threshold_for(threshold, probs.dtype), probs, min_labels, max_labels)


def f2_by_group(y_true: np.ndarray, y_pred: np.ndarray, groups: dict) -> dict[str, float | None]:
    """Sample-averaged F2 restricted to each group's labels (images with no true label there are skipped).

    Returns:
        group name -> F2, or None for a group with no true label in any row (nothing to score there).
    """
    out: dict[str, float | None] = {}
    for name, idx in groups.items():
        take, rows = column_view(idx), [np.zeros(0)]
        for b in row_blocks(len(y_true), len(np.asarray(idx))):
            t = np.asarray(y_true[b])[:, take] > 0
            has = t.any(axis=1)
            rows.append(f2_per_sample(t[has], np.asarray(y_pred[b])[:, take][has] > 0))
        f2 = np.concatenate(rows)  # one array, so that its mean is the sample-averaged F2
        out[name] = float(f2.mean()) if len(f2) else None
    return out


def threshold_grid(start: float, stop: float, step: float) -> np.ndarray:
    n = int(round((stop - start) / step)) + 1
    return np.round(start + step * np.arange(n), 6)


def search_threshold(
    y_true: np.ndarray,
    probs: np.ndarray,
    grid: np.ndarray,
    *,
    min_labels: int = BASELINE_MIN_LABELS,
    max_labels: int = BASELINE_MAX_LABELS,
) -> tuple[float, float, np.ndarray]:
    """Tries every threshold of ``grid`` with ``binarize``'s rule, scoring each from every row's top
    ``max_labels`` probabilities alone (no rule keeps more), so the matrix is never sorted or binarized in full.

    Returns:
        (best threshold, its F2, F2 of every threshold in grid order).
    """
    grid = np.asarray(grid, dtype=np.float64)
    n, c = probs.shape
    depth = min(c, max(min_labels, max_labels))
    rows_f2 = np.zeros((len(grid), n))  # one contiguous row per threshold: its mean is the sample-averaged F2 exactly
    for b in row_blocks(n, c):
        p, y = probs[b], np.asarray(y_true[b]) > 0
        idx = top_k(p, depth)
        vals = np.take_along_axis(p, idx, axis=1)
        cumtrue = np.concatenate(
            [np.zeros((len(p), 1), np.int64), np.cumsum(np.take_along_axis(y, idx, axis=1), axis=1)], axis=1
        )
        k = np.clip(np.count_nonzero(vals[:, :, None] > grid[None, None, :], axis=1), min_labels, depth)
        tp = np.take_along_axis(cumtrue, k, axis=1)
        rows_f2[:, b] = f_beta_from_counts(tp, np.count_nonzero(y, axis=1)[:, None], k).T
    scores = rows_f2.mean(axis=1)
    best = int(np.argmax(scores))
    return float(grid[best]), float(scores[best]), scores


def column_view(idx: np.ndarray):
    """A slice when the column indices are contiguous (indexing makes a view, not a copy), else the indices."""
    idx = np.asarray(idx)
    if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def ascending_ranks(values: np.ndarray) -> np.ndarray:
    """rank[i]: the position of values[i] in ascending order (stable)."""
    rank = np.empty(len(values), np.intp)
    rank[np.argsort(values, kind="stable")] = np.arange(len(values))
    return rank


class TopTable:
    """Each row's top ``depth`` probabilities among some columns, largest first (ties: lower column first),
    with the cumulative count of true labels among them: a rule that keeps a row's top k labels there has
    tp = ``cumtrue[k]``, so any (threshold, min, max) rule is scored from counts. Row-wise: a subset of rows
    of the matrix is a row subset of the table."""

    def __init__(self, vals: np.ndarray, cols: np.ndarray, ys: np.ndarray, n_true: np.ndarray):
        self.vals, self.cols, self.ys, self.n_true = vals, cols, ys, n_true
        self.cumtrue = np.concatenate([np.zeros((len(ys), 1), np.int16), np.cumsum(ys, axis=1, dtype=np.int16)], 1)
        self.pos: np.ndarray | None = None  # set by the caller: threshold_positions of vals

    @classmethod
    def build(cls, y_true: np.ndarray, probs: np.ndarray, columns: np.ndarray, depth: int) -> TopTable:
        columns, take = np.asarray(columns), column_view(columns)
        parts = []
        for b in row_blocks(len(probs), len(columns)):
            p, t = probs[b][:, take], np.asarray(y_true[b])[:, take] > 0
            top = top_k(p, depth)
            parts.append(
                (
                    np.take_along_axis(p, top, 1),
                    columns[top].astype(np.int32),
                    np.take_along_axis(t, top, 1),
                    np.count_nonzero(t, axis=1),
                )
            )
        return cls(*(np.concatenate([q[i] for q in parts]) for i in range(4)))

    def subset(self, rows: np.ndarray) -> TopTable:
        t = TopTable.__new__(TopTable)
        for a in ("vals", "cols", "ys", "n_true", "cumtrue", "pos"):
            setattr(t, a, None if getattr(self, a) is None else getattr(self, a)[rows])
        return t

    def kept(self, threshold, min_labels: int, max_labels: int, rows=slice(None)) -> np.ndarray:
        """Labels each row keeps under p > threshold (float64), at least min_labels, at most max_labels."""
        vals = self.vals[rows]
        k = np.clip(np.count_nonzero(vals > np.asarray(threshold, dtype=np.float64), axis=1), min_labels, max_labels)
        return np.minimum(k, vals.shape[1])


def threshold_positions(vals: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many thresholds (one list, or one list per row) lie below each value of ``vals`` (rows, depth):
    with sorted thresholds, a row has ``#{m: pos[m] > j}`` values above the j-th."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 1:
        return np.searchsorted(np.sort(t), vals).astype(np.int16)
    out = np.empty(vals.shape, np.int16)
    for b in row_blocks(len(vals), vals.shape[1] * t.shape[1]):
        out[b] = np.count_nonzero(t[b, None, :] < vals[b, :, None], axis=2)
    return out


def f2_gains(table: TopTable, n_true: np.ndarray, rest_tp=0, rest_k=0) -> np.ndarray:
    """gain[i, k]: row i's F2 when it keeps the table's top k and other columns add (rest_tp, rest_k);
    F2 = 5 tp / (4 n_true + labels kept)."""
    return f_beta_from_counts(
        table.cumtrue.astype(np.int64) + np.reshape(rest_tp, (-1, 1)),
        n_true[:, None],
        np.arange(table.cumtrue.shape[1])[None, :] + np.reshape(rest_k, (-1, 1)),
    )


def best_counts(pos: np.ndarray, gain: np.ndarray, mins: Sequence[int], maxs: Sequence[int], rank: np.ndarray) -> tuple:
    """The first (threshold index, min, max) of highest summed gain when each row keeps clip(its values above
    the threshold, min, max) labels, in nested-loop order: threshold (``rank``: each one's place in ascending
    order), min, max. Scores closer than ``TIE_PER_ROW`` per row are ties (the same labels, summed in
    another order than a loop would), so the first of them wins, as in a loop.

    A row's count above the j-th smallest threshold only drops where j reaches one of its ``pos``, so every
    threshold's score is a running sum of the changes binned at ``pos``: change[j, m, k]."""
    n, depth = pos.shape
    key = (pos.astype(np.int64) * depth + np.arange(depth)[None, :]).ravel()
    change = np.stack(
        [
            np.bincount(key, weights=np.repeat(gain[:, k], depth), minlength=(len(rank) + 1) * depth)
            for k in range(depth + 1)
        ],
        axis=1,
    ).reshape(len(rank) + 1, depth, depth + 1)
    base, m = gain.sum(axis=0), np.arange(depth)
    scores = np.full((len(rank), len(mins), len(maxs)), -np.inf)
    for i, mn in enumerate(mins):
        for j, mx in enumerate(maxs):
            if mx >= max(mn, 1):
                c = np.minimum(np.clip(np.arange(depth + 1), mn, mx), depth)
                steps = (change[:, m, c[:-1]] - change[:, m, c[1:]]).sum(axis=1)
                scores[:, i, j] = (base[c[depth]] + np.cumsum(steps))[rank]
    flat = scores.ravel()
    col, i, j = np.unravel_index(int(np.flatnonzero(flat >= flat.max() - TIE_PER_ROW * max(n, 1))[0]), scores.shape)
    return int(col), int(mins[i]), int(maxs[j])


def grid_histograms(y_true: np.ndarray, probs: np.ndarray, part: np.ndarray, n_parts: int, grid: np.ndarray) -> tuple:
    """(parts, classes, bins) counts of every probability and of the positives' by bin over the sorted grid
    (bin b: b grid values lie below), per part of the rows (``part``: each row's, 0..n_parts-1). Values at or
    below the lowest threshold are not counted among all (no threshold keeps them)."""
    gs = np.sort(np.asarray(grid, dtype=np.float64))
    n, c = probs.shape
    shape = (n_parts, c, len(gs) + 1)
    h_all, h_pos = np.zeros(int(np.prod(shape)), np.int64), np.zeros(int(np.prod(shape)), np.int64)
    for b in row_blocks(n, c):
        p, where = probs[b], np.asarray(part[b])
        for h, (r, col) in ((h_all, np.nonzero(p > _threshold_for(gs[0], p.dtype))), (h_pos, np.nonzero(y_true[b]))):
            h += np.bincount((where[r] * c + col) * shape[2] + np.searchsorted(gs, p[r, col]), minlength=h.size)
    return h_all.reshape(shape), h_pos.reshape(shape)


def column_thresholds(h_all: np.ndarray, h_pos: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each class's first grid threshold maximising its own column F2, from its (classes, bins) histograms."""
    rank = ascending_ranks(np.asarray(grid))

    def above(h):  # (classes, grid order): rows above each threshold
        return np.cumsum(h[:, ::-1], axis=1)[:, ::-1][:, 1:][:, rank]

    pred, tp, pos = above(h_all), above(h_pos), h_pos.sum(axis=1)[:, None]
    f = f_beta_from_counts(tp, pos, pred)
    return np.asarray(grid, dtype=np.float64)[np.argmax(f, axis=1)]


def bootstrap_means(values: np.ndarray, resamples: int, *, seed: int = 0) -> np.ndarray:
    """The means of ``resamples`` bootstrap resamples (with replacement) of ``values``, drawn a block at a time
    (about ``BLOCK_CELLS`` values held at once, so 109k images stay small); they depend on (len, resamples, seed)."""
    values = np.asarray(values, dtype=np.float64)
    rng, out = np.random.default_rng(seed), np.empty(resamples)
    step = max(1, BLOCK_CELLS // max(1, len(values)))
    for s in range(0, resamples, step):
        draw = rng.integers(0, len(values), size=(min(step, resamples - s), len(values)))
        out[s : s + step] = values[draw].mean(axis=1)
    return out


def bootstrap_interval(values: np.ndarray, *, resamples: int, seed: int = 0, level: float = 0.95) -> tuple:
    """Percentile bootstrap interval of the mean of ``values`` (per image), resampling images.

    For a paired difference, pass the per-image difference: both sides then share their resamples.

    Args:
        values: one value per image.
        resamples: bootstrap resamples.
        seed: the random seed of the resamples.
        level: the interval's coverage.

    Returns:
        (low, high).
    """
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(bootstrap_means(values, resamples, seed=seed), [q, 100 - q])
    return float(lo), float(hi)
