"""Indexed <-> dense tuple batches round-trip, and the checker catches each kind of sampling bug."""

import copy

import pytest
import torch

from models import from_dense
from shards.batch import TupleBatchError, check_tuple_batch, dense_view


def _indexed_v2f():
    # 3 tuples, K = 3: voices 0..2 are anchors of ids a, b, c; faces 0..2 are their positives.
    faces = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 3, 2, 2).contiguous() / 10
    voices = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 1, 4, 5).contiguous() / 10
    ids = ["a", "b", "c"]
    cand = torch.tensor([[1, 0, 2], [1, 2, 0], [0, 1, 2]])
    label = torch.tensor([1, 0, 2])
    return {
        "direction": "v2f",
        "faces": faces,
        "voices": voices,
        "anchor_index": torch.tensor([0, 1, 2]),
        "candidate_index": cand,
        "label": label,
        "anchor_identity": ids,
        "candidate_identity": [[ids[j] for j in row] for row in cand.tolist()],
        "anchor_gender": ["m", "m", "m"],
        "candidate_gender": [["m"] * 3] * 3,
    }


def test_valid_batch_passes_and_dense_view_gathers_rows():
    batch = _indexed_v2f()
    check_tuple_batch(batch, k=3, gender_matched=True)
    dense = dense_view(batch)
    assert dense["anchor"].shape == (3, 1, 4, 5) and dense["candidates"].shape == (3, 3, 3, 2, 2)
    for i in range(3):
        for j in range(3):
            assert torch.equal(dense["candidates"][i, j], batch["faces"][batch["candidate_index"][i, j]])
        # the positive candidate is the face row with the same index as the anchor voice here
        assert torch.equal(dense["candidates"][i, batch["label"][i]], batch["faces"][i])


def test_from_dense_round_trips_through_dense_view():
    anchor = torch.randn(4, 3, 8, 8)
    cands = torch.randn(4, 2, 1, 10, 7)
    label = torch.tensor([0, 1, 1, 0])
    ind = from_dense(anchor, cands, "f2v", label)
    assert ind["faces"].shape == (4, 3, 8, 8) and ind["voices"].shape == (8, 1, 10, 7)
    dense = dense_view(ind)
    assert torch.equal(dense["anchor"], anchor) and torch.equal(dense["candidates"], cands)
    assert torch.equal(dense["label"], label)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b.__setitem__("label", torch.tensor([0, 0, 2])), "exactly the candidate at label"),
        (lambda b: b["candidate_identity"][0].__setitem__(0, "a"), "exactly the candidate"),
        (lambda b: b["candidate_identity"][0].__setitem__(2, "b"), "distinct identities"),
        (lambda b: b.__setitem__("candidate_index", torch.tensor([[1, 0, 3], [1, 2, 0], [0, 1, 2]])), "out of range"),
        (lambda b: b.__setitem__("faces", torch.zeros(0, 3, 2, 2)), "zero-size"),
        (lambda b: b.__setitem__("voices", b["voices"] * float("nan")), "non-finite"),
        (lambda b: b.__setitem__("direction", "a2b"), "direction"),
        (lambda b: b.__setitem__("label", torch.tensor([1, 0, 2], dtype=torch.int32)), "int64"),
    ],
)
def test_checker_catches_each_violation(mutate, message):
    batch = copy.deepcopy(_indexed_v2f())
    mutate(batch)
    with pytest.raises(TupleBatchError, match=message):
        check_tuple_batch(batch)


def test_checker_enforces_k_and_gender_matching():
    batch = _indexed_v2f()
    with pytest.raises(TupleBatchError, match="K = 2"):
        check_tuple_batch(batch, k=2)
    batch["candidate_gender"] = [["f", "m", "m"], ["m"] * 3, ["m"] * 3]
    check_tuple_batch(batch)  # genders only matter when asked for
    with pytest.raises(TupleBatchError, match="gender"):
        check_tuple_batch(batch, gender_matched=True)


def test_verification_labels_must_match_identity():
    batch = _indexed_v2f()
    batch["candidate_index"] = torch.tensor([[0], [2], [1]])
    batch["candidate_identity"] = [["a"], ["c"], ["b"]]
    batch["label"] = torch.tensor([1, 0, 0])
    check_tuple_batch(batch, k=1)
    batch["label"] = torch.tensor([1, 1, 0])
    with pytest.raises(TupleBatchError, match="label 1"):
        check_tuple_batch(batch, k=1)
