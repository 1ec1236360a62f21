"""Optimiser groups, per-module learning rates (AICANet Table I) and the x0.1 milestone schedule."""

import pytest
import torch
from train_fakes import FakeModel

from launch.config import PAPER_LR, validate
from launch.optim import MilestoneDecay, build_optimizers, build_schedulers, current_lrs, split_param_groups


def paper_optim():
    return validate({"model": {"name": "aicanet"}, "data": {"k": 2}})["optim"]


def test_one_adam_group_per_module_with_table_i_rates():
    model = FakeModel({})
    main, disc = build_optimizers(split_param_groups(model.param_groups(), model), paper_optim())
    assert isinstance(main, torch.optim.Adam) and isinstance(disc, torch.optim.Adam)
    lrs = {g["group_name"]: g["lr"] for g in main.param_groups}
    assert lrs == {k: v for k, v in PAPER_LR.items() if k != "discriminator"}
    assert disc.param_groups[0]["lr"] == PAPER_LR["discriminator"] == 5e-3
    for opt in (main, disc):
        for g in opt.param_groups:
            assert g["betas"][0] == 0.9 and g["weight_decay"] == 5e-4
    # The discriminator is stepped only by its own optimiser, everything else only by the main one.
    main_ids = {id(p) for g in main.param_groups for p in g["params"]}
    disc_ids = {id(p) for p in disc.param_groups[0]["params"]}
    assert disc_ids == {id(p) for p in model.discriminator.parameters()}
    assert not main_ids & disc_ids
    assert main_ids | disc_ids == {id(p) for p in model.parameters()}


def test_lr_scale_multiplies_every_group():
    model = FakeModel({})
    cfg = dict(paper_optim(), lr_scale=0.1)
    main, disc = build_optimizers(split_param_groups(model.param_groups(), model), cfg)
    assert {g["group_name"]: g["lr"] for g in main.param_groups} == pytest.approx(
        {k: 0.1 * v for k, v in PAPER_LR.items() if k != "discriminator"}
    )
    assert disc.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_param_group_errors():
    model = FakeModel({})
    groups = model.param_groups()
    with pytest.raises(ValueError, match="in both param groups 'face_encoder' and 'generator'"):
        split_param_groups({**groups, "generator": groups["generator"] + groups["face_encoder"]}, model)
    with pytest.raises(ValueError, match="in no param group"):
        split_param_groups({**groups, "classifier": []}, model)
    with pytest.raises(ValueError, match="unknown group 'decoder'"):
        split_param_groups({**groups, "decoder": []}, model)
    frozen = FakeModel({})
    frozen.voice_encoder.requires_grad_(False)  # frozen parameters are simply not optimised
    assert split_param_groups(frozen.param_groups(), frozen)["voice_encoder"] == []


def test_schedule_matches_table_i_at_every_epoch():
    """Table I: epochs 1-25 -> lr0, 26-40 -> lr0/10, 41-50 -> lr0/100 (1-based epochs)."""
    steps_per_epoch = 7
    model = FakeModel({})
    main, disc = build_optimizers(split_param_groups(model.param_groups(), model), paper_optim())
    schedulers = build_schedulers([main, disc], paper_optim(), steps_per_epoch)
    seen = {}
    for step in range(50 * steps_per_epoch):
        epoch_1_based = step // steps_per_epoch + 1
        seen.setdefault(epoch_1_based, set()).add(round(current_lrs([main, disc])["lr/face_encoder"], 12))
        assert current_lrs([main, disc])["lr/generator"] == pytest.approx(
            current_lrs([main, disc])["lr/face_encoder"] / 10
        )
        main.step(), disc.step()
        for s in schedulers:
            s.step()
    expected = {e: 5e-2 if e <= 25 else 5e-3 if e <= 40 else 5e-4 for e in range(1, 51)}
    assert {e: v.pop() for e, v in seen.items() if len(v) == 1} == pytest.approx(expected)


def test_milestone_decay_is_exact_at_boundaries_and_picklable():
    decay = MilestoneDecay([25, 40], 0.1, steps_per_epoch=3)
    assert decay(25 * 3 - 1) == 1.0 and decay(25 * 3) == pytest.approx(0.1)
    assert decay(40 * 3) == pytest.approx(0.01) and decay(10**6) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        MilestoneDecay([1], 0.1, 0)
    # LambdaLR saves the object's attributes: plain numbers, loadable with weights_only=True.
    model = FakeModel({})
    main, _ = build_optimizers(split_param_groups(model.param_groups(), model), paper_optim())
    sched = build_schedulers([main], paper_optim(), 3)[0]
    state = sched.state_dict()
    assert state["lr_lambdas"][0] == {"milestones": [25.0, 40.0], "gamma": 0.1, "steps_per_epoch": 3.0}
