"""Score trials with a model: indexed tuple batches in, `[N, K]` numpy scores out.

Two scoring methods, recorded next to every number they produce:

* `head`: `model.predict(batch)`, the model's own K-candidate classifier (AICANet Eq. 13 /
  BIANet Eq. 20-22). The papers' concat head is built for one K, so it can only score that K
  (a `classifier: shared` model scores any K >= 2, and a K = 1 model scores verification);
* `embedding`: cosine similarity between the anchor's and each candidate's shared-space
  embeddings (`h_anchor`, `h_cand` of `model.embed`, the generator output that the metric loss
  pulls together). It works for every K, including K = 1 verification, with one trained model.

`auto` (the default) uses the head wherever it can score K and embeddings elsewhere; the results
JSON says which method produced each number.

Batches: tuples are cut into chunks of `batch_size` in trial-file order, each chunk holding its
unique faces and voices once (ARCHITECTURE.md §3). The model runs in eval mode under no_grad,
and every item tensor is prepared on its own (launch.eval.inputs), so a trial's score does not
depend on which other trials share its batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

SCORING_METHODS = ("auto", "head", "embedding")


def head_supports(model, k: int) -> bool:
    """Can `model.predict` score tuples with K candidates?"""
    trained_k = getattr(model, "num_candidates", None)
    if trained_k is None:
        return True                                      # unknown model type: trust predict()
    if k == 1:
        return trained_k == 1
    shared = getattr(model, "cfg", {}).get("classifier") == "shared"
    return trained_k >= 2 and (shared or trained_k == k)


def build_batch(direction: str, probes, candidates, loader, device) -> dict:
    """Indexed tuple batch for `probes [B]` and `candidates [B][K]` (keys into the store)."""
    if direction not in ("v2f", "f2v"):
        raise ValueError(f"direction must be v2f or f2v, got {direction!r}")
    anchor_rows: dict[str, int] = {}
    cand_rows: dict[str, int] = {}
    a_idx = [anchor_rows.setdefault(p, len(anchor_rows)) for p in probes]
    c_idx = [[cand_rows.setdefault(c, len(cand_rows)) for c in row] for row in candidates]
    anchors, cands = list(anchor_rows), list(cand_rows)
    if direction == "v2f":
        voices, faces = loader.voices(anchors), loader.faces(cands)
    else:
        faces, voices = loader.faces(anchors), loader.voices(cands)
    return {"direction": direction, "faces": faces.to(device), "voices": voices.to(device),
            "anchor_index": torch.tensor(a_idx, dtype=torch.long, device=device),
            "candidate_index": torch.tensor(c_idx, dtype=torch.long, device=device)}


@torch.no_grad()
def embedding_scores(model, batch: dict) -> torch.Tensor:
    """Cosine similarity of shared-space embeddings, `[B, K]`."""
    if not (hasattr(model, "encode") and hasattr(model, "embed")):
        raise TypeError(f"{type(model).__name__} has no encode()/embed(); use --scoring head")
    was_training = model.training
    model.eval()
    try:
        idx, anchor_maps, cand_maps = model.encode(batch)
        out = model.embed(idx, anchor_maps, cand_maps)
    finally:
        model.train(was_training)
    h_a, h_c = out["h_anchor"], out["h_cand"]
    if h_a.dim() == 2:
        h_a = h_a[:, None, :]
    return F.cosine_similarity(h_a, h_c, dim=-1)


class ModelScorer:
    """Scores trial tuples with a model (see module docstring for the methods)."""

    def __init__(self, model, loader, batch_size: int = 64, method: str = "auto",
                 device: str | torch.device = "cpu", progress: bool = True):
        if method not in SCORING_METHODS:
            raise ValueError(f"scoring method must be one of {SCORING_METHODS}, got {method!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.loader = model.to(device).eval(), loader
        self.batch_size, self.method, self.device, self.progress = batch_size, method, device, progress

    def method_for(self, k: int) -> str:
        if self.method == "auto":
            return "head" if head_supports(self.model, k) else "embedding"
        if self.method == "head" and not head_supports(self.model, k):
            raise ValueError(f"the model's head was trained for K={getattr(self.model, 'num_candidates', '?')} "
                             f"and cannot score K={k}; use --scoring auto or embedding")
        return self.method

    @torch.no_grad()
    def score(self, direction: str, probes, candidates, desc: str = "") -> tuple[np.ndarray, str]:
        """(`[N, K]` float64 scores, method used) for N tuples of K candidates each."""
        n = len(probes)
        if n == 0:
            return np.zeros((0, 0)), self.method
        k = len(candidates[0])
        method = self.method_for(k)
        out = np.empty((n, k), dtype=np.float64)
        starts = range(0, n, self.batch_size)
        for s in tqdm(starts, desc=desc or f"{direction} K={k}", disable=not self.progress,
                      unit="batch", leave=False):
            batch = build_batch(direction, probes[s:s + self.batch_size],
                                candidates[s:s + self.batch_size], self.loader, self.device)
            if method == "head":
                scores = self.model.predict(batch)
            else:
                scores = embedding_scores(self.model, batch)
            scores = scores.float().reshape(len(batch["anchor_index"]), k)
            out[s:s + self.batch_size] = scores.cpu().numpy()
        return out, method
