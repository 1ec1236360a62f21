"""Loss terms of AICANet (Eqs. 2, 12-16) and BIANet (Eq. 22), plus the metric-loss alternatives.

Conventions: ``anchor [B, D]``, ``candidates [B, K, D]``, ``label [B]`` (index of the positive
for K >= 2). Metric losses are written on distances (``d_ac [B, K]`` anchor-candidate and
``d_cc [B, K, K]`` candidate-candidate) so tests can feed hand-chosen distances.
"""

from __future__ import annotations

import math
from typing import overload

import torch
import torch.nn.functional as F

METRIC_LOSSES = ("rdsm", "structure", "lifted", "triplet", "none")


def cosine_anneal(epoch: float, total_epochs: float) -> float:
    """0.5 (1 + cos(pi epoch / N)): 1 at the start, 0 at the end (the Eq. 2 schedule, simulated annealing)."""
    e = min(max(float(epoch), 0.0), float(total_epochs))
    return 0.5 * (1.0 + math.cos(math.pi * e / total_epochs))


@overload
def curriculum_weight(epoch: float, total_epochs: float) -> float: ...
@overload
def curriculum_weight(epoch: torch.Tensor, total_epochs: float) -> torch.Tensor: ...
def curriculum_weight(epoch: float | torch.Tensor, total_epochs: float) -> float | torch.Tensor:
    """BIANet Eq. 22 weight of the reverse prediction: 1 - cos(pi epoch / N), rising 0 -> 2.

    `epoch` is a float (the loss) or a 0-d tensor (the test-time score reads the model's
    `trained_epoch` buffer: computing on its device avoids a host sync on GPU); same formula.
    """
    if isinstance(epoch, torch.Tensor):
        return 1 - torch.cos(math.pi * epoch.clamp(0, float(total_epochs)) / float(total_epochs))
    e = min(max(float(epoch), 0.0), float(total_epochs))
    return 1.0 - math.cos(math.pi * e / total_epochs)


def relevance_loss(
    relevance: torch.Tensor, match: torch.Tensor, epoch: float, total_epochs: float, tau: float = 5.0
) -> torch.Tensor:
    """AICANet Eq. 2, per tuple: (1/2k)(1 + cos(pi e/N)) sum_j (sigmoid(tau R_0j) - l_j)^2, mean over tuples.

    ``relevance [B, K]`` is R of every (anchor, candidate) pair and ``match [B, K]`` is 1 for the
    matching candidate. Each R is compared with its own pair's label; the authors' code compares
    every R with every label of the batch (a B x B broadcast, docs/REFERENCES.md#a6).
    """
    if relevance.shape != match.shape:
        raise ValueError(f"relevance {tuple(relevance.shape)} and match {tuple(match.shape)} must have the same shape")
    k = relevance.shape[1]
    sq = (torch.sigmoid(tau * relevance) - match.to(relevance.dtype)).pow(2).sum(dim=1)
    return (cosine_anneal(epoch, total_epochs) * 2.0 / (2 * k) * sq).mean()


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance over the last axis, with a tiny floor so the gradient at 0 stays finite."""
    return ((a - b).pow(2).sum(-1) + 1e-12).sqrt()


def tuple_distances(anchor: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``d_ac [B, K]`` (anchor to each candidate) and ``d_cc [B, K, K]`` (candidate to candidate)."""
    if anchor.dim() == 3:
        d_ac = euclidean(anchor, candidates)
    else:
        d_ac = euclidean(anchor.unsqueeze(1), candidates)
    d_cc = euclidean(candidates.unsqueeze(2), candidates.unsqueeze(1))
    return d_ac, d_cc


def _positive_and_negatives(
    d_ac: torch.Tensor, d_cc: torch.Tensor, label: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if d_ac.shape[1] < 2:
        raise ValueError("tuple metric losses need K >= 2 candidates (one positive and at least one negative)")
    d_ap = d_ac.gather(1, label[:, None]).squeeze(1)
    d_pq = d_cc.gather(1, label[:, None, None].expand(-1, 1, d_cc.shape[2])).squeeze(1)
    negative = ~F.one_hot(label, d_ac.shape[1]).bool()
    return d_ap, d_pq, negative


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(~mask, float("-inf")).amax(dim=1)


def _masked_logsumexp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(~mask, float("-inf")).logsumexp(dim=1)


def rdsm_from_distances(
    d_ac: torch.Tensor, d_cc: torch.Tensor, label: torch.Tensor, theta: float = 1.2, mu1: float = 10.0, mu2: float = 4.0
) -> torch.Tensor:
    """AICANet Eqs. 14-15 (relative distance stretching metric).

    D_i = mu1 log(1 + mu2 (max_j w_j e^{theta - d_0j} e^{d_0p - d_0j}
                            + max_q w_q e^{theta - d_pq} e^{d_0p - d_pq})) + d_0p,
    L = (1 / 2M) sum_i max(D_i, 0). The maxima run over negatives only (w = 1 for
    non-matching candidates); the log is evaluated as a logsumexp so large exponents cannot overflow.
    """
    d_ap, d_pq, neg = _positive_and_negatives(d_ac, d_cc, label)
    t_anchor = _masked_max(theta - 2 * d_ac + d_ap[:, None], neg)
    t_positive = _masked_max(theta - 2 * d_pq + d_ap[:, None], neg)
    log_mu2 = math.log(mu2)
    inner = torch.stack([torch.zeros_like(t_anchor), log_mu2 + t_anchor, log_mu2 + t_positive], dim=1)
    d = mu1 * inner.logsumexp(dim=1) + d_ap
    loss: torch.Tensor = d.clamp_min(0).sum() / (2 * d.shape[0])
    return loss


def structure_metric_from_distances(
    d_ac: torch.Tensor, d_cc: torch.Tensor, label: torch.Tensor, theta: float = 1.2
) -> torch.Tensor:
    """Structure metric L_SM (AML, TMM 2022; the ACIENet/baseline metric, AICANet Table X):

    D_i = d_0p + log(max_j e^{theta - d_0j} + max_q e^{theta - d_pq}), L = (1/2M) sum max(D_i, 0).
    """
    d_ap, d_pq, neg = _positive_and_negatives(d_ac, d_cc, label)
    a = _masked_max(theta - d_ac, neg)
    p = _masked_max(theta - d_pq, neg)
    d = d_ap + torch.logaddexp(a, p)
    loss: torch.Tensor = d.clamp_min(0).sum() / (2 * d.shape[0])
    return loss


def lifted_structure_from_distances(
    d_ac: torch.Tensor, d_cc: torch.Tensor, label: torch.Tensor, theta: float = 1.2
) -> torch.Tensor:
    """Lifted structured loss L_LM (Song et al. 2016) on a tuple: all negatives, squared hinge.

    J_i = log(sum_j e^{theta - d_0j} + sum_q e^{theta - d_pq}) + d_0p, L = (1/2M) sum max(J_i, 0)^2.
    """
    d_ap, d_pq, neg = _positive_and_negatives(d_ac, d_cc, label)
    j = torch.logaddexp(_masked_logsumexp(theta - d_ac, neg), _masked_logsumexp(theta - d_pq, neg)) + d_ap
    loss: torch.Tensor = j.clamp_min(0).pow(2).sum() / (2 * j.shape[0])
    return loss


def triplet_from_distances(
    d_ac: torch.Tensor, d_cc: torch.Tensor, label: torch.Tensor, theta: float = 1.2
) -> torch.Tensor:
    """Triplet loss L_Trip (Schroff et al. 2015): mean over (anchor, positive, negative) of max(d_0p - d_0j + margin, 0)."""
    d_ap, _, neg = _positive_and_negatives(d_ac, d_cc, label)
    hinge = (d_ap[:, None] - d_ac + theta).clamp_min(0) * neg
    loss: torch.Tensor = hinge.sum() / neg.sum()
    return loss


def contrastive_verification(
    anchor: torch.Tensor, candidates: torch.Tensor, label: torch.Tensor, margin: float = 1.2
) -> torch.Tensor:
    """K = 1 stand-in for every tuple metric (they need a positive and a negative in one tuple):
    a contrastive loss 0.5 [l d + (1 - l) max(margin - d, 0)], mean over pairs. Linear in d, like
    the d_0p term of Eq. 15, so its scale matches the K >= 2 metrics on the same embeddings."""
    d = euclidean(anchor, candidates[:, 0]) if anchor.dim() == 2 else euclidean(anchor[:, 0], candidates[:, 0])
    lab = label.to(d.dtype)
    return 0.5 * (lab * d + (1 - lab) * (margin - d).clamp_min(0)).mean()


RDSM_DISTANCES = ("unit", "raw")


def metric_loss(
    name: str,
    anchor: torch.Tensor,
    candidates: torch.Tensor,
    label: torch.Tensor,
    theta: float = 1.2,
    mu1: float = 10.0,
    mu2: float = 4.0,
    rdsm_distance: str = "unit",
) -> torch.Tensor:
    """Dispatch on the configured metric loss (``rdsm`` | ``structure`` | ``lifted`` | ``triplet`` | ``none``).

    ``rdsm_distance='unit'`` (default) evaluates RDSM on L2-normalised embeddings; ``'raw'`` on
    the tanh embeddings as printed. Why: RDSM's log term mu1 log(1 + mu2 e^{theta + d_0p - 2 d_0j})
    is a softplus that fades once 2 d_0j - d_0p > theta + ln mu2 (2.59), an absolute distance.
    Raw 128-d tanh embeddings start ~10 apart, where the push on the negatives is ~4 % of the
    pull d_0p (tests/test_models_losses.py), whose cheapest descent shrinks every embedding (a
    baseline trained with raw RDSM stayed at chance, docs/MODELS.md). Unit vectors are at most 2
    apart (random ones sqrt 2): the push is 1.8x the pull at init and acts until a negative is
    > ~1.3 + d_0p / 2 away, so theta = 1.2 and mu2 = 4 get a fixed meaning. The other metrics
    see the raw embeddings (the structure metric needs them: on unit vectors a baseline stayed
    at chance).
    """
    if name == "none":
        return anchor.new_zeros(())
    if name == "rdsm" and rdsm_distance == "unit" and candidates.shape[1] > 1:  # K = 1: the contrastive stand-in
        anchor, candidates = F.normalize(anchor, dim=-1), F.normalize(candidates, dim=-1)
    elif rdsm_distance not in RDSM_DISTANCES:
        raise ValueError(f"rdsm_distance {rdsm_distance!r} unknown; allowed: {list(RDSM_DISTANCES)}")
    if candidates.shape[1] == 1:
        return contrastive_verification(anchor, candidates, label, theta)
    d_ac, d_cc = tuple_distances(anchor, candidates)
    if name == "rdsm":
        return rdsm_from_distances(d_ac, d_cc, label, theta, mu1, mu2)
    if name == "structure":
        return structure_metric_from_distances(d_ac, d_cc, label, theta)
    if name == "lifted":
        return lifted_structure_from_distances(d_ac, d_cc, label, theta)
    if name == "triplet":
        return triplet_from_distances(d_ac, d_cc, label, theta)
    raise ValueError(f"metric_loss {name!r} unknown; allowed: {list(METRIC_LOSSES)}")


def modality_loss(
    logits_anchor: torch.Tensor, logits_cand: torch.Tensor, anchor_modality: int, flip: bool = False
) -> torch.Tensor:
    """Eq. 12: -(1/M) sum_i sum_{j=0..k} log D_{N_ij}(h_ij), i.e. cross-entropy summed over the k+1
    members of a tuple and averaged over tuples. ``flip=True`` gives the generator's adversarial
    term (labels swapped, as in the authors' code) that enters Eq. 16.

    ``logits_anchor [B, 2]`` (or ``[B, K, 2]`` when anchors are per pairing; those are averaged
    over K so each tuple still counts one anchor), ``logits_cand [B, K, 2]``.
    """
    cand_modality = 1 - anchor_modality
    if flip:
        anchor_modality, cand_modality = cand_modality, anchor_modality
    ce_anchor = _modality_ce(logits_anchor.view(logits_cand.shape[0], -1, 2), anchor_modality).mean(1)
    ce_cand = _modality_ce(logits_cand, cand_modality).sum(1)
    return (ce_anchor + ce_cand).mean()


def _modality_ce(logits: torch.Tensor, modality: int) -> torch.Tensor:
    """Cross-entropy of every member's ``[B, M, 2]`` discriminator logits against ``modality`` -> ``[B, M]``."""
    target = torch.full(logits.shape[:2], modality, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(logits.shape[:2])


def matching_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Eq. 13: cross-entropy over K candidates; K = 1: binary cross-entropy on the match logit."""
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, label.to(logits.dtype))
    return F.cross_entropy(logits, label)


CF_POSITIVITY = ("softplus", "clamp", "logit")


def counterfactual_loss(
    p_cp: torch.Tensor,
    p_cn: torch.Tensor,
    label: torch.Tensor,
    weight: float,
    positivity: str = "logit",
    beta: float = 10.0,
    floor: float = 1e-4,
    logits_cp: torch.Tensor | None = None,
    logits_cn: torch.Tensor | None = None,
) -> torch.Tensor:
    """BIANet Eq. 22: -(1/M) sum_i log(P_cp[y_i] - w P_cn[y_i]), w = ``weight`` (Eq. 22 curriculum).

    The argument can be <= 0 (w reaches 2); the paper does not say how it stays positive. Choices:

    * ``logit`` (the model default): cross-entropy on the counterfactual logits z_cp - w z_cn,
      the total indirect effect in logit space; needs ``logits_cp``/``logits_cn``. No log of a
      difference, so nothing to keep positive.
    * ``softplus``: log(softplus_beta(x)), softplus_beta(x) = log(1 + e^{beta x}) / beta. Equals
      log(x) to within e^{-beta x}/beta for x >> 1/beta, and below zero it becomes a linear
      penalty of slope beta instead of -inf, so every tuple keeps a finite gradient.
    * ``clamp``: log(max(x, floor)); tuples below the floor get no gradient.

    In probability form, once w > 1 a K = 2 tuple can keep x > 0 only if the reverse prediction
    ranks the *wrong* candidate first (P_cn[y] < P_cp[y] / w); on the synthetic task of
    tests/test_models_learning.py both probability forms stayed at chance while ``logit`` learned.

    ``p_cp``/``p_cn`` are ``[B, C]`` class probabilities (C = K, or 2 for verification).
    """
    if positivity == "logit":
        if logits_cp is None or logits_cn is None:
            raise ValueError("cf_positivity='logit' needs the classifier logits")
        return F.cross_entropy(logits_cp - weight * logits_cn, label)
    x = (p_cp - weight * p_cn).gather(1, label[:, None]).squeeze(1)
    if positivity == "softplus":
        return -torch.log(F.softplus(x, beta=beta)).mean()
    if positivity == "clamp":
        return -torch.log(x.clamp_min(floor)).mean()
    raise ValueError(f"cf_positivity {positivity!r} unknown; allowed: {list(CF_POSITIVITY)}")
