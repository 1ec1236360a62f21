"""AICANet (Wang et al., IEEE TIFS 2025): adaptive interaction (AIA) and correction (ACA) attention.

Where each equation lives:

* Eq. 1  relevance R of a (voice, face) pair: :class:`RelevanceNet` (compact bilinear pooling + FC + tanh).
* Eq. 2  relevance loss: :func:`models.losses.relevance_loss`, added in :meth:`AICANet.extra_losses`.
* Eq. 3  correlation E between the pair's pooled shared features: :meth:`InteractionCorrection.pairs`.
* Eqs. 4-5, 10  sign(R) (.) clamp(E, +-eps): same place (``relevance_guidance``, ``aca``).
* Eqs. 6, 11  softmax(delta E) f: ``_first_order``; Eq. 7 self-support: ``_self_support``.
* Eq. 8  dynamic estimation fusion with SE masks and IN: :meth:`InteractionCorrection.fuse`.
* Eq. 9  adaptive threshold eps: :class:`models.attention.AdaptiveThreshold`.
* Eqs. 12-16: :mod:`models.losses` and :meth:`models.base.MatchingModel.loss`.

The intra-modal ACA branch depends on one item only, so it runs once per unique face/voice; the
inter-modal AIA branch depends on the (anchor, candidate) pair and runs batched over all B*K pairs
in one pass. As in the authors' code the anchor embedding is the generator applied to the mean of
the anchor's K pair-specific fused maps (docs/REFERENCES.md#a5).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from . import losses
from .attention import (
    AdaptiveThreshold,
    FeatureShrinkage,
    SEMask,
    attend,
    channel_affinity,
    instance_norm,
    l2_normalize,
    low_rank,
    lowpass,
    scaled_dot_softmax,
    thresholded_logits,
)
from .base import MatchingModel, one_hot_match, pair_indices
from .batch import TupleIndex, gather_rows
from .cbp import CompactBilinearPooling
from .heads import BatchNorm1d

MODALITIES = ("voice", "face")


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False)


class RelevanceNet(nn.Module):
    """Eq. 1: R = FC(CBP(f_a, f_v)) in (-1, 1) for every pair; input ``[P, C', 9]`` pooled maps."""

    def __init__(self, channels: int, cbp_dim: int, hidden: int, seed: int):
        super().__init__()
        self.cbp = CompactBilinearPooling(channels, channels, cbp_dim, seed)
        self.fc1 = nn.Linear(cbp_dim, hidden)
        self.bn = BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, q_voice: torch.Tensor, q_face: torch.Tensor) -> torch.Tensor:
        z = self.cbp(l2_normalize(q_voice, dim=-1), l2_normalize(q_face, dim=-1))
        return torch.tanh(self.fc2(F.leaky_relu(self.bn(self.fc1(z)), 0.2))).squeeze(-1)


class InteractionCorrection(nn.Module):
    """AIA (Eqs. 1, 3-8) and ACA (Eqs. 9-11) for both modalities, switchable part by part."""

    def __init__(self, cfg: dict[str, Any], channels: int):
        super().__init__()
        self.cfg = cfg
        c2 = cfg["attn_channels"]
        fixed = None if cfg["aca_epsilon"] == "learned" else float(cfg["aca_epsilon"])
        # Eq. 8 fuses an inter-modal branch (f^, per pair) and an intra-modal one (f~, per item).
        self.shared = nn.ModuleDict({m: _conv1x1(channels, c2) for m in MODALITIES})
        self.decode_inter = _conv1x1(c2, channels)
        self.private = nn.ModuleDict({m: _conv1x1(channels, c2) for m in MODALITIES})
        self.decode_intra = nn.ModuleDict({m: _conv1x1(c2, channels) for m in MODALITIES})
        if cfg["def_fusion"]:
            self.mask_inter = SEMask(channels, cfg["se_reduction"])
            self.mask_intra = SEMask(channels, cfg["se_reduction"])
        if cfg["first_order"] and (cfg["relevance_guidance"] or cfg["rel_loss"]):
            self.relevance = RelevanceNet(c2, cfg["cbp_dim"], cfg["relevance_hidden"], cfg["cbp_seed"])
            if not cfg["rel_loss"]:
                # R reaches the features only through sign(R), whose gradient is 0: without
                # Eq. 2 nothing can train it (Table VI row b). Freezing says so, and keeps
                # DDP from waiting for gradients that never come.
                self.relevance.requires_grad_(False)
        # Without ACA eps = 0: both correlations pass unchanged (identity threshold). Table IX swaps
        # the adaptive threshold for another de-interference method (``aca_method``).
        self.correction = cfg["aca_method"] if cfg["aca"] else None
        if self.correction == "adaptive":
            if cfg["first_order"]:
                self.inter_threshold = AdaptiveThreshold(c2, fixed)
            self.intra_threshold = AdaptiveThreshold(c2, fixed)
        elif self.correction == "shrinkage":
            self.shrink_shared = nn.ModuleDict({m: FeatureShrinkage(c2) for m in MODALITIES})
            self.shrink_private = nn.ModuleDict({m: FeatureShrinkage(c2) for m in MODALITIES})

    # The inter-modal branch depends on the (anchor, candidate) pair (launch.eval.embeddings reads this).
    pairwise = True

    # ---- per-item intra-modal correction (ACA, G = Intra) ---------------------------------------
    def intra(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """f~ of Eq. 8: softmax(delta clamp(E_intra, +-eps)) P, decoded back to C channels; ``[N, C, H, W]``."""
        n, _, h, w = x.shape
        p = self.private[modality](x).flatten(2)
        if self.correction == "shrinkage":
            p = self.shrink_private[modality](p)
        e = channel_affinity(p, p)
        logits = self._corrected(e, getattr(self, "intra_threshold", None), self.cfg["delta"])  # Eq. 11, Intra
        f = attend(torch.softmax(logits, dim=-1), p)
        decoded: torch.Tensor = self.decode_intra[modality](f.view(n, -1, h, w))
        return decoded

    # ---- per-pair inter-modal interaction (AIA + ACA, G = Inter) --------------------------------
    def _corrected(
        self, e: torch.Tensor, threshold: AdaptiveThreshold | None, scale: torch.Tensor | float
    ) -> torch.Tensor:
        """Softmax logits scale * E with ACA's threshold (Eqs. 9-11; none without ACA) or a Table IX
        alternative (``aca_method``: principal components, low-pass; shrinkage acts on the features)."""
        cfg = self.cfg
        if self.correction == "pca":
            return scale * low_rank(e, cfg["aca_pca_ratio"])
        if self.correction == "lowpass":
            return scale * lowpass(e, cfg["aca_lowpass_cutoff"])
        eps = None if threshold is None else threshold(e)  # Eq. 9
        return thresholded_logits(e, eps, scale, cfg["aca_threshold"], cfg["threshold_width"])

    def _first_order(self, e: torch.Tensor, s: torch.Tensor, sign_r: torch.Tensor | None) -> torch.Tensor:
        """Eqs. 4-6 / 10-11: softmax(delta sign(R) clamp(E, +-eps)) applied to the shared map ``s``."""
        scale = self.cfg["delta"] if sign_r is None else self.cfg["delta"] * sign_r[:, None, None]  # Eq. 4
        logits = self._corrected(e, getattr(self, "inter_threshold", None), scale)  # Eq. 10
        return attend(torch.softmax(logits, dim=-1), s)  # Eq. 6

    @staticmethod
    def _self_support(s: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Eq. 7: softmax(f (f->)^T) f with f as query/value and the first-order output as key.

        Scaled by 1/sqrt(H W) (the contraction length): the paper gives no scale, and raw dot
        products over 49-130 positions (7x7 faces, 10x7 to 10x13 voices) saturate the softmax.
        Evaluated by ``scaled_dot_softmax``, which factors the features' magnitude out of the
        logits: the dot products of eval-mode features early in training (1e20 and more,
        BatchNorm running statistics lagging) overflow float32 and turned the plain softmax into NaN.
        """
        return attend(scaled_dot_softmax(s, key), s)

    def pairs(
        self, voice_maps: torch.Tensor, face_maps: torch.Tensor, vi: torch.Tensor, fi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Interaction features f^ of every (voice vi[p], face fi[p]) pair and the relevance R [P] (or None)."""
        cfg = self.cfg
        s_v, s_f = self.shared["voice"](voice_maps), self.shared["face"](face_maps)
        if self.correction == "shrinkage":
            s_v = self.shrink_shared["voice"](s_v.flatten(2)).view_as(s_v)
            s_f = self.shrink_shared["face"](s_f.flatten(2)).view_as(s_f)
        hv, wv = s_v.shape[2:]
        hf, wf = s_f.shape[2:]
        sv_p, sf_p = gather_rows(s_v.flatten(2), vi), gather_rows(s_f.flatten(2), fi)
        relevance = None
        first_v, first_f = sv_p, sf_p
        if cfg["first_order"]:
            q_v = gather_rows(F.adaptive_max_pool2d(s_v, 3).flatten(2), vi)
            q_f = gather_rows(F.adaptive_max_pool2d(s_f, 3).flatten(2), fi)
            if hasattr(self, "relevance"):
                relevance = self.relevance(q_v, q_f)
            # relevance_guidance implies the relevance net (__init__)
            sign_r = torch.sign(relevance) if cfg["relevance_guidance"] and relevance is not None else None
            e_vf = channel_affinity(q_v, q_f)  # Eq. 3
            first_v = self._first_order(e_vf, sv_p, sign_r)
            first_f = self._first_order(e_vf.transpose(1, 2), sf_p, sign_r)
        if cfg["self_support"]:
            hat_v, hat_f = self._self_support(sv_p, first_v), self._self_support(sf_p, first_f)
        else:
            hat_v, hat_f = first_v, first_f
        p = vi.shape[0]
        dec_v = self.decode_inter(hat_v.reshape(p, -1, hv, wv))
        dec_f = self.decode_inter(hat_f.reshape(p, -1, hf, wf))
        return dec_v, dec_f, relevance

    def fuse(self, x: torch.Tensor, inter: torch.Tensor, intra: torch.Tensor) -> torch.Tensor:
        """Eq. 8 (DEF): (1 - m_inter - m_intra) x + m_inter IN(f^) + m_intra IN(f~); without DEF a plain skip."""
        if not self.cfg["def_fusion"]:
            return x + instance_norm(inter) + instance_norm(intra)
        m_inter, m_intra = self.mask_inter(inter), self.mask_intra(intra)
        fused: torch.Tensor = (
            (1 - m_inter - m_intra) * x + m_inter * instance_norm(inter) + m_intra * instance_norm(intra)
        )
        return fused


class AICANet(MatchingModel):
    def __init__(self, cfg: dict[str, Any]):
        super().__init__(cfg)
        if cfg["aia"]:
            self.attention["aia_aca"] = InteractionCorrection(cfg, self.channels)

    def embed(self, idx: TupleIndex, anchor_maps: torch.Tensor, cand_maps: torch.Tensor) -> dict[str, Any]:
        if "aia_aca" not in self.attention:
            h_anchor, h_cand = self.embed_items(idx, anchor_maps, cand_maps)
            return {"h_anchor": h_anchor, "h_cand": h_cand, "relevance": None}
        block = cast(InteractionCorrection, self.attention["aia_aca"])
        m_anchor, m_cand = ("voice", "face") if idx.anchor_is_voice else ("face", "voice")
        intra_anchor, intra_cand = block.intra(m_anchor, anchor_maps), block.intra(m_cand, cand_maps)
        b, k = idx.candidate_index.shape
        ai, ci = pair_indices(idx)
        if idx.anchor_is_voice:
            dec_a, dec_c, relevance = block.pairs(anchor_maps, cand_maps, ai, ci)
        else:
            dec_c, dec_a, relevance = block.pairs(cand_maps, anchor_maps, ci, ai)
        fused_a = block.fuse(gather_rows(anchor_maps, ai), dec_a, gather_rows(intra_anchor, ai))
        fused_c = block.fuse(gather_rows(cand_maps, ci), dec_c, gather_rows(intra_cand, ci))
        anchor_mean = fused_a.view(b, k, *fused_a.shape[1:]).mean(dim=1)
        h_anchor = self.generator(anchor_mean)
        h_cand = self.generator(fused_c).view(b, k, -1)
        return {
            "h_anchor": h_anchor,
            "h_cand": h_cand,
            "relevance": None if relevance is None else relevance.view(b, k),
        }

    def extra_losses(self, out: dict[str, Any], idx: TupleIndex, epoch: float) -> dict[str, tuple[float, torch.Tensor]]:
        if not self.cfg["rel_loss"] or out.get("relevance") is None:
            return {}
        if idx.label is None:
            raise ValueError("loss() needs batch['label']")
        target = one_hot_match(idx.label, idx.num_candidates)
        rel = losses.relevance_loss(out["relevance"], target, epoch, self.cfg["total_epochs"], self.cfg["tau"])
        return {"rel": (self.cfg["gamma"], rel)}
