"""Trials + scorer -> the metrics of the papers' tables, each with a bootstrap CI over identities.

The scorer is anything with `score(direction, probes, candidates) -> ([N, K] scores, method)`
(`launch.eval.scoring.ModelScorer`, or a fake in tests), so this module never touches a model.
"""

from __future__ import annotations

import numpy as np

from launch.eval import metrics
from launch.eval.trials import DIRECTIONS, TrialSet


def _ci(metric_fn, groups, n_boot, seed):
    lo, hi = metrics.bootstrap_ci(metric_fn, groups, n_boot=n_boot, seed=seed)
    return [lo, hi]


def score_verification(scorer, trials: TrialSet, direction: str, desc: str = ""):
    probes, cands, labels, ids = trials.verification(direction)
    scores, method = scorer.score(direction, probes, [[c] for c in cands], desc=desc)
    return scores[:, 0], labels, ids, method


def _supports(scorer, k: int) -> bool:
    supports = getattr(scorer, "supports", None)
    return supports(k) if callable(supports) else True


def evaluate(
    scorer, test: TrialSet, val: TrialSet | None = None, ks=None, n_boot: int = 1000, seed: int = 0, val_scorer=None
) -> dict:
    """Metrics per direction: 1:K accuracy for every K the scorer can score, verification AUC / EER /
    accuracy when it can score K = 1 (a head-only scorer skips what its head was not trained for).

    Verification accuracy: with the head (method `head`), the head's own decision (score > 0, a
    match probability above 1/2), as the papers classify verification pairs; the accuracy at the
    threshold that maximises accuracy on `val`'s pairs is reported beside it (`acc_val_threshold`).
    Embedding scores have no decision rule, so their accuracy uses that val threshold (scored by
    `val_scorer`, default `scorer`: the val trials name items of the val store); without `val` it
    is null (never tuned on test).
    """
    val_scorer = val_scorer or scorer
    ks = list(ks) if ks is not None else list(range(2, test.max_k + 1))
    ks = [k for k in ks if _supports(scorer, k)]
    results: dict = {
        "directions": {},
        "bootstrap": {"replicates": n_boot, "seed": seed, "level": 0.95, "unit": "probe identity"},
    }
    for direction in DIRECTIONS:
        res: dict = {}
        if test.match.get(direction) and ks:
            res["matching"] = {}
            tuples = {k: test.matching(direction, k) for k in ks}
            probes = tuples[ks[0]][0]
            if hasattr(scorer, "score_nested"):
                scored = scorer.score_nested(
                    direction, probes, {k: t[1] for k, t in tuples.items()}, desc=f"{direction} 1:K"
                )
            else:
                scored = {
                    k: scorer.score(direction, probes, t[1], desc=f"{direction} 1:{k}") for k, t in tuples.items()
                }
            for k in ks:
                _, _, labels, ids = tuples[k]
                scores, method = scored[k]
                hits = metrics.tie_aware_hits(scores, labels)
                res["matching"][str(k)] = {
                    "acc": float(hits.mean()),
                    "ci": _ci(lambda i: hits[i].mean(), ids, n_boot, seed),
                    "n": int(len(hits)),
                    "identities": len(set(ids)),
                    "method": method,
                }
        if test.verify.get(direction) and _supports(scorer, 1):
            scores, labels, ids, method = score_verification(scorer, test, direction, f"{direction} verify")
            ver = {
                "auc": metrics.roc_auc(scores, labels),
                "auc_ci": _ci(lambda i: metrics.roc_auc(scores[i], labels[i]), ids, n_boot, seed),
                "eer": metrics.equal_error_rate(scores, labels),
                "eer_ci": _ci(lambda i: metrics.equal_error_rate(scores[i], labels[i]), ids, n_boot, seed),
                "n": int(len(labels)),
                "positives": int(labels.sum()),
                "identities": len(set(ids)),
                "method": method,
                "acc": None,
                "acc_ci": [None, None],
                "threshold": None,
                "threshold_source": None,
            }
            if method == "head":
                correct = ((scores > 0).astype(np.int64) == labels).astype(np.float64)
                ver.update(
                    acc=float(correct.mean()),
                    acc_ci=_ci(lambda i: correct[i].mean(), ids, n_boot, seed),
                    threshold=0.0,
                    threshold_source="head decision (match probability > 1/2)",
                )
            if val is not None and val.verify.get(direction):
                v_scores, v_labels, _, v_method = score_verification(
                    val_scorer, val, direction, f"{direction} verify (val)"
                )
                if v_method != method:
                    raise RuntimeError("validation and test verification were scored differently")
                thr = metrics.best_threshold(v_scores, v_labels)
                correct = ((scores >= thr).astype(np.int64) == labels).astype(np.float64)
                tuned = {
                    "threshold": thr,
                    "threshold_source": val.header.get("split", "val"),
                    "val_acc": metrics.threshold_accuracy(v_scores, v_labels, thr),
                }
                if method == "head":
                    ver.update(acc_val_threshold=float(correct.mean()), val_threshold=tuned)
                else:
                    ver.update(
                        acc=float(correct.mean()), acc_ci=_ci(lambda i: correct[i].mean(), ids, n_boot, seed), **tuned
                    )
            res["verification"] = ver
        if res:
            results["directions"][direction] = res
    return results
