"""One training step: micro-batch forward/backward (:meth:`TrainStep.accumulate`) and the
optimiser update that closes an accumulation group (:meth:`TrainStep.update`).

The adversarial order (docs/TRAINING.md): one forward and ``model.loss(out, batch, progress)``;
one backward of ``total + disc_total``. The models compute the generator's adversarial term
through detached discriminator weights and the discriminator's term on detached embeddings
(models/base.py), so ``total`` reaches only the non-discriminator groups and ``disc_total`` only
the discriminator: one backward gives each optimiser exactly its own gradient and DDP all-reduces
once per step. Then the main Adam steps, then the discriminator's.

Nothing here reads a tensor value on the host: the step path stays free of device-to-host
syncs (tests/test_train_no_sync.py), so the CPU can queue the next step while the GPU works.
"""

from __future__ import annotations

import contextlib

import torch

from .state import AccumulationGroup


def check_gradient_separation(model, terms: dict, groups: dict) -> None:
    """Dry-run check of the contract the single backward relies on: ``total`` gives no gradient
    to the discriminator and ``disc_total`` none to any other group."""
    disc = groups.get("discriminator") or []
    others = [p for name, ps in groups.items() if name != "discriminator" for p in ps]
    if not disc or not terms["disc_total"].requires_grad:
        return
    for loss_name, params, what in (
        ("total", disc, "the discriminator"),
        ("disc_total", others, "non-discriminator groups"),
    ):
        grads = torch.autograd.grad(terms[loss_name], params, retain_graph=True, allow_unused=True)
        leak = max((float(g.abs().max()) for g in grads if g is not None), default=0.0)
        if leak > 0:
            raise RuntimeError(
                f"model.loss()['{loss_name}'] puts gradient on {what} (max |g| = "
                f"{leak:.3g}); the trainer's single backward needs the detach contract "
                f"of ARCHITECTURE.md §5 / docs/MODELS.md"
            )


class TrainStep:
    """The prepared model and its optimisers; ``core`` is the unwrapped model (``loss``, weights)."""

    def __init__(
        self,
        accelerator,
        model,
        optimizers: list,
        schedulers: list,
        grad_clip: float | None,
        groups: dict,
        check_separation: bool = False,
    ):
        self.accelerator = accelerator
        self.model = model
        self.core = accelerator.unwrap_model(model)
        self.optimizers = optimizers
        self.schedulers = schedulers
        self.grad_clip = grad_clip
        self.groups = groups
        self.check_separation = check_separation  # dry runs: verify the detach contract once

    def accumulate(self, batch: dict, progress: float, group: AccumulationGroup) -> dict:
        """Forward, loss and backward of one micro-batch; gradients are all-reduced only when the
        group closes. Returns the loss terms (device tensors, still attached)."""
        accelerator = self.accelerator
        skip_sync = not group.closes and accelerator.num_processes > 1
        with accelerator.no_sync(self.model) if skip_sync else contextlib.nullcontext():
            with accelerator.autocast():
                out = self.model(batch)
                terms = self.core.loss(out, batch, progress)
            if self.check_separation:
                check_gradient_separation(self.core, terms, self.groups)
            accelerator.backward((terms["total"] + terms["disc_total"]) / group.size)
        return terms

    def update(self) -> None:
        """Clip (optional), step every optimiser, clear gradients, step the schedulers."""
        if self.grad_clip is not None:
            for opt in self.optimizers:
                params = [p for g in opt.param_groups for p in g["params"]]
                self.accelerator.clip_grad_norm_(params, self.grad_clip)
        for opt in self.optimizers:
            opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        for sched in self.schedulers:
            sched.step()
