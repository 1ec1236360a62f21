"""Metrics against hand-computed cases and an independent implementation (scikit-learn)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from launch.eval import metrics


def test_auc_and_eer_on_a_hand_computed_score_set():
    # ROC points (fpr, tpr): (0,0) (0,.5) (.5,.5) (.5,1) (1,1) -> area .75; FNR=FPR=.5 at score .4
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(scores, labels) == pytest.approx(0.75)
    assert metrics.equal_error_rate(scores, labels) == pytest.approx(0.5)


def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    good = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert metrics.roc_auc(good, labels) == 1.0
    assert metrics.equal_error_rate(good, labels) == 0.0
    assert metrics.roc_auc(-good, labels) == 0.0
    assert metrics.equal_error_rate(-good, labels) == 1.0


def test_eer_interpolates_between_roc_points():
    # a positive and a negative tie at 0.5: ROC (0,0) (0,.5) (.5,1) (1,1). FNR-FPR is .5 at
    # (0,.5) and -.5 at (.5,1): halfway along that diagonal segment FPR = FNR = .25
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    assert metrics.equal_error_rate(scores, labels) == pytest.approx(0.25)


def test_auc_with_ties_equals_sklearn_and_eer_lies_on_sklearn_roc():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding creates many ties
    assert metrics.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)
    eer = metrics.equal_error_rate(scores, labels)
    i = np.flatnonzero(1 - tpr <= fpr)[0]
    assert min(fpr[i - 1], fpr[i]) - 1e-12 <= eer <= max(fpr[i], 1 - tpr[i - 1]) + 1e-12


def test_accuracy_counts_ties_as_one_over_number_tied():
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # positive (0) strictly best -> 1
            [0.5, 0.5, 0.1],  # positive tied with one other -> 1/2
            [0.3, 0.3, 0.3],  # three-way tie -> 1/3
            [0.1, 0.9, 0.2],
        ]
    )  # positive not best -> 0
    labels = np.array([0, 1, 2, 0])
    hits = metrics.tie_aware_hits(scores, labels)
    np.testing.assert_allclose(hits, [1, 0.5, 1 / 3, 0])
    assert metrics.matching_accuracy(scores, labels) == pytest.approx((1 + 0.5 + 1 / 3) / 4)


def test_constant_scorer_gets_exactly_chance():
    for k in (2, 5, 10):
        labels = np.arange(40) % k
        assert metrics.matching_accuracy(np.zeros((40, k)), labels) == pytest.approx(1 / k)


def test_bad_inputs_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        metrics.matching_accuracy(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        metrics.matching_accuracy(np.zeros((1, 2)), np.array([2]))
    with pytest.raises(ValueError, match="0 or 1"):
        metrics.roc_auc(np.zeros(2), np.array([0, 2]))
    assert np.isnan(metrics.roc_auc(np.zeros(3), np.ones(3)))


def test_best_threshold_separates_and_threshold_accuracy_matches():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.25])
    labels = np.array([0, 0, 0, 1, 1, 1])
    thr = metrics.best_threshold(scores, labels)
    # any threshold in (0.2, 0.25] separates except 0.3 (a negative above 0.25): best acc = 5/6
    assert metrics.threshold_accuracy(scores, labels, thr) == pytest.approx(5 / 6)
    sep = np.array([0.1, 0.2, 0.8, 0.9])
    thr = metrics.best_threshold(sep, np.array([0, 0, 1, 1]))
    assert 0.2 < thr < 0.8
    assert metrics.threshold_accuracy(sep, np.array([0, 0, 1, 1]), thr) == 1.0


def test_bootstrap_ci_brackets_the_estimate_is_seeded_and_collapses_without_variation():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 10)
    hits = (rng.random(300) < 0.7).astype(float)
    fn = lambda i: hits[i].mean()  # noqa: E731
    lo, hi = metrics.bootstrap_ci(fn, groups, n_boot=300, seed=1)
    assert lo < hits.mean() < hi
    assert 0.55 < lo and hi < 0.85
    assert (lo, hi) == metrics.bootstrap_ci(fn, groups, n_boot=300, seed=1)
    # identical identities: every resample gives the same value
    same = np.tile([1.0, 0.0], 150)
    lo, hi = metrics.bootstrap_ci(lambda i: same[i].mean(), groups, n_boot=100, seed=0)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)


def test_bootstrap_resamples_identities_not_trials():
    # 2 identities: one always right (100 trials), one always wrong (100 trials). Resampling
    # identities gives only 0, .5 or 1; resampling trials would concentrate tightly around .5.
    groups = np.repeat(["a", "b"], 100)
    hits = np.r_[np.ones(100), np.zeros(100)]
    lo, hi = metrics.bootstrap_ci(lambda i: hits[i].mean(), groups, n_boot=400, seed=0)
    assert lo == 0.0 and hi == 1.0


def test_average_precision_hand_computed_and_map_of_a_perfect_embedding():
    # relevant items at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    assert metrics.average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    assert np.isnan(metrics.average_precision(np.zeros(3), np.zeros(3)))
    ids = np.array(["a", "a", "b", "b", "c"])
    centres = {"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1]}
    emb = np.array([centres[i] for i in ids], dtype=float) + 0.01 * np.arange(5)[:, None]
    assert metrics.mean_average_precision(emb, ids, emb, ids, exclude=list(range(5))) == pytest.approx(1.0)
    # `exclude` drops the query's own clip: "c" has no other clip, so it is no longer scorable
    assert metrics.mean_average_precision(emb[4:], ids[4:], emb, ids) == pytest.approx(1.0)
    assert np.isnan(metrics.mean_average_precision(emb[4:], ids[4:], emb, ids, exclude=[4]))
    # and with its own clip gone, a0's other "a" clip (moved orthogonal to it) ranks last of 4: AP 1/4
    far = emb.copy()
    far[1] = [0.0, 1.0, 0.3]
    assert metrics.mean_average_precision(far[:1], ids[:1], far, ids, exclude=[0]) == pytest.approx(0.25)
    assert metrics.mean_average_precision(far[:1], ids[:1], far, ids) == pytest.approx((1 + 2 / 5) / 2)
    # identities shuffled in the gallery: retrieval is no longer perfect
    assert metrics.mean_average_precision(emb, ids, emb, ids[[2, 0, 4, 1, 3]]) < 1.0
