"""CBP, heads and attention blocks against independent hand computations."""

import pytest
import torch

from models.attention import AdaptiveThreshold, channel_affinity, shrink
from models.bianet import dropkey_mask
from models.cbp import CompactBilinearPooling
from models.heads import MatchingClassifier, VerificationHead, classifier_input


def test_cbp_equals_count_sketch_of_the_outer_product():
    torch.manual_seed(0)
    d1, d2, dim, positions = 5, 4, 11, 3
    cbp = CompactBilinearPooling(d1, d2, dim, seed=3)
    x, y = torch.randn(2, d1, positions, dtype=torch.float64), torch.randn(2, d2, positions, dtype=torch.float64)
    got = cbp(x, y)
    h1, s1, h2, s2 = cbp.hash1, cbp.sign1.double(), cbp.hash2, cbp.sign2.double()
    expected = torch.zeros(2, dim, dtype=torch.float64)
    for n in range(2):
        for p in range(positions):
            outer = torch.outer(x[n, :, p], y[n, :, p])
            for i in range(d1):
                for j in range(d2):
                    expected[n, (h1[i] + h2[j]) % dim] += s1[i] * s2[j] * outer[i, j]
    torch.testing.assert_close(got, expected)


def test_cbp_is_deterministic_per_seed_and_checkpointed():
    a, b = CompactBilinearPooling(8, 8, 64, seed=1), CompactBilinearPooling(8, 8, 64, seed=1)
    assert torch.equal(a.sketch1, b.sketch1) and "sketch2" in a.state_dict()
    assert not torch.equal(a.sketch1, CompactBilinearPooling(8, 8, 64, seed=2).sketch1)
    with pytest.raises(ValueError):
        a(torch.randn(2, 8, 3), torch.randn(2, 8, 4))


def test_classifier_input_for_three_candidates():
    h0 = torch.tensor([[0.5, -0.2]])
    hk = torch.tensor([[[0.1, 0.1], [0.5, -0.2], [-0.5, 0.3]]])
    expected = torch.stack([torch.exp(h0[0] - hk[0, j]) for j in range(3)])[None]
    torch.testing.assert_close(classifier_input(h0, hk), expected)


def test_concat_classifier_is_one_linear_map_of_the_k_times_d_concatenation():
    torch.manual_seed(0)
    head = MatchingClassifier(3, embed_dim=4, dropout=0.0).eval()
    h0, hk = torch.randn(2, 4).tanh(), torch.randn(2, 3, 4).tanh()
    x = torch.exp(h0[:, None] - hk).flatten(1)
    expected = x @ head.fc.weight.T + head.fc.bias
    torch.testing.assert_close(head(h0, hk), expected)
    with pytest.raises(ValueError, match="K=3"):
        head(h0, hk[:, :2])
    shared = MatchingClassifier(3, embed_dim=4, dropout=0.0, mode="shared").eval()
    assert shared(h0, torch.randn(2, 7, 4)).shape == (2, 7)  # any K


def test_verification_head_uses_256_dims_and_gives_one_score():
    head = VerificationHead(128, dropout=0.0).eval()
    assert head.fc.weight.shape == (1, 256)
    assert head(torch.zeros(3, 128), torch.zeros(3, 1, 128)).shape == (3,)


def test_adaptive_threshold_eq9_with_zero_fc_is_half_the_row_mean_magnitude():
    layer = AdaptiveThreshold(2)
    for p in layer.parameters():
        torch.nn.init.zeros_(p)
    e = torch.tensor([[[1.0, -3.0], [2.0, 0.0]]])
    torch.testing.assert_close(layer(e), torch.tensor([[[1.0], [0.5]]]))
    fixed = AdaptiveThreshold(2, fixed=0.1)
    assert list(fixed.parameters()) == [] and torch.all(fixed(e) == 0.1)


def test_shrink_soft_and_hard_eq10():
    e = torch.tensor([[[1.0, -3.0], [2.0, 0.0]]])
    eps = torch.tensor([[[1.0], [0.5]]])
    torch.testing.assert_close(shrink(e, eps, "soft"), torch.tensor([[[0.0, -2.0], [1.5, 0.0]]]))
    torch.testing.assert_close(shrink(e, eps, "hard"), torch.tensor([[[1.0, -3.0], [2.0, 0.0]]]))
    torch.testing.assert_close(shrink(e, torch.full_like(eps, 1.5), "hard"), torch.tensor([[[0.0, -3.0], [2.0, 0.0]]]))


def test_bianet_strong_and_weak_parts_eq10_eq11():
    a = torch.tensor([0.5, 0.05, -0.2, 0.1])
    eps = 0.1
    torch.testing.assert_close(torch.maximum(a, torch.tensor(eps)), torch.tensor([0.5, 0.1, 0.1, 0.1]))
    weak = torch.relu(-(torch.relu(a) - eps))
    torch.testing.assert_close(weak, torch.tensor([0.0, 0.05, 0.1, 0.0]))


def test_dropkey_mask_probability_and_diagonal_eq17():
    gen = torch.Generator().manual_seed(0)
    mask = dropkey_mask(torch.Size([200, 32, 32]), 0.3, "cpu", torch.float32, generator=gen)
    off = ~torch.eye(32, dtype=torch.bool)
    dropped = torch.isinf(mask) & off
    assert abs(dropped.float().sum().item() / (200 * off.sum().item()) - 0.3) < 0.01
    assert not torch.isinf(mask.diagonal(dim1=1, dim2=2)).any()
    assert set(mask[~torch.isinf(mask)].unique().tolist()) == {0.0}
    assert torch.isfinite(torch.softmax(mask, -1)).all()


def test_channel_affinity_is_a_per_sample_cosine():
    q = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    k = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    torch.testing.assert_close(channel_affinity(q, k), torch.tensor([[[1.0, 0.0], [2**-0.5, 2**-0.5]]]))


def test_cbp_runs_in_float32_under_bfloat16_autocast():
    cbp = CompactBilinearPooling(4, 4, 16)
    x = torch.randn(2, 4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cbp(x.bfloat16(), x.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, cbp(x.bfloat16().float(), x.bfloat16().float()))


def test_size_tiny_is_one_switch_for_the_cpu_sizes_and_explicit_keys_win():
    from models import TINY, build_model, resolve_config
    from models.ablations import ablation_config

    for name in ("baseline", "aicanet", "bianet"):
        cfg = resolve_config({"name": name, "size": "tiny"})
        assert all(cfg[k] == v for k, v in TINY.items() if k in cfg) and cfg["size"] == "tiny"
        assert resolve_config({"name": name})["face_backbone"] == "resnet18"
    assert resolve_config({"name": "aicanet", "size": "tiny", "attn_channels": 16})["attn_channels"] == 16
    tiny = build_model({"name": "aicanet", "size": "tiny"})
    by_hand = build_model({"name": "aicanet", **{k: v for k, v in TINY.items()}})
    assert tiny.param_counts() == by_hand.param_counts()
    assert ablation_config("bianet_t1_transformer", size="tiny")["face_backbone"] == "vit_tiny"
    with pytest.raises(ValueError, match="model.size='small'"):
        resolve_config({"name": "baseline", "size": "small"})
