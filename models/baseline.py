"""The papers' "Baseline" row: backbones + generator + discriminator + classifier, no attention.

Embeddings depend only on their own item, so the generator runs once per unique face and voice
of the batch and tuples gather the results.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import MatchingModel
from .batch import TupleIndex


class BaselineModel(MatchingModel):
    def embed(self, idx: TupleIndex, anchor_maps: torch.Tensor, cand_maps: torch.Tensor) -> dict[str, Any]:
        h_anchor, h_cand = self.embed_items(idx, anchor_maps, cand_maps)
        return {"h_anchor": h_anchor, "h_cand": h_cand}
