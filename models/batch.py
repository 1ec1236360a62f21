"""The indexed tuple batch (ARCHITECTURE.md §3) as the models see it.

A batch holds each unique face and voice once (``faces [Nf,...]``, ``voices [Nv,...]``) and tuples
point into them (``anchor_index [B]``, ``candidate_index [B, K]``). Models run each backbone once
on the unique items and gather by index, so encoding costs about one pass per unique item rather
than 1 + K per tuple.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

DIRECTIONS = ("v2f", "f2v")


@dataclass
class TupleIndex:
    """Validated view of a batch: which modality is the anchor, and the indices as tensors."""

    direction: str
    anchor_index: torch.Tensor  # [B] rows of the anchor modality
    candidate_index: torch.Tensor  # [B, K] rows of the candidate modality
    label: torch.Tensor | None  # [B]

    @property
    def anchor_is_voice(self) -> bool:
        return self.direction == "v2f"

    @property
    def num_candidates(self) -> int:
        return self.candidate_index.shape[1]


def always_check_values() -> bool:
    """Debug switch ``VOXFACE_CHECK_BATCHES=1``: range-check the indices and labels of every batch,
    not only a model's first (each check reads a value on the host: a GPU sync per batch)."""
    return os.environ.get("VOXFACE_CHECK_BATCHES", "") not in ("", "0")


def check_batch(batch: dict[str, Any], check_values: bool = True) -> TupleIndex:
    """Validate the fields a model needs and return a :class:`TupleIndex`; errors say what is wrong.

    Structure (keys, direction, ranks, shapes) is always checked: it costs no device read. The
    index and label *ranges* need their minima and maxima on the host, a GPU sync, so models check
    them only when ``check_values`` is true (their first batch, or :func:`always_check_values`).
    A later out-of-range index still fails, as a CUDA device assert or an IndexError on CPU, just
    with a less friendly message."""
    for key in ("faces", "voices", "anchor_index", "candidate_index", "direction"):
        if key not in batch:
            raise ValueError(
                f"batch has no {key!r}; a tuple batch needs faces, voices, anchor_index, "
                "candidate_index, direction (and label for the loss), see ARCHITECTURE.md §3"
            )
    direction = batch["direction"]
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} unknown; allowed: {list(DIRECTIONS)}")
    faces, voices = batch["faces"], batch["voices"]
    if faces.dim() != 4 or faces.shape[1] != 3:
        raise ValueError(f"faces must be [Nf, 3, H, W], got {tuple(faces.shape)}")
    if voices.dim() != 4 or voices.shape[1] != 1:
        raise ValueError(f"voices must be [Nv, 1, n_mels, T], got {tuple(voices.shape)}")
    anchor_index = torch.as_tensor(batch["anchor_index"], dtype=torch.long, device=faces.device)
    candidate_index = torch.as_tensor(batch["candidate_index"], dtype=torch.long, device=faces.device)
    if anchor_index.dim() != 1 or candidate_index.dim() != 2 or candidate_index.shape[0] != anchor_index.shape[0]:
        raise ValueError(
            f"anchor_index must be [B] and candidate_index [B, K], got {tuple(anchor_index.shape)} "
            f"and {tuple(candidate_index.shape)}"
        )
    n_anchor, n_cand = (voices.shape[0], faces.shape[0]) if direction == "v2f" else (faces.shape[0], voices.shape[0])
    for name, idx, n in (("anchor_index", anchor_index, n_anchor), ("candidate_index", candidate_index, n_cand)):
        if check_values and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"{name} out of range [0, {n}) for direction {direction}")
    label = batch.get("label")
    if label is not None:
        label = torch.as_tensor(label, dtype=torch.long, device=faces.device)
        k = candidate_index.shape[1]
        hi = 2 if k == 1 else k
        out_of_range = check_values and label.numel() and (int(label.min()) < 0 or int(label.max()) >= hi)
        if label.shape != anchor_index.shape or out_of_range:
            raise ValueError(f"label must be [B] with values in [0, {hi}) for K={k}")
    return TupleIndex(direction, anchor_index, candidate_index, label)


def from_dense(
    anchor: torch.Tensor, candidates: torch.Tensor, direction: str, label: torch.Tensor | None = None
) -> dict[str, Any]:
    """Indexed batch from dense ``anchor [B, ...]`` and ``candidates [B, K, ...]`` (identity gather).

    For evaluation code and tests that hold tuples densely; every item is its own row, so nothing
    is deduplicated.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} unknown; allowed: {list(DIRECTIONS)}")
    if candidates.dim() != anchor.dim() + 1 or candidates.shape[0] != anchor.shape[0]:
        raise ValueError(
            f"candidates must be [B, K, ...] matching anchor [B, ...], got {tuple(candidates.shape)} "
            f"and {tuple(anchor.shape)}"
        )
    b, k = candidates.shape[:2]
    flat = candidates.reshape(b * k, *candidates.shape[2:])
    faces, voices = (flat, anchor) if direction == "v2f" else (anchor, flat)
    batch = {
        "direction": direction,
        "faces": faces,
        "voices": voices,
        "anchor_index": torch.arange(b, device=anchor.device),
        "candidate_index": torch.arange(b * k, device=anchor.device).view(b, k),
    }
    if label is not None:
        batch["label"] = torch.as_tensor(label, dtype=torch.long, device=anchor.device)
    return batch


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` for an integer ``index`` of any shape, with a deterministic backward pass.

    Tuples share items, so an index repeats rows (every anchor K times in the pair batch, a
    candidate in several tuples). On CPU the backward of ``x[index]`` is
    ``index_put_(accumulate=True)``, which with more than one thread adds the repeated rows'
    gradients with atomic adds in thread order (PyTorch documents it as nondeterministic): once a
    row collects 3+ gradients split across threads, the sum's rounding changes from run to run
    (~1e-8) and trainings with the same seed drifted apart after a few steps. ``index_select``'s
    CPU backward (``index_add_``) adds them in index order: the same values forward, bit-identical
    gradients (tests/test_models_determinism.py). On CUDA it is the other way round
    (``index_add_`` uses atomics, the indexing backward sorts), so other devices keep ``x[index]``.
    """
    if x.device.type != "cpu":
        return x[index]
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])
