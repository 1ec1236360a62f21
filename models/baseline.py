"""The papers' "Baseline" row: backbones + generator + discriminator + classifier, no attention.

Embeddings depend only on their own item, so the generator runs once per unique face and voice
of the batch and tuples gather the results.
"""

from __future__ import annotations

import torch

from .base import MatchingModel
from .batch import TupleIndex, gather_rows


class BaselineModel(MatchingModel):
    def embed(self, idx: TupleIndex, anchor_maps: torch.Tensor, cand_maps: torch.Tensor) -> dict:
        h_anchor_items = self.generator(anchor_maps)
        h_cand_items = self.generator(cand_maps)
        return {"h_anchor": gather_rows(h_anchor_items, idx.anchor_index),
                "h_cand": gather_rows(h_cand_items, idx.candidate_index)}
