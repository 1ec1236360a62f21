"""Export shared-space embeddings of a split to zarr, and rank a gallery with them.

Why export: retrieval (rank thousands of gallery faces for one voice) must not rerun the face
backbone for every query. Each store item gets a voice embedding `h_v` and a face embedding `h_f`
(the generator outputs of `model.embed`, the space the metric loss shapes); retrieval is then a
cosine similarity against a matrix.

The embeddings come from a K = 1 V-F tuple pairing each clip's voice with the same clip's face.
For the baseline and BIANet the embeddings do not depend on the pairing. For AICANet with the
interaction attention (AIA) they do (both the candidate's and, through the mean over its pairs,
the anchor's): the exported vectors are the ones computed in the clip's own pair, so retrieval
with them approximates, and does not equal, AICANet's pairwise scores (the zarr attribute
`pair_dependent` records this).

BIANet keeps its counterfactual here too (`model.similarity`, Eq. 22): with NIA the exported
vectors are the concatenations voice = [n(h^_v), n(h~_v)] and face = [n(h^_f), -w n(h~_f)]
(n = L2 normalisation, w = the test-time Eq. 22 weight), so a dot product between a voice and a
face is cos(h^) - w cos(h~), and after the final normalisation (a constant factor for every item)
every cosine ranking and mAP equals that of the counterfactual score (attribute
`counterfactual_weight`).

Layout of `<out>.zarr`: arrays `voice` and `face` float32 `[N, D]` (D = 2 x 128 for BIANet with
NIA), L2-normalised, and group attributes `keys`, `identities`, `videos`, `clips`, `checkpoint`,
`model`, `inputs`, `pair_dependent`, `counterfactual_weight`, `store` (absolute), `store_relative`
(from the embeddings' folder) and `checkpoint_fingerprint` (sha256 of the weights, which
`launch.retrieve` checks before embedding a query with a checkpoint). Written to
`<out>.partial` and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import zarr
from tqdm import tqdm

from launch.eval.scoring import build_batch

EMBEDDINGS_FORMAT = "voxface-embeddings/1"


def retrieval_vectors(model, out: dict) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """(anchor [B, D'], candidate [B, D'], w) for a K = 1 V-F `out`: L2-normalised vectors whose
    dot product ranks pairs as `model.similarity` does (module docstring); w is BIANet's Eq. 22
    weight when the counterfactual is part of the score, else None."""
    h_a, h_c = out["h_anchor"], out["h_cand"][:, 0]
    if h_a.dim() == 3:  # pair-dependent anchor (AICANet): this pair's
        h_a = h_a[:, 0]
    h_a, h_c = F.normalize(h_a.float(), dim=-1), F.normalize(h_c.float(), dim=-1)
    if "h_anchor_neg" not in out:
        return h_a, h_c, None
    w = float(model.cf_weight(model.trained_epoch))
    n_a = F.normalize(out["h_anchor_neg"].float(), dim=-1)
    n_c = F.normalize(out["h_cand_neg"][:, 0].float(), dim=-1)
    return (F.normalize(torch.cat([h_a, n_a], -1), dim=-1), F.normalize(torch.cat([h_c, -w * n_c], -1), dim=-1), w)


@torch.no_grad()
def embed_items(model, loader, keys, batch_size: int = 64, device="cpu", progress: bool = True):
    """(voice [N, D], face [N, D], pair_dependent, counterfactual weight or None) of store items."""
    if not (hasattr(model, "encode") and hasattr(model, "embed")):
        raise TypeError(f"{type(model).__name__} has no encode()/embed(); cannot export embeddings")
    model.eval()
    voices, faces, weight = [], [], None
    # AICANet's interaction attention (AIA) makes both embeddings functions of the pair
    # (docs/MODELS.md: the anchor is the mean over its pair-specific maps)
    pair_dependent = any(getattr(m, "pairwise", False) is True for m in model.modules())
    for s in tqdm(range(0, len(keys), batch_size), desc="embeddings", unit="batch", disable=None if progress else True):
        chunk = list(keys[s : s + batch_size])
        batch = build_batch("v2f", chunk, [[k] for k in chunk], loader, device)
        idx, a_maps, c_maps = model.encode(batch)
        out = model.embed(idx, a_maps, c_maps)
        pair_dependent = pair_dependent or out["h_anchor"].dim() == 3
        h_v, h_f, weight = retrieval_vectors(model, out)
        voices.append(h_v.cpu())
        faces.append(h_f.cpu())
    return torch.cat(voices).numpy(), torch.cat(faces).numpy(), pair_dependent, weight


def export_embeddings(
    model, loader, store, out: str | os.PathLike, meta: dict, batch_size: int = 64, device="cpu", progress: bool = True
) -> Path:
    """Embed every item of `store` and write `out` (zarr) atomically."""
    out = Path(out)
    voice, face, pair_dependent, weight = embed_items(model, loader, store.keys, batch_size, device, progress)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    root = zarr.open_group(str(tmp), mode="w")
    root.create_array("voice", data=voice.astype(np.float32))
    root.create_array("face", data=face.astype(np.float32))
    root.attrs.update(
        {
            "format": EMBEDDINGS_FORMAT,
            "keys": list(store.keys),
            "identities": list(store.identities),
            "videos": list(store.videos),
            "clips": list(store.clips),
            "pair_dependent": pair_dependent,
            "counterfactual_weight": weight,
            # absolute, and relative to the embeddings (found again after both folders move together)
            "store": os.path.abspath(store.path),
            "store_relative": os.path.relpath(os.path.abspath(store.path), os.path.abspath(out.parent)),
            "inputs": asdict(loader.inputs),
            **meta,
        }
    )
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


class EmbeddingStore:
    """Read side: `voice`, `face` arrays `[N, D]`, column lists, `index_of(key)`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"no embeddings at {self.path}; export them with `python -m launch.evaluate ... --export-embeddings`"
            )
        root = zarr.open_group(str(self.path), mode="r")
        self.attrs = dict(root.attrs)
        if self.attrs.get("format") != EMBEDDINGS_FORMAT:
            raise ValueError(f"{self.path}: not an embeddings store (format {self.attrs.get('format')!r})")
        self.voice = np.asarray(root["voice"][:])
        self.face = np.asarray(root["face"][:])
        self.keys: list[str] = list(self.attrs["keys"])
        self.identities: list[str] = list(self.attrs["identities"])
        self._index = {k: i for i, k in enumerate(self.keys)}

    def index_of(self, key: str) -> int:
        try:
            return self._index[key]
        except KeyError:
            raise KeyError(f"{key!r} is not in {self.path}") from None


def rank_gallery(query: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, scores): gallery rows by decreasing cosine similarity; ties keep gallery order."""
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    q = q / max(np.linalg.norm(q), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    scores = g @ q
    order = np.argsort(-scores, kind="stable")
    return order, scores
