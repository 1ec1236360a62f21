"""Run under ``accelerate launch --multi_gpu --num_processes 2`` (gloo on CPU) by
tests/test_train_ddp_models.py. For each real model (tiny backbones) it checks the adversarial
step against DDP, then trains a few steps through ``launch.train.train``.

The check: every rank computes, on an undistributed copy of the same weights and its own batch,
``grad(total)`` and ``grad(disc_total)`` separately; the DDP step (``TrainStep``, one backward of
``total + disc_total``) must then leave on every parameter the *mean over ranks* of exactly its
own optimiser's term: ``disc_total``'s gradient on the discriminator, ``total``'s on every other
group. After the optimiser step the weights must be equal on both ranks.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch


def check_adversarial_step(name: str) -> dict:
    from accelerate import Accelerator
    from train_fakes import REAL_SHAPES, FakeLoader

    import models
    from launch.config import validate
    from launch.optim import build_optimizers, split_param_groups
    from launch.trainer.state import AccumulationGroup
    from launch.trainer.step import TrainStep

    accelerator = Accelerator(cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    cfg = validate({"model": {"name": name}, "data": {"k": 2}, "train": {"epochs": 2}})
    torch.manual_seed(0)
    model = models.build_model({**models.tiny_overrides(name), **cfg["model"]})
    reference = copy.deepcopy(model)
    groups = split_param_groups(model.param_groups(), model)
    main_opt, disc_opt = build_optimizers(groups, cfg["optim"])
    batch = FakeLoader({"k": 2, "batch_size": 4, **REAL_SHAPES}, rank, world)._make(0, 0)

    names = [n for n, p in reference.named_parameters() if p.requires_grad]
    disc_names = {n for n in names if n.startswith("discriminator.")}
    params = [p for n, p in reference.named_parameters() if p.requires_grad]
    torch.manual_seed(100 + rank)  # the same dropout masks in both forwards
    terms = reference.loss(reference(batch), batch, 0.5)
    own = {}
    for term in ("total", "disc_total"):
        grads = torch.autograd.grad(terms[term], params, retain_graph=True, allow_unused=True)
        own[term] = {n: torch.zeros_like(p) if g is None else g for n, p, g in zip(names, params, grads)}
    expected = {n: own["disc_total" if n in disc_names else "total"][n] for n in names}
    mean = {n: accelerator.reduce(g.contiguous(), reduction="mean") for n, g in expected.items()}

    prepared, main_opt, disc_opt = accelerator.prepare(model, main_opt, disc_opt)
    step = TrainStep(accelerator, prepared, [main_opt, disc_opt], [], None, groups)
    torch.manual_seed(100 + rank)
    step.accumulate(batch, 0.5, AccumulationGroup(size=1, closes=True))
    core = step.core
    got = {n: p.grad for n, p in core.named_parameters() if p.requires_grad}
    worst = max(float((got[n] - mean[n]).abs().max() / (mean[n].abs().max() + 1e-12)) for n in names)
    disc_moved = max(float(mean[n].abs().max()) for n in disc_names)
    local_differs = max(float((expected[n] - mean[n]).abs().max()) for n in names)
    step.update()
    flat = torch.cat([p.detach().reshape(-1) for p in core.parameters()])
    weights = accelerator.gather(flat[None])
    return {
        "model": name,
        "max_rel_grad_error": worst,
        "disc_grad_max": disc_moved,
        "ranks_grads_differ": local_differs,
        "missing_grads": [n for n in names if got[n] is None],
        "weights_equal_across_ranks": bool(torch.equal(weights[0], weights[-1])),
    }


def train_briefly(name: str, out: Path) -> dict:
    from train_fakes import REAL_SHAPES, run_fake

    from launch.config import validate

    cfg = validate(
        {
            "data": {
                "k": 2,
                "batch_size": 4,
                "batches_per_epoch": 3,
                "identities": 20,
                "direction": "both",
                **REAL_SHAPES,
            },
            "model": {"name": name},
            "train": {
                "epochs": 1,
                "output_dir": str(out / name),
                "log_every": 1,
                "progress": False,
                "log_with": [],
                "device": "auto",
                "val_data": "fake-val",
                "val_min_trials": 16,
            },
        }
    )
    return run_fake(cfg)


if __name__ == "__main__":
    from accelerate.state import PartialState

    out = Path(sys.argv[1])
    results = {}
    for name in sys.argv[2:]:
        results[name] = {"check": check_adversarial_step(name), "summary": train_briefly(name, out)}
    if PartialState().is_main_process:
        print("RESULT " + json.dumps(results))
