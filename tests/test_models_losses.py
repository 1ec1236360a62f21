"""Loss equations against hand computations (AICANet Eqs. 2, 12-15; BIANet Eq. 22; metric alternatives)."""

import math

import pytest
import torch
import torch.nn.functional as F

from models import losses


def test_cosine_anneal_and_curriculum_weight_at_schedule_points():
    assert losses.cosine_anneal(0, 50) == pytest.approx(1.0)
    assert losses.cosine_anneal(25, 50) == pytest.approx(0.5)
    assert losses.cosine_anneal(49, 50) == pytest.approx(9.87e-4, rel=1e-2)  # docs/REFERENCES.md#a12
    assert losses.cosine_anneal(50, 50) == pytest.approx(0.0, abs=1e-12)
    # Eq. 22: w = 1 - cos(pi e / N) rises 0 -> 1 -> 2.
    assert losses.curriculum_weight(0, 40) == pytest.approx(0.0)
    assert losses.curriculum_weight(20, 40) == pytest.approx(1.0)
    assert losses.curriculum_weight(40, 40) == pytest.approx(2.0)
    assert losses.curriculum_weight(10, 40) == pytest.approx(1 - math.cos(math.pi / 4))
    assert losses.curriculum_weight(99, 40) == pytest.approx(2.0)  # clamped past the end
    for e in (-1.0, 0.0, 7.5, 40.0, 99.0):  # the tensor form (test-time score) is the same formula
        w = losses.curriculum_weight(torch.tensor(e, dtype=torch.float64), 40)
        assert isinstance(w, torch.Tensor) and float(w) == pytest.approx(losses.curriculum_weight(e, 40), abs=1e-12)


@pytest.mark.parametrize("epoch, expected", [(0, 0.25), (25, 0.125), (50, 0.0)])
def test_relevance_loss_eq2_with_zero_relevance(epoch, expected):
    # R = 0 -> sigmoid = 0.5; k = 2: (1/4)(1 + cos) * (0.25 + 0.25) per tuple (docs/REFERENCES.md#a12).
    r = torch.zeros(5, 2)
    match = F.one_hot(torch.tensor([0, 1, 1, 0, 1]), 2).float()
    assert losses.relevance_loss(r, match, epoch, 50).item() == pytest.approx(expected, abs=1e-7)


def test_relevance_loss_is_per_tuple_not_the_broadcast_of_the_reference_code():
    r = torch.tensor([[0.2, -0.1], [0.4, 0.3]])
    match = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = lambda x: 1 / (1 + math.exp(-5 * x))  # noqa: E731
    t1 = (s(0.2) - 1) ** 2 + (s(-0.1) - 0) ** 2
    t2 = (s(0.4) - 0) ** 2 + (s(0.3) - 1) ** 2
    expected = (2 / 4) * (t1 + t2) / 2
    assert losses.relevance_loss(r, match, 0, 50).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        losses.relevance_loss(r, match[:, :1], 0, 50)


def _dists_k3():
    # anchor-candidate distances, label 0 (candidate 0 positive); d(c0,c1) = 1.5, d(c0,c2) = 2.5.
    d_ac = torch.tensor([[1.0, 2.0, 3.0]])
    d_cc = torch.tensor([[[0.0, 1.5, 2.5], [1.5, 0.0, 0.7], [2.5, 0.7, 0.0]]])
    return d_ac, d_cc, torch.tensor([0])


def test_rdsm_eq15_for_given_distances():
    d_ac, d_cc, label = _dists_k3()
    t_anchor = max(math.exp(1.2 - 2) * math.exp(1 - 2), math.exp(1.2 - 3) * math.exp(1 - 3))
    t_pos = max(math.exp(1.2 - 1.5) * math.exp(1 - 1.5), math.exp(1.2 - 2.5) * math.exp(1 - 2.5))
    d = 10 * math.log(1 + 4 * (t_anchor + t_pos)) + 1.0
    assert losses.rdsm_from_distances(d_ac, d_cc, label).item() == pytest.approx(d / 2, rel=1e-6)


def test_rdsm_all_equal_embeddings_matches_reference_numbers():
    # All distances 0, K = 2: paper mu2 = 4 -> 10 ln(1 + 8 e^1.2) / 2 = 16.58; code mu2 = 10 -> 21.053.
    anchor = torch.zeros(6, 128)
    cands = torch.zeros(6, 2, 128)
    label = torch.tensor([0, 1, 0, 1, 1, 0])
    assert losses.metric_loss("rdsm", anchor, cands, label).item() == pytest.approx(16.58, abs=5e-3)
    assert losses.metric_loss("rdsm", anchor, cands, label, mu2=10.0).item() == pytest.approx(21.053, abs=5e-3)


def test_rdsm_is_finite_for_far_apart_and_very_close_embeddings():
    d_ac = torch.tensor([[0.0, 500.0], [300.0, 0.0]])
    d_cc = torch.tensor([[[0.0, 500.0], [500.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    value = losses.rdsm_from_distances(d_ac, d_cc, torch.tensor([0, 0]))
    assert torch.isfinite(value)


def test_structure_lifted_triplet_for_given_distances():
    d_ac, d_cc, label = _dists_k3()
    sm = 1 + math.log(max(math.exp(1.2 - 2), math.exp(1.2 - 3)) + max(math.exp(1.2 - 1.5), math.exp(1.2 - 2.5)))
    lifted = 1 + math.log(math.exp(1.2 - 2) + math.exp(1.2 - 3) + math.exp(1.2 - 1.5) + math.exp(1.2 - 2.5))
    trip = (max(1 - 2 + 1.2, 0) + max(1 - 3 + 1.2, 0)) / 2
    assert losses.structure_metric_from_distances(d_ac, d_cc, label).item() == pytest.approx(sm / 2, rel=1e-6)
    assert losses.lifted_structure_from_distances(d_ac, d_cc, label).item() == pytest.approx(lifted**2 / 2, rel=1e-6)
    assert losses.triplet_from_distances(d_ac, d_cc, label).item() == pytest.approx(trip, rel=1e-6)


def test_metric_loss_distances_from_embeddings_and_errors():
    anchor = torch.tensor([[0.0, 0.0]])
    cands = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])  # d_a0 = 5, d_a1 = 1, d(c0, c1) = sqrt(18)
    trip = losses.metric_loss("triplet", anchor, cands, torch.tensor([1]))
    assert trip.item() == pytest.approx(max(1 - 5 + 1.2, 0))
    trip0 = losses.metric_loss("triplet", anchor, cands, torch.tensor([0]))
    assert trip0.item() == pytest.approx(5 - 1 + 1.2, rel=1e-5)
    with pytest.raises(ValueError, match="allowed"):
        losses.metric_loss("arcface", anchor, cands, torch.tensor([0]))
    assert losses.metric_loss("none", anchor, cands, torch.tensor([0])).item() == 0.0


def test_verification_contrastive_pulls_matches_and_pushes_close_non_matches():
    anchor = torch.zeros(2, 2)
    cands = torch.tensor([[[0.6, 0.8]], [[0.3, 0.4]]])  # distances 1.0 and 0.5
    value = losses.metric_loss("rdsm", anchor, cands, torch.tensor([1, 0]))
    assert value.item() == pytest.approx(0.5 * (1.0 + (1.2 - 0.5)) / 2, rel=1e-5)


def test_modality_loss_eq12_sums_over_tuple_members():
    torch.manual_seed(0)
    la, lc = torch.randn(3, 2), torch.randn(3, 4, 2)
    logp_a, logp_c = la.log_softmax(-1), lc.log_softmax(-1)
    # v2f: anchor voice (1), candidates faces (0).
    expected = -(logp_a[:, 1] + logp_c[:, :, 0].sum(1)).mean()
    assert losses.modality_loss(la, lc, 1).item() == pytest.approx(expected.item(), rel=1e-6)
    flipped = -(logp_a[:, 0] + logp_c[:, :, 1].sum(1)).mean()
    assert losses.modality_loss(la, lc, 1, flip=True).item() == pytest.approx(flipped.item(), rel=1e-6)


def test_counterfactual_loss_eq22_and_positivity_choices():
    p_cp = torch.tensor([[0.7, 0.3]])
    p_cn = torch.tensor([[0.2, 0.8]])
    label = torch.tensor([0])
    assert losses.counterfactual_loss(p_cp, p_cn, label, 1.0, "clamp").item() == pytest.approx(-math.log(0.5), rel=1e-6)
    assert losses.counterfactual_loss(p_cp, p_cn, label, 1.0, "softplus", beta=10).item() == pytest.approx(
        -math.log(0.5), abs=2e-3
    )
    assert losses.counterfactual_loss(p_cp, p_cn, label, 0.0, "clamp").item() == pytest.approx(-math.log(0.7), rel=1e-6)
    # Argument below zero (w = 2): clamp saturates with no gradient; softplus stays finite with a gradient.
    x = torch.tensor([[0.3, 0.7]], requires_grad=True)
    losses.counterfactual_loss(x, torch.tensor([[0.5, 0.5]]), label, 2.0, "clamp").backward()
    assert x.grad.abs().sum() == 0
    x.grad = None
    value = losses.counterfactual_loss(x, torch.tensor([[0.5, 0.5]]), label, 2.0, "softplus", beta=10)
    value.backward()
    assert torch.isfinite(value) and x.grad[0, 0] < 0
    z_cp, z_cn = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    logit = losses.counterfactual_loss(p_cp, p_cn, label, 1.0, "logit", logits_cp=z_cp, logits_cn=z_cn)
    assert logit.item() == pytest.approx(F.cross_entropy(z_cp - z_cn, label).item())
    with pytest.raises(ValueError, match="allowed"):
        losses.counterfactual_loss(p_cp, p_cn, label, 1.0, "exp")


def test_rdsm_pushes_negatives_at_initialisation_only_on_unit_distances():
    """What RDSM is for: pull the positive *and* push the negatives. The log term is a softplus of
    theta + ln mu2 + d_0p - 2 d_0j; at initialisation the 128-d tanh embeddings are ~10 apart, where
    the printed (raw) form's push is ~4 % of its pull, so training starts by shrinking every
    embedding. On unit vectors (the default) it is 1.8x the pull."""
    torch.manual_seed(0)
    h = torch.randn(256, 3, 128).tanh()  # anchor, positive, negative as at init
    label = torch.zeros(256, dtype=torch.long)
    ratios = {}
    for space in ("raw", "unit"):
        e = torch.nn.functional.normalize(h, dim=-1) if space == "unit" else h
        d_ac, d_cc = losses.tuple_distances(e[:, 0], e[:, 1:])
        d_ac.requires_grad_()
        d_cc.requires_grad_()
        losses.rdsm_from_distances(d_ac, d_cc, label).backward()
        pull = d_ac.grad[:, 0].mean()
        push = -(d_ac.grad[:, 1] + d_cc.grad[:, 0, 1] + d_cc.grad[:, 1, 0]).mean()
        ratios[space] = (push / pull).item()
    assert ratios["raw"] < 0.1 and ratios["unit"] > 1.0, ratios  # measured 0.04 and 1.8
    anchor, cands = h[:, 0], h[:, 1:]
    unit = losses.metric_loss("rdsm", anchor, cands, label)
    normed = losses.metric_loss(
        "rdsm",
        torch.nn.functional.normalize(anchor, dim=-1),
        torch.nn.functional.normalize(cands, dim=-1),
        label,
        rdsm_distance="raw",
    )
    assert unit.item() == pytest.approx(normed.item(), rel=1e-6)
    with pytest.raises(ValueError, match="rdsm_distance"):
        losses.metric_loss("rdsm", anchor, cands, label, rdsm_distance="cosine")
