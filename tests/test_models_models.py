"""Whole-model behaviour on tiny CPU configs: shapes, gradients, parameter groups, eval invariance."""

import pytest
import torch

from models import build_model, from_dense, tiny_overrides
from models.registry import DEFAULTS

NAMES = ("baseline", "aicanet", "bianet")
FACE, MELS, FRAMES = 48, 40, 81


def tiny(name, k=2, **extra):
    torch.manual_seed(0)
    return build_model({"name": name, "num_candidates": k, "total_epochs": 10, **tiny_overrides(name), **extra})


def dense_batch(b, k, direction, seed=0):
    g = torch.Generator().manual_seed(seed)
    faces = torch.rand(b * k if direction == "v2f" else b, 3, FACE, FACE, generator=g) * 2 - 1
    voices = torch.randn(b if direction == "v2f" else b * k, 1, MELS, FRAMES, generator=g)
    if direction == "v2f":
        anchor, cands = voices, faces.view(b, k, 3, FACE, FACE)
    else:
        anchor, cands = faces, voices.view(b, k, 1, MELS, FRAMES)
    label = torch.randint(0, 2 if k == 1 else k, (b,), generator=g)
    return from_dense(anchor, cands, direction, label)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [1, 2, 10])
@pytest.mark.parametrize("direction", ["v2f", "f2v"])
def test_output_shapes_and_finite_loss(name, k, direction):
    model = tiny(name, k)
    batch = dense_batch(3, k, direction)
    out = model(batch)
    assert out["logits"].shape == ((3,) if k == 1 else (3, k))
    assert out["h_anchor"].shape == (3, 128) and out["h_cand"].shape == (3, k, 128)
    terms = model.loss(out, batch, epoch=2.5)
    assert {"total", "disc_total", "cls", "metric", "adv"} <= set(terms)
    assert all(torch.isfinite(v).all() for v in terms.values())
    assert model.predict(batch).shape == out["logits"].shape


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_cover_every_parameter_exactly_once(name):
    model = tiny(name)
    groups = model.param_groups()
    assert set(groups) == {"face_encoder", "voice_encoder", "generator", "discriminator", "classifier", "attention"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert all(p.requires_grad for p in model.parameters())  # full models freeze nothing
    assert (len(groups["attention"]) == 0) == (name == "baseline")


@pytest.mark.parametrize("name", NAMES)
def test_main_objective_reaches_every_module_and_never_the_discriminator(name):
    model = tiny(name)
    batch = dense_batch(4, 2, "v2f")
    # epoch 3 of 10: BIANet's w = 1 - cos(0.3 pi) != 1 (at w = 1 the classifier bias cancels in z_cp - w z_cn)
    terms = model.loss(model(batch), batch, epoch=3.0)
    terms["total"].backward(retain_graph=True)
    groups = model.param_groups()
    for group, params in groups.items():
        for p in params:
            if group == "discriminator":
                assert p.grad is None, "total must not train the discriminator"
            else:
                assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient in {group}"
    model.zero_grad(set_to_none=True)
    terms["disc_total"].backward()
    for group, params in groups.items():
        for p in params:
            if group == "discriminator":
                assert p.grad is not None and p.grad.abs().sum() > 0
            else:
                assert p.grad is None, f"disc_total leaked into {group}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("direction", ["v2f", "f2v"])
def test_eval_scores_do_not_depend_on_the_rest_of_the_batch(name, direction):
    model = tiny(name, 3)
    batch = dense_batch(6, 3, direction, seed=1)
    model.train()
    model(batch)  # move BN running stats away from their init
    full = model.predict(batch)
    assert model.training  # predict restores the mode
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    permuted = dict(
        batch,
        anchor_index=batch["anchor_index"][perm],
        candidate_index=batch["candidate_index"][perm],
        label=batch["label"][perm],
    )
    torch.testing.assert_close(model.predict(permuted), full[perm], rtol=1e-5, atol=1e-6)
    half = dict(
        batch,
        anchor_index=batch["anchor_index"][:2],
        candidate_index=batch["candidate_index"][:2],
        label=batch["label"][:2],
    )
    torch.testing.assert_close(model.predict(half), full[:2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_indexed_batch_with_shared_items_equals_the_dense_batch(name):
    model = tiny(name, 2).eval()
    g = torch.Generator().manual_seed(3)
    voices = torch.randn(2, 1, MELS, FRAMES, generator=g)
    faces = torch.rand(3, 3, FACE, FACE, generator=g)
    indexed = {
        "direction": "v2f",
        "voices": voices,
        "faces": faces,
        "anchor_index": torch.tensor([0, 0, 1]),
        "candidate_index": torch.tensor([[0, 1], [2, 0], [1, 2]]),
        "label": torch.tensor([0, 1, 0]),
    }
    dense = from_dense(voices[indexed["anchor_index"]], faces[indexed["candidate_index"]], "v2f", indexed["label"])
    torch.testing.assert_close(model.predict(indexed), model.predict(dense), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_training_step_is_deterministic_under_a_fixed_seed(name):
    def run():
        model = tiny(name)
        batch = dense_batch(4, 2, "f2v")
        torch.manual_seed(123)
        terms = model.loss(model(batch), batch, epoch=3.0)
        return {k: v.detach() for k, v in terms.items()}

    a, b = run(), run()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_bianet_test_time_weight_comes_from_the_last_trained_epoch_and_survives_checkpoints():
    model = tiny("bianet")
    batch = dense_batch(3, 2, "v2f")
    model.train()
    model.loss(model(batch), batch, epoch=5.0)  # N = 10 -> w = 1
    assert float(model.trained_epoch) == 5.0
    out = model.eval()(batch)
    torch.testing.assert_close(out["logits"], out["logits_cp"] - 1.0 * out["logits_cn"])  # logit form
    prob_form = tiny("bianet", cf_positivity="softplus")
    prob_form.load_state_dict(model.state_dict())
    out = prob_form.eval()(batch)
    p_cp, p_cn = out["logits_cp"].softmax(1), out["logits_cn"].softmax(1)
    torch.testing.assert_close(out["logits"], p_cp - 1.0 * p_cn)  # Eq. 22 form
    clone = tiny("bianet")
    clone.load_state_dict(model.state_dict())
    assert float(clone.trained_epoch) == 5.0
    torch.testing.assert_close(clone.predict(batch), model.predict(batch))


@pytest.mark.parametrize("name", NAMES)
def test_a_training_step_validates_the_batch_once(name, monkeypatch):
    """forward() hands its checked index to loss(): check_batch's range checks are host syncs on GPU."""
    import models.base

    calls = []
    real = models.base.check_batch
    monkeypatch.setattr(models.base, "check_batch", lambda batch, **kw: calls.append(1) or real(batch, **kw))
    model = tiny(name)
    batch = dense_batch(3, 2, "v2f")
    terms = model.loss(model(batch), batch, epoch=1.0)
    assert len(calls) == 1 and torch.isfinite(terms["total"])
    unlabelled = {k: v for k, v in batch.items() if k != "label"}
    model.loss(model(unlabelled), batch, epoch=1.0)  # forward saw no label: loss checks the batch itself
    assert len(calls) == 3
    with pytest.raises(ValueError, match="needs batch"):
        model.loss(model(unlabelled), unlabelled, epoch=1.0)


def test_bianet_constant_weight_is_the_same_at_train_and_test_time():
    model = tiny("bianet", cf_schedule="constant", cf_constant_weight=0.7)
    assert model.cf_weight(3.0) == 0.7 and float(model.cf_weight(torch.tensor(3.0))) == pytest.approx(0.7)
    out = model.eval()(dense_batch(3, 2, "v2f"))
    torch.testing.assert_close(out["logits"], out["logits_cp"] - 0.7 * out["logits_cn"])


def test_bianet_cf_weight_is_a_tensor_for_a_tensor_epoch_also_without_nia():
    model = tiny("bianet", nia=False)
    w = model.cf_weight(model.trained_epoch)
    assert isinstance(w, torch.Tensor) and w.shape == () and float(w) == 0.0
    assert model.cf_weight(3.0) == 0.0


def test_bianet_eval_is_deterministic_and_training_uses_dropkey():
    model = tiny("bianet", dropkey_p=0.5)
    batch = dense_batch(3, 2, "v2f")
    model.eval()
    torch.testing.assert_close(model(batch)["logits"], model(batch)["logits"])
    model.train()
    torch.manual_seed(1)
    a = model(batch)["h_anchor_neg"]
    torch.manual_seed(2)
    b = model(batch)["h_anchor_neg"]
    assert not torch.allclose(a, b)


def test_config_errors_name_the_key_and_the_allowed_values():
    with pytest.raises(ValueError, match="learning_rate.*allowed keys"):
        build_model({"name": "baseline", "learning_rate": 1})
    with pytest.raises(ValueError, match="cbp_dim"):
        build_model({"name": "bianet", "cbp_dim": 10})
    with pytest.raises(ValueError, match="allowed"):
        build_model({"name": "resnet"})
    with pytest.raises(ValueError, match="metric_loss"):
        build_model({"name": "aicanet", "metric_loss": "arcface"})
    with pytest.raises(ValueError, match="aca_epsilon"):
        build_model({"name": "aicanet", "aca_epsilon": 2.0})
    with pytest.raises(ValueError, match="num_candidates"):
        build_model({"name": "baseline", "num_candidates": 0})
    with pytest.raises(ValueError, match="face_backbone.preset"):
        build_model({"name": "baseline", "face_backbone": "vgg"})
    with pytest.raises(ValueError, match="rel_loss"):
        build_model({"name": "aicanet", "first_order": False})
    with pytest.raises(ValueError, match="channels"):
        build_model({"name": "baseline", "face_backbone": "tiny", "voice_backbone": "seresnet34"})
    with pytest.raises(ValueError, match=r"stem_strides entries must be \[height, width\] pairs"):
        build_model(
            {
                "name": "baseline",
                "face_backbone": "tiny",
                "voice_backbone": {"preset": "tiny", "stem_strides": [[1, 2, 2]]},
            }
        )
    with pytest.raises(ValueError, match="patch"):
        build_model(
            {"name": "baseline", "face_backbone": {"preset": "vit_tiny", "patch": [16]}, "voice_backbone": "tiny"}
        )


def test_complete_config_is_stored_on_the_model():
    model = tiny("aicanet")
    assert set(model.cfg) == set(DEFAULTS["aicanet"])
    assert model.cfg["mu2"] == 4.0 and model.cfg["delta"] == 10.0 and model.cfg["tau"] == 5.0


def test_bad_batches_get_clear_errors():
    model = tiny("baseline")
    batch = dense_batch(2, 2, "v2f")
    with pytest.raises(ValueError, match="direction"):
        model(dict(batch, direction="x2y"))
    with pytest.raises(ValueError, match="out of range"):  # the first batch's ranges are checked
        model(dict(batch, candidate_index=batch["candidate_index"] + 10))
    with pytest.raises(ValueError, match="voices"):
        model({k: v for k, v in batch.items() if k != "voices"})
    with pytest.raises(ValueError, match="K=2"):
        model(dense_batch(2, 3, "v2f"))


def test_face_pretrained_missing_file_and_roundtrip(tmp_path):
    with pytest.raises(FileNotFoundError, match="face_pretrained"):
        build_model({"name": "baseline", "face_pretrained": str(tmp_path / "none.pth")})
    from torchvision.models import resnet18

    torch.manual_seed(7)
    net = resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    model = build_model({"name": "baseline", "face_pretrained": str(path), "voice_backbone": "light"})
    torch.testing.assert_close(model.face_encoder.body[0].weight, net.conv1.weight)
    torch.testing.assert_close(model.face_encoder.body[7][1].conv2.weight, net.layer4[1].conv2.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises((ValueError, RuntimeError)):
        build_model({"name": "baseline", "face_pretrained": str(bad), "voice_backbone": "light"})


def test_face_pretrained_imagenet_reads_the_torch_hub_cache_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("face_pretrained must never download")
    )
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth.*IMAGENET1K_V1"):
        build_model({"name": "baseline", "face_pretrained": "imagenet", "voice_backbone": "light"})
    from torchvision.models import resnet18

    torch.manual_seed(3)
    net = resnet18(weights=None)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(net.state_dict(), cache / "resnet18-f37072fd.pth")
    model = build_model({"name": "baseline", "face_pretrained": "imagenet", "voice_backbone": "light"})
    torch.testing.assert_close(model.face_encoder.body[0].weight, net.conv1.weight)


def test_backbone_and_head_sizes_match_the_reference_implementation():
    # docs/REFERENCES.md#a11: ResNet-18 trunk without fc 11,176,512; the authors' [2,2,2,2]
    # audio net without its dead embedders 11,190,384; generator MLP 1,213,568.
    model = build_model({"name": "baseline", "voice_backbone": "light"})
    count = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
    groups = model.param_groups()
    assert count(groups["face_encoder"]) == 11_176_512
    assert count(groups["voice_encoder"]) == 11_190_384
    assert count(groups["generator"]) == 1_213_568
    se = build_model({"name": "baseline"}).voice_encoder
    assert sum(isinstance(m, torch.nn.Module) and type(m).__name__ == "SqueezeExcitation" for m in se.modules()) == 16


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [1, 2])
def test_a_single_tuple_batch_trains_without_crashing(name, k):
    model = tiny(name, k).train()
    batch = dense_batch(1, k, "v2f")
    terms = model.loss(model(batch), batch, epoch=0.5)
    (terms["total"] + terms["disc_total"]).backward()
    assert torch.isfinite(terms["total"])


def test_cli_prints_the_complete_config_and_rejects_unknown_keys(capsys):
    from models.__main__ import main

    counts = main(["--ablation", "bianet_t6_eps_0.1", "--tiny", "--set", "num_candidates=3"])
    printed = capsys.readouterr().out
    assert '"epsilon": 0.1' in printed and '"num_candidates": 3' in printed and counts["attention"] > 0
    with pytest.raises(SystemExit):
        main(["--name", "baseline", "--set", "cbp_dim=3"])
    assert "cbp_dim" in capsys.readouterr().err


def test_resnet18_maps_contract_faces_to_imagenet_statistics():
    from models.backbones import FaceResNet18

    net = FaceResNet18().eval()
    seen = {}
    net.body[0].register_forward_pre_hook(lambda m, inp: seen.update(x=inp[0]))
    faces = torch.rand(1, 3, 32, 32) * 2 - 1  # (x/255 - 0.5)/0.5
    net(faces)
    pixels = (faces + 1) / 2
    expected = (pixels - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[
        :, None, None
    ]
    torch.testing.assert_close(seen["x"], expected)
    plain = build_model(
        {"name": "baseline", "face_backbone": {"preset": "resnet18", "imagenet_norm": False}, "voice_backbone": "light"}
    )
    assert plain.face_encoder.imagenet_norm is False


def test_index_ranges_are_checked_on_the_first_batch_or_with_the_debug_switch(monkeypatch):
    """Range checks read values on the host (a GPU sync), so only a model's first batch gets them;
    VOXFACE_CHECK_BATCHES=1 checks every batch. Later bad indices still fail, less kindly."""
    model = tiny("baseline")
    batch = dense_batch(2, 2, "v2f")
    model(batch)
    bad = dict(batch, candidate_index=batch["candidate_index"] + 10)
    with pytest.raises(IndexError):
        model(bad)
    monkeypatch.setenv("VOXFACE_CHECK_BATCHES", "1")
    with pytest.raises(ValueError, match="out of range"):
        model(bad)
