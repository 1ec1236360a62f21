"""The attribute oracle: the 1:2 matching ceiling set by the shared attributes.

A trial shows a probe (a voice, or a face) and two candidates of the other modality: the probe's
own identity and one other identity. The oracle knows the shared attributes (gender, age band,
appearance group) of all three people and nothing else. It picks the candidate whose attributes
equal the probe's; when both candidates have the probe's attributes (or neither, which cannot
happen since one candidate is the probe's identity) it guesses, which scores 0.5.

Since faces and voices are conditionally independent given the shared attributes (attributes.py),
no model can beat this oracle on average: it is the Bayes ceiling when the attributes are
perfectly readable from both modalities. Chance is 0.5.

With negatives drawn uniformly among the other identities of the evaluation pool, the expected
accuracy is exactly

    acc = mean over ordered pairs (i, j), i != j, of [1 if a(j) != a(i) else 0.5]

which is what `oracle_accuracy` computes; the gender-matched variant (the "G" protocol of
Nagrani et al. 2018) restricts negatives to the probe's gender.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .attributes import SharedAttributes

CHANCE = 0.5


def oracle_accuracy(
    people: Iterable[SharedAttributes],
    gender_matched: bool = False,
    attributes: tuple[str, ...] = ("gender", "age_band", "group"),
) -> float | None:
    """Expected oracle 1:2 accuracy over a pool; None when the pool allows no trial.

    `attributes` limits what the oracle knows, e.g. ("gender",) gives the accuracy of a matcher
    that reads gender perfectly and nothing else, a useful reference between chance and ceiling.
    Gender must be among them for gender-matched negatives.
    """
    if gender_matched and "gender" not in attributes:
        raise ValueError("gender-matched negatives need an oracle that knows gender")
    people = list(people)
    keys = [(p.gender,) + tuple(getattr(p, a) for a in attributes if a != "gender") for p in people]
    if "gender" not in attributes:
        keys = [k[1:] for k in keys]
    cell = Counter(keys)
    by_gender = Counter(p.gender for p in people)
    pairs = ties = 0
    for key, count in cell.items():
        negatives = (by_gender[key[0]] if gender_matched else len(keys)) - 1
        pairs += count * negatives
        ties += count * (count - 1)  # negatives sharing all attributes with the probe
    if pairs == 0:
        return None
    return 1.0 - 0.5 * ties / pairs


def oracle_report(pools: dict[str, list[SharedAttributes]]) -> dict[str, dict]:
    """{pool: {"identities", "random_negatives", "gender_matched_negatives", "gender_only"}}.

    "gender_only" is the random-negative accuracy of an oracle that knows only gender.
    """
    return {
        name: {
            "identities": len(people),
            "random_negatives": oracle_accuracy(people),
            "gender_matched_negatives": oracle_accuracy(people, gender_matched=True),
            "gender_only": oracle_accuracy(people, attributes=("gender",)),
        }
        for name, people in pools.items()
    }
