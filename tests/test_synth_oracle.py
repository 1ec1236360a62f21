"""The recorded oracle accuracy equals an independent simulation of the oracle rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.synth.attributes import AGE_BANDS, GENDERS, GROUPS, SharedAttributes
from pipeline.synth.oracle import CHANCE, oracle_accuracy
from pipeline.synth.testing import cached_corpus, load_ground_truth


def simulate(
    people: list[SharedAttributes], gender_matched: bool, trials: int, seed: int = 0, knows=lambda p: p.key()
) -> float:
    """Play 1:2 trials: probe i, candidates i and a random other j; oracle picks by attributes."""
    rng = np.random.default_rng(seed)
    score = 0.0
    for _ in range(trials):
        i = int(rng.integers(len(people)))
        others = [
            j for j in range(len(people)) if j != i and (not gender_matched or people[j].gender == people[i].gender)
        ]
        j = others[int(rng.integers(len(others)))]
        candidates = [i, j] if rng.random() < 0.5 else [j, i]
        matches = [knows(people[c]) == knows(people[i]) for c in candidates]
        if sum(matches) == 1:
            score += float(candidates[matches.index(True)] == i)
        else:
            score += 0.5
    return score / trials


def test_exact_formula_matches_simulation():
    rng = np.random.default_rng(3)
    cells = list(itertools.product(GENDERS, AGE_BANDS, GROUPS))
    people = [SharedAttributes(*cells[int(rng.integers(4))]) for _ in range(30)]  # few cells: many ties
    for gm in (False, True):
        assert oracle_accuracy(people, gm) == pytest.approx(simulate(people, gm, 20000), abs=0.01)
    gender_only = simulate(people, False, 20000, knows=lambda p: p.gender)
    assert oracle_accuracy(people, attributes=("gender",)) == pytest.approx(gender_only, abs=0.01)
    assert gender_only < oracle_accuracy(people)
    with pytest.raises(ValueError, match="gender"):
        oracle_accuracy(people, gender_matched=True, attributes=("group",))


def test_hand_computed_cases():
    a, b = SharedAttributes("m", "young", "g0"), SharedAttributes("f", "older", "g2")
    assert oracle_accuracy([a, b]) == 1.0
    assert oracle_accuracy([a, a, a]) == CHANCE == 0.5
    assert oracle_accuracy([a, a, b]) == pytest.approx(1 - 0.5 * 2 / 6)
    assert oracle_accuracy([a, b], gender_matched=True) is None
    assert oracle_accuracy([a]) is None


def test_ground_truth_records_the_oracle_of_its_own_pools(tmp_path_factory):
    truth = load_ground_truth(cached_corpus(tmp_path_factory.getbasetemp()))
    people = [p for p in truth["identities"] if p["dataset"] == "voxceleb2" and p["set"] == "test"]
    shared = [SharedAttributes(p["gender"], p["age_band"], p["group"]) for p in people]
    assert truth["chance"] == 0.5
    assert truth["oracle"]["voxceleb2/test"]["random_negatives"] == oracle_accuracy(shared)
    assert truth["oracle"]["voxceleb2/test"]["identities"] == len(people)
