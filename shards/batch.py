"""The tuple batch (ARCHITECTURE.md §3): indexed <-> dense views and the invariant checker.

The loader emits the *indexed* form: each unique face/voice is decoded once and tuples point at
rows, which is what keeps decoded items per tuple near 2 instead of 1 + K. Models that want the
dense layout call `dense_view` (the reverse, dense -> indexed, is `models.from_dense`, which lives
with the models because they must not import this package); tests, the trainer and the evaluator call `check_tuple_batch` so a
sampling bug (two positives, a negative of the anchor's identity, a repeated negative identity)
fails loudly instead of silently training on wrong labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import torch

__all__ = ["TupleBatchError", "check_tuple_batch", "dense_view"]

DIRECTIONS = ("v2f", "f2v")


class TupleBatchError(ValueError):
    """A tuple batch violates the contract of ARCHITECTURE.md §3."""


def _modalities(direction: object) -> tuple[str, str]:
    if direction == "v2f":
        return "voices", "faces"
    if direction == "f2v":
        return "faces", "voices"
    raise TupleBatchError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def dense_view(batch: dict[str, Any]) -> dict[str, Any]:
    """Gather the indexed batch into `anchor [B, ...]` and `candidates [B, K, ...]` (plus `label`).

    This is a gather on whatever device the batch is on; memory grows by a factor of ~K/2 over the
    indexed form, which is why the loader does not emit it.
    """
    anchor_mod, cand_mod = _modalities(batch["direction"])
    idx = batch["candidate_index"]
    anchors = batch[anchor_mod][batch["anchor_index"]]
    cands = batch[cand_mod][idx.reshape(-1)].reshape(*idx.shape, *batch[cand_mod].shape[1:])
    return {"direction": batch["direction"], "anchor": anchors, "candidates": cands, "label": batch["label"]}


def _fail(msg: str) -> NoReturn:
    raise TupleBatchError(msg)


def _check_tensor(batch: dict[str, Any], name: str, channels: int) -> torch.Tensor:
    t = batch.get(name)
    if not isinstance(t, torch.Tensor):
        _fail(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dtype != torch.float32 or t.ndim != 4 or t.shape[1] != channels:
        _fail(f"{name} must be float32 [N, {channels}, H, W], got {t.dtype} {tuple(t.shape)}")
    if t.numel() == 0:
        _fail(f"{name} is empty {tuple(t.shape)}: a batch must never carry a zero-size tensor")
    if not torch.isfinite(t).all():
        _fail(f"{name} has non-finite values")
    return t


def check_tuple_batch(batch: dict[str, Any], k: int | None = None, gender_matched: bool = False) -> None:
    """Raise `TupleBatchError` unless `batch` satisfies every invariant of ARCHITECTURE.md §3.

    Checks shapes/dtypes, index ranges, and the identity rules: for K >= 2 exactly one candidate
    shares the anchor's identity and sits at `label`, and the K-1 negatives have K-1 distinct
    identities different from the anchor's; for K = 1 the label says whether the single candidate
    matches. With `gender_matched=True` every negative must share the anchor's gender.
    """
    anchor_mod, cand_mod = _modalities(batch.get("direction"))
    faces = _check_tensor(batch, "faces", 3)
    voices = _check_tensor(batch, "voices", 1)
    rows = {"faces": faces.shape[0], "voices": voices.shape[0]}
    a_idx, c_idx, label = batch["anchor_index"], batch["candidate_index"], batch["label"]
    for name, t, nd in (("anchor_index", a_idx, 1), ("candidate_index", c_idx, 2), ("label", label, 1)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.ndim != nd:
            _fail(
                f"{name} must be an int64 tensor with {nd} dims, got {getattr(t, 'dtype', type(t))} "
                f"{tuple(getattr(t, 'shape', ()))}"
            )
    b, kk = c_idx.shape
    if b == 0 or kk == 0:
        _fail(f"empty batch: candidate_index has shape {tuple(c_idx.shape)}")
    if a_idx.shape[0] != b or label.shape[0] != b:
        _fail(
            f"anchor_index {tuple(a_idx.shape)}, candidate_index {tuple(c_idx.shape)} and label "
            f"{tuple(label.shape)} disagree on B"
        )
    if k is not None and kk != k:
        _fail(f"expected K = {k} candidates per tuple, got {kk}")
    for name, t, n in (("anchor_index", a_idx, rows[anchor_mod]), ("candidate_index", c_idx, rows[cand_mod])):
        if t.min().item() < 0 or t.max().item() >= n:
            _fail(f"{name} out of range [0, {n}) for {anchor_mod if name == 'anchor_index' else cand_mod}")
    lab = label.tolist()
    if kk >= 2 and any(not 0 <= v < kk for v in lab):
        _fail(f"label must lie in [0, {kk}) for K >= 2, got {lab}")
    if kk == 1 and any(v not in (0, 1) for v in lab):
        _fail(f"label must be 0/1 for K = 1 (verification), got {lab}")

    a_id: Sequence[str] | None = batch.get("anchor_identity")
    c_id: Sequence[Sequence[str]] | None = batch.get("candidate_identity")
    if a_id is None or c_id is None:
        _fail("anchor_identity and candidate_identity are required to check the tuple invariants")
    if len(a_id) != b or len(c_id) != b or any(len(row) != kk for row in c_id):
        _fail("anchor_identity / candidate_identity shapes do not match [B] / [B, K]")
    for name, shape_ref in (("anchor_key", a_id), ("candidate_key", c_id)):
        if name in batch and len(batch[name]) != len(shape_ref):
            _fail(f"{name} has {len(batch[name])} rows, expected {len(shape_ref)}")
    for i in range(b):
        anchor, cands = a_id[i], list(c_id[i])
        if kk == 1:
            if (cands[0] == anchor) != bool(lab[i]):
                _fail(f"tuple {i}: label {lab[i]} but candidate identity {cands[0]!r} vs anchor {anchor!r}")
            continue
        positives = [j for j, c in enumerate(cands) if c == anchor]
        if positives != [lab[i]]:
            _fail(
                f"tuple {i}: anchor {anchor!r} must match exactly the candidate at label {lab[i]}, "
                f"matches at {positives} (candidates {cands})"
            )
        negatives = [c for j, c in enumerate(cands) if j != lab[i]]
        if len(set(negatives)) != kk - 1:
            _fail(f"tuple {i}: negatives must have {kk - 1} distinct identities, got {negatives}")
    if gender_matched:
        a_g, c_g = batch.get("anchor_gender"), batch.get("candidate_gender")
        if a_g is None or c_g is None:
            _fail("gender_matched=True needs anchor_gender and candidate_gender in the batch")
        for i in range(b):
            for j in range(kk):
                if c_id[i][j] != a_id[i] and c_g[i][j] != a_g[i]:
                    _fail(f"tuple {i}: negative {c_id[i][j]!r} has gender {c_g[i][j]!r}, anchor has {a_g[i]!r}")
