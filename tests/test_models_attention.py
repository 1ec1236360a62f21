"""The attention modules of AICANet and BIANet, called as modules on small hand-computed cases.

Each test states what the equation is *for* and checks the module does it: a threshold
suppresses, a weak branch attends to the weak channels, a branch carries information.
"""

import math

import pytest
import torch

import models
from models.bianet import IntervenedAttention, strong_logits, weak_logits

R = 2**-0.5


def identity_conv_(conv: torch.nn.Conv2d) -> None:
    """Make a 1x1 conv the identity map (channels in == out)."""
    with torch.no_grad():
        conv.weight.copy_(torch.eye(conv.weight.shape[0])[:, :, None, None])


def three_channel_map() -> torch.Tensor:
    """x [1, 3, 1, 2]: channels (1, 0), (1, 1), (-1, 0) over two positions.

    Their cosines: A = [[1, r, -1], [r, 1, -r], [-1, -r, 1]] with r = 1/sqrt(2).
    """
    return torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]).view(1, 3, 1, 2)


def bianet_block(**overrides) -> IntervenedAttention:
    cfg = models.resolve_config({"name": "bianet", "attn_channels": 3, "se_reduction": 1, **overrides})
    block = IntervenedAttention(cfg, 3).eval()
    for conv in (block.query, block.key, block.value):
        identity_conv_(conv)
    return block


# ---------------------------------------------------------------- BIANet PIA (Eqs. 9, 10, 12, 14)

A = torch.tensor([[1, R, -1], [R, 1, -R], [-1, -R, 1]])


def gated_softmax(logits: torch.Tensor, gate_arg: torch.Tensor, width: float = 0.02) -> torch.Tensor:
    """Hand form of the threshold gate: weights proportional to exp(logits) * sigmoid(gate_arg / width)."""
    w = torch.exp(logits - logits.max()) * torch.sigmoid(gate_arg / width)
    return w / w.sum()


def test_pia_attends_only_to_channels_above_the_threshold():
    block = bianet_block(epsilon=0.5, nia=False)
    with torch.no_grad():
        maps = block.attention_maps(three_channel_map())
    torch.testing.assert_close(maps["a"][0], A)
    for row in range(3):  # exp(10 A) gated by sigmoid((A - 0.5) / 0.02)
        torch.testing.assert_close(maps["pia"][0, row], gated_softmax(10 * A[row], A[row] - 0.5))
    # Row 0 keeps channels 0 and 1 (A = 1, r >= 0.5) in the ratio e^10 : e^(10 r); row 2 only itself.
    assert maps["pia"][0, 0, 1] / maps["pia"][0, 0, 0] == pytest.approx(math.exp(10 * R - 10), rel=1e-3)
    assert maps["pia"][0, 2, 2] > 1 - 1e-6
    assert maps["pia"][0][maps["a"][0] < 0.5].max() < 1e-9  # the four entries below 0.5


def test_pia_threshold_lowers_the_weak_entries_mass_and_the_printed_clamp_raises_it():
    """What Eq. 10 is for: the strong part must get *less* of the weak channels than no threshold."""
    torch.manual_seed(0)
    q, k = (torch.nn.functional.normalize(torch.randn(64, 32, 9), dim=-1) for _ in range(2))
    a = q @ k.transpose(1, 2)  # query / key projections differ: no unit diagonal
    for eps_value in (0.1, 0.2):
        eps = torch.full((64, 32, 1), eps_value)
        weak = a < eps
        plain = torch.softmax(10 * a, -1)[weak].sum() / 64 / 32
        clamp = torch.softmax(strong_logits(a, eps, 10.0, "clamp", 0.02), -1)[weak].sum() / 64 / 32
        gated = torch.softmax(strong_logits(a, eps, 10.0, "gate", 0.02), -1)[weak].sum() / 64 / 32
        # measured at eps 0.1 / 0.2: no threshold 1.0 % / 2.8 %, clamp 5.3 % / 14.2 %, gate 0.13 % / 0.36 %
        assert clamp > 3 * plain  # the printed clamp lifts them
        assert gated < 0.2 * plain  # the default suppresses them


def test_pia_output_is_the_eq14_fusion_of_the_attended_values():
    block = bianet_block(epsilon=0.9, nia=False)
    x = three_channel_map()
    pos, neg = block(x)
    assert neg is None
    # eps = 0.9: every row keeps only itself, so X^ = V = X; Eq. 14 with the SE mask m.
    dec = block.decode_pos(x)
    m = block.mask(dec)
    expected = (1 - m) * x + m * torch.nn.functional.instance_norm(dec, eps=1e-5)
    torch.testing.assert_close(pos, expected)


# ---------------------------------------------------------------- BIANet NIA (Eqs. 11, 15, 17-19)


def test_nia_attends_to_the_weak_channels():
    block = bianet_block(epsilon=0.5, pia=False)
    with torch.no_grad():
        maps = block.attention_maps(three_channel_map())
    # A < 0.5: row 0 -> {2}, row 1 -> {2}, row 2 -> {0, 1} with equal weakness A~ = eps (A < 0).
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    torch.testing.assert_close(maps["nia"][0], expected, atol=1e-6, rtol=0)
    weakness = torch.relu(-(torch.relu(A) - 0.5)) / 0.5  # Eq. 11 over eps
    for row in range(3):
        torch.testing.assert_close(maps["nia"][0, row], gated_softmax(10 * weakness[row], 0.5 - A[row]))


def test_weak_logits_scale_with_weakness_not_with_eps():
    a = torch.tensor([[[0.9, 0.05, 0.0, -0.3]]])
    for eps_value in (0.1, 0.2):
        eps = torch.full((1, 1, 1), eps_value)
        logits, keep = weak_logits(a, eps, 10.0, "normalized", 0.02)
        weakness = torch.relu(-(torch.relu(a) - eps)) / eps_value  # Eq. 11 over eps, in [0, 1]
        gate = torch.nn.functional.logsigmoid((eps_value - a) / 0.02)
        torch.testing.assert_close(logits, 10 * weakness + gate)
        assert logits[0, 0, 0] < -30  # the strong entry: gated out
        assert keep[0, 0].tolist() == [False, False, False, True]  # the weakest is never dropped
    literal, _ = weak_logits(a, torch.full((1, 1, 1), 0.1), 10.0, "literal", 0.02)
    torch.testing.assert_close(literal, torch.tensor([[[0.0, 0.05, 0.1, 0.1]]]))


def _mean_offdiag_abs_corr(features: torch.Tensor) -> float:
    f = features.flatten(2)
    f = f - f.mean(-1, keepdim=True)
    f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    corr = (f @ f.transpose(1, 2)).abs()
    off = ~torch.eye(corr.shape[-1], dtype=torch.bool)
    return corr[:, off].mean().item()


def test_nia_output_carries_more_than_one_map_per_item():
    """The printed softmax(A~ + d) averages all channels: every output channel is +- one map."""
    torch.manual_seed(0)
    x = torch.randn(8, 64, 5, 7)
    for form, check in (("normalized", lambda c: c < 0.9), ("literal", lambda c: c > 0.99)):
        cfg = models.resolve_config({"name": "bianet", **models.tiny_overrides("bianet"), "nia_form": form})
        torch.manual_seed(1)
        block = IntervenedAttention(cfg, 64).eval()
        with torch.no_grad():
            _, neg = block(x)
        corr = _mean_offdiag_abs_corr(neg)
        assert check(corr), f"{form}: mean off-diagonal |corr| of the NIA channels = {corr:.3f}"


def test_counterfactual_score_differs_from_the_pia_score_alone():
    """With w = 1 the reverse prediction must change decisions, not only shift every logit."""
    torch.manual_seed(0)
    cfg = {"name": "bianet", **models.tiny_overrides("bianet"), "cf_schedule": "constant", "num_candidates": 2}
    model = models.build_model(cfg).eval()
    batch = models.from_dense(torch.randn(64, 1, 40, 41), torch.randn(64, 2, 3, 64, 64).clamp(-1, 1), "v2f")
    with torch.no_grad():
        out = model(batch)
    margin_cp = out["logits_cp"][:, 0] - out["logits_cp"][:, 1]
    margin_cn = out["logits_cn"][:, 0] - out["logits_cn"][:, 1]
    assert margin_cn.std() > 0.2 * margin_cp.std()
    torch.testing.assert_close(out["logits"], out["logits_cp"] - out["logits_cn"])


def test_dropkey_never_empties_a_nia_row():
    block = bianet_block(epsilon=0.5, pia=False, dropkey_p=0.99).train()
    for _ in range(20):
        weights = block.attention_maps(three_channel_map())["nia"]
        assert torch.isfinite(weights).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, 3))


@pytest.mark.parametrize("overrides", [{}, {"nia": False}, {"pia": False}])
def test_every_trainable_bianet_attention_parameter_gets_a_gradient(overrides):
    torch.manual_seed(0)
    cfg = models.resolve_config({"name": "bianet", **models.tiny_overrides("bianet"), **overrides})
    block = IntervenedAttention(cfg, 16).train()
    pos, neg = block(torch.randn(4, 16, 3, 5))
    loss = pos.square().mean() + (neg.square().mean() if neg is not None else 0) + pos.mean()
    loss.backward()
    for name, p in block.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- AICANet AIA / ACA (Eqs. 3-11)


def aicanet_block(**overrides):
    from models.aicanet import InteractionCorrection

    cfg = models.resolve_config(
        {"name": "aicanet", "attn_channels": 2, "se_reduction": 1, "cbp_dim": 16, "relevance_hidden": 4, **overrides}
    )
    block = InteractionCorrection(cfg, 2).eval()
    for conv in (*block.shared.values(), *block.private.values(), block.decode_inter, *block.decode_intra.values()):
        identity_conv_(conv)
    return block


def one_hot_maps(positions) -> torch.Tensor:
    """[1, 2, 3, 3]: channel c is 1 at `positions[c]` (of 9) and 0 elsewhere."""
    x = torch.zeros(1, 2, 9)
    for c, p in enumerate(positions):
        x[0, c, p] = 1.0
    return x.view(1, 2, 3, 3)


class FixedRelevance(torch.nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, q_voice, q_face):
        return torch.full((q_voice.shape[0],), self.value)


@pytest.mark.parametrize("relevance", [0.7, -0.7])
def test_relevance_guided_cross_modal_attention_eqs_3_to_6(relevance):
    """E (Eq. 3) correlates voice channel i with face channel j over the pooled positions; sign(R)
    (Eq. 4) decides whether a channel gathers its correlated (R > 0) or anti-correlated (R < 0)
    partners; softmax(delta E) f (Eq. 6) applies that to the pair's own shared map."""
    block = aicanet_block(aca=False, self_support=False)
    block.relevance = FixedRelevance(relevance)
    voice, face = one_hot_maps([0, 4]), one_hot_maps([0, 4])  # E = identity (channel i ~ channel i)
    idx = torch.tensor([0])
    with torch.no_grad():
        dec_v, dec_f, r = block.pairs(voice, face, idx, idx)
    assert r.tolist() == pytest.approx([relevance])
    own, other = torch.softmax(torch.tensor([10.0, 0.0]) * math.copysign(1, relevance), 0)
    v = voice.flatten(2)[0]
    expected = torch.stack([own * v[0] + other * v[1], other * v[0] + own * v[1]])
    torch.testing.assert_close(dec_v.flatten(2)[0], expected)
    torch.testing.assert_close(dec_f.flatten(2)[0], expected)  # the face side uses E^T (here E)


def test_self_support_eq7():
    from models.aicanet import InteractionCorrection

    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # f: 2 channels x 2 positions
    key = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])  # the first-order output
    logits = torch.tensor([[0.0, 1.0], [2.0, 2.0]]) / math.sqrt(2)  # f key^T / sqrt(P)
    expected = torch.softmax(logits, -1) @ s[0]
    torch.testing.assert_close(InteractionCorrection._self_support(s, key)[0], expected)


def _constant_mask_(mask, value: float) -> None:
    with torch.no_grad():
        mask.fc2.weight.zero_()
        mask.fc2.bias.fill_(math.log(value / (1 - value)))


def test_dynamic_estimation_fusion_eq8():
    block = aicanet_block()
    _constant_mask_(block.mask_inter, 0.2)
    _constant_mask_(block.mask_intra, 0.3)
    torch.manual_seed(0)
    x, inter, intra = torch.randn(3, 1, 2, 4, 4).unbind(0)
    norm = lambda t: (t - t.mean((2, 3), keepdim=True)) / (t.var((2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()  # noqa: E731
    expected = (1 - 0.2 - 0.3) * x + 0.2 * norm(inter) + 0.3 * norm(intra)
    torch.testing.assert_close(block.fuse(x, inter, intra), expected, atol=1e-5, rtol=1e-5)
    plain = aicanet_block(def_fusion=False)  # Table VII "without DEF": a plain skip
    torch.testing.assert_close(plain.fuse(x, inter, intra), x + norm(inter) + norm(intra), atol=1e-5, rtol=1e-5)


def test_aca_gate_suppresses_weak_correlations_eqs_9_to_11():
    """What ACA is for: a correlation weaker than eps must lose attention. The soft threshold of the
    paper's words does the opposite inside a softmax (the strong entries shrink by eps)."""
    from models.attention import thresholded_logits

    e = torch.tensor([[[0.9, 0.05, -0.05, 0.6]]])
    eps = torch.tensor([[[0.1]]])
    weak = torch.tensor([False, True, True, False])
    mass = {
        mode: torch.softmax(thresholded_logits(e, eps, 10.0, mode, 0.02), -1)[0, 0, weak].sum().item()
        for mode in ("gate", "soft", "hard")
    }
    plain = torch.softmax(10 * e, -1)[0, 0, weak].sum().item()
    assert mass["gate"] < 0.1 * plain
    assert mass["soft"] > plain  # shrinking the strong entries lifts the weak
    assert thresholded_logits(e, None, 10.0, "gate", 0.02).equal(10 * e)  # without ACA: identity


def test_intra_modal_corrected_attention_eq11():
    block = aicanet_block(aca_epsilon=0.5)
    x = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]).view(1, 2, 1, 3)  # cos = 1/2 between channels
    with torch.no_grad():
        got = block.intra("voice", x).flatten(2)[0]
    e = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    weights = torch.stack([gated_softmax(10 * e[i], e[i].abs() - 0.5) for i in range(2)])
    torch.testing.assert_close(got, weights @ x.flatten(2)[0])


def test_without_aca_both_branches_stay_and_no_threshold_is_built():
    """Table V (c) "AIA without ACA": eps = 0 (identity), the intra- and inter-modal branches of Eq. 8 stay."""
    block = aicanet_block(aca=False)
    assert not hasattr(block, "inter_threshold") and not hasattr(block, "intra_threshold")
    assert hasattr(block, "mask_intra") and hasattr(block, "decode_intra")
    x = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]).view(1, 2, 1, 3)
    with torch.no_grad():
        got = block.intra("voice", x).flatten(2)[0]
    e = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    torch.testing.assert_close(got, torch.softmax(10 * e, -1) @ x.flatten(2)[0])


def test_aicanet_candidate_features_depend_on_the_anchor_they_are_paired_with():
    """The inter-modal branch carries the pairing: one face fused with two voices differs."""
    torch.manual_seed(0)
    model = models.build_model({"name": "aicanet", **models.tiny_overrides("aicanet")}).eval()
    face = torch.randn(1, 3, 64, 64).clamp(-1, 1)
    voices = torch.randn(2, 1, 40, 41)
    batch = {
        "direction": "v2f",
        "faces": face,
        "voices": voices,
        "anchor_index": torch.tensor([0, 1]),
        "candidate_index": torch.tensor([[0, 0], [0, 0]]),
    }
    with torch.no_grad():
        out = model(batch)
    assert (out["h_cand"][0, 0] - out["h_cand"][1, 0]).abs().max() > 1e-3


@pytest.mark.parametrize("overrides", [{}, {"aca": False}, {"aca_threshold": "soft"}])
def test_every_trainable_aicanet_attention_parameter_gets_a_gradient(overrides):
    torch.manual_seed(0)
    model = models.build_model({"name": "aicanet", **models.tiny_overrides("aicanet"), **overrides}).train()
    batch = models.from_dense(
        torch.randn(4, 1, 40, 41), torch.randn(4, 2, 3, 64, 64).clamp(-1, 1), "v2f", torch.tensor([0, 1, 0, 1])
    )
    terms = model.loss(model(batch), batch, epoch=0.0)
    (terms["total"] + terms["disc_total"]).backward()
    for name, p in model.attention.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- AICANet Table IX alternatives


def test_table_ix_filters_on_hand_computed_matrices():
    from models.attention import FeatureShrinkage, low_rank, lowpass

    e = torch.diag(torch.tensor([3.0, 2.0, 1.0]))[None]
    torch.testing.assert_close(low_rank(e, 1 / 3), torch.diag(torch.tensor([3.0, 0.0, 0.0]))[None])
    torch.testing.assert_close(low_rank(e, 1.0), e)
    flat = torch.full((1, 4, 4), 0.3)
    checker = torch.tensor([[(-1.0) ** (i + j) for j in range(4)] for i in range(4)])[None]
    torch.testing.assert_close(lowpass(flat + checker, 0.25), flat)  # the Nyquist pattern is removed
    shrink = FeatureShrinkage(2)
    for p in shrink.parameters():
        torch.nn.init.zeros_(p)  # tau = 0.5 * mean |x| per channel
    x = torch.tensor([[[2.0, -4.0], [1.0, 0.0]]])
    torch.testing.assert_close(shrink(x), torch.tensor([[[0.5, -2.5], [0.75, 0.0]]]))
