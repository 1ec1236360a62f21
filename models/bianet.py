"""BIANet (Wang et al., Pattern Recognition 2025): bidirectional intervention attention + counterfactual inference.

No code was published (docs/REFERENCES.md#a14); this follows the paper's equations:

* Eq. 9   intra-modal affinity A = Q K^T (cosine, per item): :meth:`IntervenedAttention.forward`.
* Eq. 10  strong part of A -> PIA: the entries A < eps gated out of the softmax
  (``pia_threshold=gate``); the printed clamp(A, min=eps) raises them instead (``clamp``).
* Eq. 11  weak part    A~ = ReLU(-(ReLU(A) - eps))       -> NIA.
* Eq. 12  X^ = softmax(tau1 A^) X (the printed ``softmax(tau1 A^ X)`` is read as a typo).
* Eq. 14  X- = (1 - mask) X + mask IN(X^), mask from an SE gate.
* Eqs. 15, 17  X~ = softmax(tau_neg A~ / eps + d) X with the strong entries gated out
  (``nia_form=normalized``; the printed softmax(A~ + d) is ``literal``), d = -inf with
  probability p (training only; DropKey).
* Eqs. 18-19  X~ <- softmax(tau2 X~X~^T) X~ + softmax(-tau2 X~X~^T) X~.
* Eqs. 20-21  P_cp, P_cn: the shared generator and classifier on the PIA and NIA features.
* Eq. 22  L_cls = -mean log(P_cp - w(epoch) P_cn), w = 1 - cos(pi epoch / N); the same
  counterfactual difference scores at test time, with the last trained epoch kept in a buffer.

Choices where the paper is silent (exposed as config keys, argued in docs/MODELS.md): eps is a
per-row learned threshold (the AICANet Eq. 9 layer) or a constant; tau2 = 20; p = 0.1; Eq. 22
is evaluated on logits, CE(z_cp - w z_cn), by default (``cf_positivity``; the probability form
with a softplus or clamp keeping the log finite is available, but did not learn, see MODELS.md). Every attention step works on one
item, so PIA/NIA and the generator run once per unique face/voice and tuples gather embeddings.
"""

from __future__ import annotations

from typing import Any, overload

import torch
import torch.nn.functional as F
from torch import nn

from . import losses
from .attention import AdaptiveThreshold, SEMask, attend, channel_affinity, instance_norm, threshold_gate
from .base import MatchingModel
from .batch import TupleIndex

MODALITIES = ("voice", "face")


def dropkey_mask(
    shape: torch.Size,
    p: float,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator | None = None,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 17: 0 with probability 1 - p, -inf with probability p.

    Entries in ``keep`` (a bool tensor of ``shape``; default the diagonal) are never dropped, so
    no softmax row can become all -inf.
    """
    drop = torch.rand(shape, device=device, generator=generator) < p
    if keep is None:
        keep = torch.eye(shape[-1], dtype=torch.bool, device=device).expand(shape)
    drop = drop & ~keep
    return torch.zeros(shape, device=device, dtype=dtype).masked_fill(drop, float("-inf"))


def strong_logits(a: torch.Tensor, eps: torch.Tensor, tau1: float, mode: str, width: float) -> torch.Tensor:
    """PIA softmax logits over the strong part of A (Eqs. 10, 12).

    ``gate`` (default): tau1 A plus a sigmoid gate on A - eps (models.attention.threshold_gate):
    the entries below eps are suppressed (weight x ~e^-5 at 5 widths below), eps gets a gradient.
    ``clamp`` (the printed Eq. 10): tau1 max(A, eps). Softmax is shift-invariant, so this equals
    softmax(tau1 ReLU(A - eps)): every sub-threshold entry is *raised* to the floor eps and gets
    more mass than it would with no threshold at all (docs/MODELS.md, "Deviations").
    """
    if mode == "clamp":
        return tau1 * torch.maximum(a, eps)
    if mode != "gate":
        raise ValueError(f"pia_threshold {mode!r} unknown; allowed: ['gate', 'clamp']")
    return tau1 * a + threshold_gate(a, eps, width)


def weak_logits(
    a: torch.Tensor, eps: torch.Tensor, tau_neg: float, mode: str, width: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """NIA softmax logits over the weak part A~ = ReLU(-(ReLU(A) - eps)) of Eq. 11, and the entries
    DropKey must keep (each row's weakest).

    ``normalized`` (default): tau_neg A~ / eps, gated to the sub-threshold entries (a sigmoid gate
    on eps - A), so the weak part spans [0, tau_neg] whatever eps is and the strong channels are
    suppressed. ``literal`` (Eq. 15 as printed): softmax(A~ + d). A~ lies in [0, eps] (eps ~
    0.01-0.2), so every row is a near-uniform average of all channels and every NIA output
    channel is the same map up to sign: the reverse prediction then sees almost nothing of the item.
    """
    weak = F.relu(-(F.relu(a) - eps))  # Eq. 11
    keep = a == a.amin(dim=-1, keepdim=True)
    if mode == "literal":
        return weak, keep
    if mode != "normalized":
        raise ValueError(f"nia_form {mode!r} unknown; allowed: ['normalized', 'literal']")
    return tau_neg * weak / eps.clamp_min(1e-6) + threshold_gate(-a, -eps, width), keep


class IntervenedAttention(nn.Module):
    """PIA and NIA for one modality: ``X [N, C, H, W] -> (X- positive features, X~ negative features)``.

    The threshold layer is shared by the two branches: A >= eps is the strong part (PIA), A < eps
    the weak part (NIA), a partition of the affinity matrix as Eqs. 10-11 intend.
    """

    def __init__(self, cfg: dict[str, Any], channels: int):
        super().__init__()
        self.cfg = cfg
        c2 = cfg["attn_channels"]
        self.query = nn.Conv2d(channels, c2, 1, bias=False)
        self.key = nn.Conv2d(channels, c2, 1, bias=False)
        self.value = nn.Conv2d(channels, c2, 1, bias=False)
        fixed = None if cfg["epsilon"] == "learned" else float(cfg["epsilon"])
        self.threshold = AdaptiveThreshold(c2, fixed)
        if cfg["pia"]:
            self.decode_pos = nn.Conv2d(c2, channels, 1, bias=False)
            self.mask = SEMask(channels, cfg["se_reduction"])
        if cfg["nia"]:
            self.decode_neg = nn.Conv2d(c2, channels, 1, bias=False)

    def attention_maps(self, x: torch.Tensor) -> dict[str, Any]:
        """The pieces of Eqs. 9-17 for ``x``: values ``v [N, C', P]``, affinity ``a`` and threshold
        ``eps``, and the row-stochastic PIA / NIA weights ``[N, C', C']`` (None when off)."""
        cfg = self.cfg
        v = self.value(x).flatten(2)
        a = channel_affinity(self.query(x).flatten(2), self.key(x).flatten(2))  # Eq. 9
        eps = self.threshold(a)
        maps = {"v": v, "a": a, "eps": eps, "pia": None, "nia": None}
        if cfg["pia"]:
            logits = strong_logits(a, eps, cfg["tau1"], cfg["pia_threshold"], cfg["threshold_width"])  # Eq. 10
            maps["pia"] = torch.softmax(logits, dim=-1)
        if cfg["nia"]:
            logits, keep = weak_logits(a, eps, cfg["tau_neg"], cfg["nia_form"], cfg["threshold_width"])  # Eq. 11
            if self.training and cfg["dropkey_p"] > 0:
                logits = logits + dropkey_mask(
                    logits.shape, cfg["dropkey_p"], logits.device, logits.dtype, keep=keep
                )  # Eq. 17
            maps["nia"] = torch.softmax(logits, dim=-1)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.cfg
        n, _, h, w = x.shape
        maps = self.attention_maps(x)
        positive = x
        if maps["pia"] is not None:
            x_hat = attend(maps["pia"], maps["v"])  # Eq. 12
            dec = self.decode_pos(x_hat.view(n, -1, h, w))
            mask = self.mask(dec)
            positive = (1 - mask) * x + mask * instance_norm(dec)  # Eq. 14
        negative = None
        if maps["nia"] is not None:
            x_tilde = attend(maps["nia"], maps["v"])  # Eq. 15
            aff = channel_affinity(x_tilde, x_tilde)  # Eq. 18
            x_tilde = attend(torch.softmax(cfg["tau2"] * aff, dim=-1), x_tilde) + attend(
                torch.softmax(-cfg["tau2"] * aff, dim=-1), x_tilde
            )  # Eq. 19
            negative = instance_norm(self.decode_neg(x_tilde.view(n, -1, h, w)))
        return positive, negative


def _as_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over K candidates; for K = 1 the two-class distribution [1 - p, p] of the match logit."""
    if logits.dim() == 1:
        p = torch.sigmoid(logits)
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


class BIANet(MatchingModel):
    def __init__(self, cfg: dict[str, Any]):
        super().__init__(cfg)
        if cfg["pia"] or cfg["nia"]:
            self.attention["voice"] = IntervenedAttention(cfg, self.channels)
            self.attention["face"] = IntervenedAttention(cfg, self.channels)

    @overload
    def cf_weight(self, epoch: float) -> float: ...
    @overload
    def cf_weight(self, epoch: torch.Tensor) -> torch.Tensor: ...
    def cf_weight(self, epoch: float | torch.Tensor) -> float | torch.Tensor:
        """Eq. 22 weight of the reverse prediction (``cf_schedule='constant'``: a fixed weight, Table 7 'w/o CLS').

        A float for a float `epoch` (the loss); a 0-d tensor on its device for a tensor `epoch`
        (``score`` passes the ``trained_epoch`` buffer: no host sync on GPU).
        """
        if not self.cfg["nia"]:
            return torch.zeros((), device=epoch.device) if isinstance(epoch, torch.Tensor) else 0.0
        if self.cfg["cf_schedule"] == "constant":
            w = float(self.cfg["cf_constant_weight"])
            return torch.full((), w, device=epoch.device) if isinstance(epoch, torch.Tensor) else w
        return losses.curriculum_weight(epoch, self.cfg["total_epochs"])

    def _branch(self, modality: str, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if modality not in self.attention:
            return maps, None
        positive_negative: tuple[torch.Tensor, torch.Tensor | None] = self.attention[modality](maps)
        return positive_negative

    def embed(self, idx: TupleIndex, anchor_maps: torch.Tensor, cand_maps: torch.Tensor) -> dict[str, Any]:
        m_anchor, m_cand = ("voice", "face") if idx.anchor_is_voice else ("face", "voice")
        pos_a, neg_a = self._branch(m_anchor, anchor_maps)
        pos_c, neg_c = self._branch(m_cand, cand_maps)
        h_anchor, h_cand = self.embed_items(idx, pos_a, pos_c)
        out = {"h_anchor": h_anchor, "h_cand": h_cand}
        if neg_a is not None and neg_c is not None:  # both modalities have NIA or neither
            out["h_anchor_neg"], out["h_cand_neg"] = self.embed_items(idx, neg_a, neg_c)
        return out

    def score(self, out: dict[str, Any]) -> torch.Tensor:
        """The counterfactual score with w at the last trained epoch, in the form the loss trains:
        z_cp - w z_cn for ``cf_positivity='logit'``, P_cp - w P_cn (Eq. 22) otherwise; P_cp's
        logits alone without NIA. For K = 1 a single match margin (> 0 = match)."""
        logits_cp: torch.Tensor = self.classifier(out["h_anchor"], out["h_cand"])  # Eq. 20
        out["logits_cp"] = logits_cp
        if "h_anchor_neg" not in out:
            return logits_cp
        logits_cn: torch.Tensor = self.classifier(out["h_anchor_neg"], out["h_cand_neg"])  # Eq. 21
        out["logits_cn"] = logits_cn
        w = self.cf_weight(self.trained_epoch).to(logits_cp.dtype)
        if self.cfg["cf_positivity"] == "logit":
            return logits_cp - w * logits_cn
        p_cp, p_cn = _as_probabilities(logits_cp), _as_probabilities(logits_cn)
        scores = p_cp - w * p_cn
        # K = 1: the margin of "match" over "no match", so > 0 is the model's match decision
        return scores[:, 1] - scores[:, 0] if logits_cp.dim() == 1 else scores

    def similarity(self, out: dict[str, Any]) -> torch.Tensor:
        """Embedding scores that keep Eq. 22's counterfactual: cos(h^_a, h^_c) - w cos(h~_a, h~_c).

        The positive (PIA) embeddings' cosine minus w times the reverse (NIA) embeddings' cosine,
        with w at the last trained epoch as in :meth:`score`; without NIA the plain cosine.
        """
        positive = super().similarity(out)
        if "h_anchor_neg" not in out:
            return positive
        negative = super().similarity({"h_anchor": out["h_anchor_neg"], "h_cand": out["h_cand_neg"]})
        return positive - self.cf_weight(self.trained_epoch).to(positive.dtype) * negative

    def classification_loss(self, out: dict[str, Any], label: torch.Tensor, epoch: float) -> dict[str, torch.Tensor]:
        if "logits_cn" not in out:
            return {"cls": losses.matching_loss(out["logits_cp"], label)}
        cfg = self.cfg
        cls = losses.counterfactual_loss(
            _as_probabilities(out["logits_cp"]),
            _as_probabilities(out["logits_cn"]),
            label,
            self.cf_weight(epoch),
            cfg["cf_positivity"],
            cfg["cf_softplus_beta"],
            cfg["cf_clamp_floor"],
            logits_cp=_two_class_logits(out["logits_cp"]),
            logits_cn=_two_class_logits(out["logits_cn"]),
        )
        return {"cls": cls, "cf_weight": torch.tensor(self.cf_weight(epoch))}


def _two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """K = 1 match logit z as two-class logits [0, z] (softmax gives [1 - sigmoid z, sigmoid z])."""
    if logits.dim() == 1:
        return torch.stack([torch.zeros_like(logits), logits], dim=1)
    return logits
