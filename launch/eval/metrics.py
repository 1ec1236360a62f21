"""Metrics of the papers' tables, computed from scores alone (no model, no files).

Conventions (documented in docs/EVALUATION.md, tested against hand-computed cases):

* 1:K accuracy: a trial whose positive shares the maximum score with t-1 other candidates earns
  1/t. This is the expected accuracy of breaking ties uniformly at random, but without an RNG,
  so a constant scorer gets exactly chance (1/K) instead of 100 % or 0 % depending on argmax's
  first-index rule.
* AUC: the Mann-Whitney statistic with tied scores counted 1/2 (area under the ROC step curve
  with diagonal segments through ties).
* EER: the point where FNR and FPR cross, linearly interpolated between the two ROC points that
  bracket the crossing.
* Verification accuracy: `score >= threshold` means "match"; the threshold is picked on the
  validation split (the one that maximises validation accuracy), never on the test split.
* Confidence intervals: percentile bootstrap over *identities* (trials of one identity are not
  independent: they share the identity's voice and face), 1000 replicates, fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def tie_aware_hits(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-trial credit in [0, 1] for 1:K matching: 1/#tied if the positive holds the maximum."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"1:K scores must be [N, K>=2], got shape {scores.shape}")
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels must be [N={scores.shape[0]}], got {labels.shape}")
    if np.any((labels < 0) | (labels >= scores.shape[1])):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]})")
    if not np.all(np.isfinite(scores)):
        raise ValueError("1:K scores contain NaN or inf; the model produced invalid outputs")
    best = scores.max(axis=1, keepdims=True)
    at_max = scores == best
    positive_at_max = at_max[np.arange(len(labels)), labels]
    return positive_at_max / at_max.sum(axis=1)


def matching_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """1:K accuracy with ties counted 1/#tied (see module docstring)."""
    return float(tie_aware_hits(scores, labels).mean())


def _check_binary(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(np.int64)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in length")
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError("verification labels must be 0 or 1")
    if not np.all(np.isfinite(scores)):
        raise ValueError("verification scores contain NaN or inf")
    return scores, labels


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as scipy.stats.rankdata 'average')."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    starts = np.r_[0, np.flatnonzero(sorted_vals[1:] != sorted_vals[:-1]) + 1]
    ends = np.r_[starts[1:], len(values)]
    group_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic; NaN when one class is absent."""
    scores, labels = _check_binary(scores, labels)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    u = ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, thresholds descending, starting at (0, 0)."""
    scores, labels = _check_binary(scores, labels)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_group = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    tp = np.cumsum(y)[last_of_group]
    fp = (last_of_group + 1) - tp
    n_pos, n_neg = int(labels.sum()), int(len(labels) - labels.sum())
    fpr = np.r_[0.0, fp / max(n_neg, 1)]
    tpr = np.r_[0.0, tp / max(n_pos, 1)]
    thresholds = np.r_[np.inf, s[last_of_group]]
    return fpr, tpr, thresholds


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER: FNR = FPR crossing, linearly interpolated between bracketing ROC points."""
    scores, labels = _check_binary(scores, labels)
    if labels.sum() == 0 or labels.sum() == len(labels):
        return float("nan")
    fpr, tpr, _ = roc_points(scores, labels)
    diff = (1.0 - tpr) - fpr  # decreasing from +1 to -1 along the ROC
    i = int(np.flatnonzero(diff <= 0)[0])
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy of `score >= thr` (midpoint between neighbouring scores).

    Ties between equally good thresholds go to the lowest one, so the choice is deterministic.
    """
    scores, labels = _check_binary(scores, labels)
    uniq = np.unique(scores)
    # candidate thresholds: below everything, between neighbours, above everything
    cands = np.r_[uniq[0] - 1.0, (uniq[1:] + uniq[:-1]) / 2.0, uniq[-1] + 1.0]
    pos_sorted = np.sort(scores[labels == 1])
    neg_sorted = np.sort(scores[labels == 0])
    tp = len(pos_sorted) - np.searchsorted(pos_sorted, cands, side="left")
    tn = np.searchsorted(neg_sorted, cands, side="left")
    acc = (tp + tn) / len(scores)
    return float(cands[int(np.argmax(acc))])


def threshold_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Accuracy of the decision `score >= threshold` -> match."""
    scores, labels = _check_binary(scores, labels)
    return float(np.mean((scores >= threshold).astype(np.int64) == labels))


def bootstrap_ci(
    metric: Callable[[np.ndarray], float], groups: Sequence, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of `metric(trial_indices)`, resampling whole groups (identities).

    `groups[i]` is the group (probe identity) of trial i. Each replicate draws as many groups as
    there are, with replacement, and evaluates the metric on all trials of the drawn groups.
    Replicates where the metric is NaN (e.g. a one-class resample for AUC) are dropped.
    """
    groups = np.asarray(groups)
    if len(groups) == 0:
        return float("nan"), float("nan")
    uniq, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="mergesort")
    bounds = np.r_[0, np.cumsum(np.bincount(inverse, minlength=len(uniq)))]
    members = [order[bounds[g] : bounds[g + 1]] for g in range(len(uniq))]
    rng = np.random.Generator(np.random.PCG64(seed))
    values = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(uniq), size=len(uniq))
        idx = np.concatenate([members[g] for g in drawn])
        v = metric(idx)
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one ranked retrieval: mean of precision@rank over the ranks of the relevant items.

    Items are ranked by decreasing score, ties in input order (stable). NaN without a relevant item.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} differ")
    if not relevant.any():
        return float("nan")
    hits = relevant[np.argsort(-scores, kind="stable")]
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def mean_average_precision(query: np.ndarray, query_ids, gallery: np.ndarray, gallery_ids, exclude=None) -> float:
    """mAP of cosine-similarity retrieval (Wen et al. CVPR 2021's retrieval metric).

    `query [Q, D]`, `gallery [G, D]`; a gallery item is relevant when its identity equals the
    query's. `exclude[q]` (optional) is a gallery row left out for query q (its own clip).
    """
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    gallery_ids = np.asarray(gallery_ids)
    aps = []
    for i in range(len(q)):
        scores = g @ q[i]
        keep = np.ones(len(g), dtype=bool)
        if exclude is not None and exclude[i] is not None:
            keep[exclude[i]] = False
        ap = average_precision(scores[keep], (gallery_ids == query_ids[i])[keep])
        if np.isfinite(ap):
            aps.append(ap)
    return float(np.mean(aps)) if aps else float("nan")
