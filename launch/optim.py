"""Optimisers and the learning-rate schedule of the papers.

AICANet §IV-B.2 / Table I (BIANet §4 repeats the values): Adam with momentum 0.9 and weight decay
5e-4, an independent initial learning rate per module (feature extractors 5e-2, generator 5e-3,
discriminator 5e-3, classifier 5e-2, attention modules AIA/ACA (BIANet: PIA/NIA) 5e-3), and every
rate multiplied by 0.1 at epochs 25 and 40 of 50 (Table I: epochs 1-25 / 26-40 / 41-50, i.e.
zero-based epochs 0-24 / 25-39 / 40-49).

Two optimisers because the discriminator plays the other side of the adversarial game: the main
optimiser owns every group except ``discriminator`` and steps on ``terms["total"]``; the
discriminator optimiser steps on ``terms["disc_total"]``. The authors' code keeps the same split
(docs/REFERENCES.md#a7).

The schedule is a function of the *epoch reached*, computed from the true optimiser step count
(``step / optimiser_steps_per_epoch`` with ``ceil(batches_per_epoch / grad_accum_steps)`` steps
per epoch: accumulation groups never cross an epoch, so an epoch's last group may be shorter), so
it is exact after a resume and independent of how many processes share an epoch.
"""

from __future__ import annotations

import bisect

import torch

from launch.config import MODULE_GROUPS


class MilestoneDecay:
    """LR multiplier ``gamma ** (#milestones <= epoch)`` as a function of the optimiser step.

    A plain object (not a closure) so ``LambdaLR.state_dict()`` can save it and ``torch.load(...,
    weights_only=True)`` can read it back.
    """

    def __init__(self, milestones, gamma: float, steps_per_epoch: float):
        if steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
        self.milestones = [float(m) for m in milestones]
        self.gamma = float(gamma)
        self.steps_per_epoch = float(steps_per_epoch)

    def epoch_at(self, step: int) -> float:
        return step / self.steps_per_epoch

    def __call__(self, step: int) -> float:
        # A tiny tolerance so float division never places step 25*S at epoch 24.999999.
        passed = bisect.bisect_right(self.milestones, self.epoch_at(step) + 1e-9)
        return self.gamma**passed


def split_param_groups(groups: dict[str, list], model: torch.nn.Module | None = None) -> dict[str, list]:
    """Check the model's ``param_groups()`` and drop frozen parameters.

    Every trainable parameter must sit in exactly one group: a parameter in two groups would be
    stepped twice, one in none would silently never learn.
    """
    unknown = sorted(set(groups) - set(MODULE_GROUPS))
    if unknown:
        raise ValueError(
            f"model.param_groups() returned unknown group {unknown[0]!r}; expected {', '.join(MODULE_GROUPS)}"
        )
    seen: dict[int, str] = {}
    out = {}
    for name in MODULE_GROUPS:
        params = [p for p in groups.get(name, []) if p.requires_grad]
        for p in params:
            if id(p) in seen:
                raise ValueError(f"a parameter is in both param groups {seen[id(p)]!r} and {name!r}")
            seen[id(p)] = name
        out[name] = params
    if model is not None:
        missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
        if missing:
            raise ValueError(
                f"{len(missing)} trainable parameters are in no param group "
                f"(first: {missing[0]}); they would never be updated"
            )
    return out


def build_optimizers(groups: dict[str, list], optim_cfg: dict):
    """Main Adam over all non-discriminator groups (one torch param group per module, each with
    its Table I lr times ``lr_scale``) and a separate Adam for the discriminator (None when the
    model has none)."""
    scale = float(optim_cfg.get("lr_scale", 1.0))
    main_groups = [
        {"params": groups[name], "lr": scale * float(optim_cfg["lr"][name]), "group_name": name}
        for name in MODULE_GROUPS
        if name != "discriminator" and groups.get(name)
    ]
    if not main_groups:
        raise ValueError("the model has no trainable non-discriminator parameters")
    common = dict(weight_decay=float(optim_cfg["weight_decay"]), eps=float(optim_cfg["eps"]))
    main = torch.optim.Adam(main_groups, betas=tuple(optim_cfg["betas"]), **common)
    disc = None
    if groups.get("discriminator"):
        disc = torch.optim.Adam(
            [
                {
                    "params": groups["discriminator"],
                    "lr": scale * float(optim_cfg["lr"]["discriminator"]),
                    "group_name": "discriminator",
                }
            ],
            betas=tuple(optim_cfg["disc_betas"]),
            **common,
        )
    return main, disc


def build_schedulers(optimizers, optim_cfg: dict, optimizer_steps_per_epoch: float):
    """One ``LambdaLR`` per optimiser; step them once per optimiser step, never per micro-batch."""
    return [
        torch.optim.lr_scheduler.LambdaLR(
            opt, MilestoneDecay(optim_cfg["milestones"], optim_cfg["gamma"], optimizer_steps_per_epoch)
        )
        for opt in optimizers
        if opt is not None
    ]


def current_lrs(optimizers) -> dict[str, float]:
    """``{"lr/<group>": lr}`` for logging."""
    out = {}
    for opt in optimizers:
        if opt is None:
            continue
        for group in opt.param_groups:
            out[f"lr/{group.get('group_name', 'group')}"] = float(group["lr"])
    return out


def move_schedulers(schedulers, step: int, optimizer_steps_per_epoch: float) -> None:
    """Put every scheduler at optimiser step ``step`` of a schedule with ``optimizer_steps_per_epoch``
    steps per epoch, and set the optimisers' current rates to what that step gives.

    Why: a checkpoint's schedulers count steps of the run that wrote it. After an elastic resume on
    another number of processes an epoch has another number of steps, so the saved count (and the
    steps per epoch the saved ``MilestoneDecay`` divides by) would put the milestones at the wrong
    epochs. Moved to the step that marks the same epoch position, the rate curve over epochs goes on
    as if the run had always had this many processes (``launch/trainer/elastic.py``).
    """
    for sched in schedulers:
        for decay in sched.lr_lambdas:
            if not isinstance(decay, MilestoneDecay):
                raise TypeError(f"cannot move a schedule of {type(decay).__name__}: expected MilestoneDecay")
            decay.steps_per_epoch = float(optimizer_steps_per_epoch)
        sched.last_epoch = int(step)
        rates = [base * decay(step) for base, decay in zip(sched.base_lrs, sched.lr_lambdas)]
        for group, rate in zip(sched.optimizer.param_groups, rates):
            group["lr"] = rate
        sched._last_lr = rates
