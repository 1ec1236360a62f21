"""Score trials with a model: indexed tuple batches in, `[N, K]` numpy scores out.

Scoring methods, recorded next to every number they produce:

* `head` (default, the papers' scorer): `model.predict(batch)`, the model's own classifier
  (AICANet Eq. 13, BIANet Eqs. 20-22 with the counterfactual difference z_cp - w z_cn). The
  papers train one head per task: K = 2 for binary matching, K = 10 for multi-way, K = 1 for
  verification. A concat head scores only the K it was built for (`classifier: shared` scores any
  K >= 2), so a K = 2 checkpoint cannot produce the multi-way or verification columns with this
  method: give `launch.evaluate` the K = 10 and K = 1 checkpoints of the same model (same
  `--names`) and each column is scored by the checkpoint trained for it;
* `embedding` (explicit, not the papers'): `model.similarity`, the cosine of the shared-space
  embeddings (`h_anchor`, `h_cand`); any K and verification from one model. BIANet's keeps its
  counterfactual: cos(h^) - w cos(h~) (models/bianet.py);
* `auto`: `head` where the head fits K, `embedding` elsewhere.

Batches: tuples are cut into chunks of `batch_size` in trial-file order, each chunk holding its
unique faces and voices once (ARCHITECTURE.md §3). The model runs in eval mode under no_grad,
and every item tensor is prepared on its own (launch.eval.inputs), so a trial's score does not
depend on which other trials share its batch.

Nested K (`score_nested`): the 1:K trials for K = 2..10 share probes, positives and negatives
(the K-way candidates are a prefix of the 10-way ones), so one chunk's items are run through the
backbones once (`model.encode`) and every K is scored from those feature maps
(`model.embed` + `model.score`, exactly what `model.predict` = `forward` does). Scoring K = 2..10
one K at a time would run the backbones on each item up to nine times
(benchmarks/bench_eval_scoring.py measures the difference). Models without that
encode/embed/score split are scored one K at a time through `predict`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

SCORING_METHODS = ("head", "auto", "embedding")


def head_supports(model, k: int) -> bool:
    """Can `model.predict` score tuples with K candidates?"""
    trained_k = getattr(model, "num_candidates", None)
    if trained_k is None:
        return True  # unknown model type: trust predict()
    if k == 1:
        return trained_k == 1
    shared = getattr(model, "cfg", {}).get("classifier") == "shared"
    return trained_k >= 2 and (shared or trained_k == k)


def build_batch(direction: str, probes, candidates, loader, device, extra_candidates=(), return_rows: bool = False):
    """Indexed tuple batch for `probes [B]` and `candidates [B][K]` (keys into the store).

    `extra_candidates` (lists of `[B][K']` rows) add their items to the batch without adding
    tuples; with `return_rows` the result is `(batch, {candidate key: row})` for re-indexing.
    """
    if direction not in ("v2f", "f2v"):
        raise ValueError(f"direction must be v2f or f2v, got {direction!r}")
    anchor_rows: dict[str, int] = {}
    cand_rows: dict[str, int] = {}
    a_idx = [anchor_rows.setdefault(p, len(anchor_rows)) for p in probes]
    c_idx = [[cand_rows.setdefault(c, len(cand_rows)) for c in row] for row in candidates]
    for rows in extra_candidates:
        for row in rows:
            for c in row:
                cand_rows.setdefault(c, len(cand_rows))
    anchors, cands = list(anchor_rows), list(cand_rows)
    if direction == "v2f":
        voices, faces = loader.voices(anchors), loader.faces(cands)
    else:
        faces, voices = loader.faces(anchors), loader.voices(cands)
    batch = {
        "direction": direction,
        "faces": faces.to(device),
        "voices": voices.to(device),
        "anchor_index": torch.tensor(a_idx, dtype=torch.long, device=device),
        "candidate_index": torch.tensor(c_idx, dtype=torch.long, device=device),
    }
    return (batch, cand_rows) if return_rows else batch


def splits_encoding(model) -> bool:
    """Does the model expose forward = score(embed(encode(batch))) (models.base.MatchingModel)?"""
    return all(callable(getattr(model, m, None)) for m in ("encode", "embed", "score"))


def similarity_from_embeddings(model, out: dict) -> torch.Tensor:
    """`model.similarity(out)` ([B, K]); the plain cosine of `h_anchor` ([B, D] or pairwise
    [B, K, D]) and `h_cand` [B, K, D] for models without one."""
    if callable(getattr(model, "similarity", None)):
        return model.similarity(out)
    h_a, h_c = out["h_anchor"], out["h_cand"]
    if h_a.dim() == 2:
        h_a = h_a[:, None, :]
    return F.cosine_similarity(h_a, h_c, dim=-1)


@torch.no_grad()
def embedding_scores(model, batch: dict) -> torch.Tensor:
    """Embedding scores of shared-space embeddings, `[B, K]` (see `similarity_from_embeddings`)."""
    if not (hasattr(model, "encode") and hasattr(model, "embed")):
        raise TypeError(f"{type(model).__name__} has no encode()/embed(); use --scoring head")
    idx, anchor_maps, cand_maps = model.encode(batch)
    return similarity_from_embeddings(model, model.embed(idx, anchor_maps, cand_maps))


class ModelScorer:
    """Scores trial tuples with a model (see module docstring for the methods)."""

    def __init__(
        self,
        model,
        loader,
        batch_size: int = 64,
        method: str = "head",
        device: str | torch.device = "cpu",
        progress: bool = True,
    ):
        if method not in SCORING_METHODS:
            raise ValueError(f"scoring method must be one of {SCORING_METHODS}, got {method!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # eval mode for the whole scorer's life: no dropout, BN running statistics, no batch-axis
        # dependence (docs/REFERENCES.md#a10: the authors' generator stayed in train mode)
        self.model, self.loader = model.to(device).eval(), loader
        self.batch_size, self.method, self.device, self.progress = batch_size, method, device, progress

    def supports(self, k: int) -> bool:
        """Can this scorer score tuples of K candidates (K = 1: verification pairs)?"""
        return self.method != "head" or head_supports(self.model, k)

    def method_for(self, k: int) -> str:
        if self.method == "auto":
            return "head" if head_supports(self.model, k) else "embedding"
        if self.method == "head" and not head_supports(self.model, k):
            raise ValueError(
                f"the model's head was trained for K={getattr(self.model, 'num_candidates', '?')} "
                f"and cannot score K={k}; use --scoring auto or embedding"
            )
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
        for s in tqdm(
            starts,
            desc=desc or f"{direction} K={k}",
            disable=None if self.progress else True,
            unit="batch",
            leave=False,
        ):
            batch = build_batch(
                direction,
                probes[s : s + self.batch_size],
                candidates[s : s + self.batch_size],
                self.loader,
                self.device,
            )
            if method == "head":
                scores = self.model.predict(batch)
            else:
                scores = embedding_scores(self.model, batch)
            scores = scores.float().reshape(len(batch["anchor_index"]), k)
            out[s : s + self.batch_size] = scores.cpu().numpy()
        return out, method

    @torch.no_grad()
    def score_nested(self, direction: str, probes, candidates_by_k: dict, desc: str = "") -> dict:
        """{K: ([N, K] scores, method)} for several K over the same probes, encoding items once.

        Falls back to one `score` call per K when the model has no encode/embed/score split.
        """
        ks = sorted(candidates_by_k)
        if not splits_encoding(self.model):
            return {k: self.score(direction, probes, candidates_by_k[k], desc=f"{desc} 1:{k}") for k in ks}
        import models

        methods = {k: self.method_for(k) for k in ks}
        out = {k: np.empty((len(probes), k), dtype=np.float64) for k in ks}
        k_max = ks[-1]
        for s in tqdm(
            range(0, len(probes), self.batch_size),
            desc=desc or f"{direction} K={ks[0]}..{k_max}",
            disable=None if self.progress else True,
            unit="batch",
            leave=False,
        ):
            chunk = {k: candidates_by_k[k][s : s + self.batch_size] for k in ks}
            batch, rows = build_batch(
                direction,
                probes[s : s + self.batch_size],
                chunk[k_max],
                self.loader,
                self.device,
                extra_candidates=[chunk[k] for k in ks],
                return_rows=True,
            )
            _, anchor_maps, cand_maps = self.model.encode(batch)
            for k in ks:
                index = torch.tensor(
                    [[rows[c] for c in row] for row in chunk[k]], dtype=torch.long, device=batch["anchor_index"].device
                )
                idx = models.check_batch(dict(batch, candidate_index=index))
                emb = self.model.embed(idx, anchor_maps, cand_maps)
                scores = self.model.score(emb) if methods[k] == "head" else similarity_from_embeddings(self.model, emb)
                out[k][s : s + len(index)] = scores.float().reshape(len(index), k).cpu().numpy()
        return {k: (out[k], methods[k]) for k in ks}
