"""Elastic resume: continue a checkpoint written by W processes on W' != W processes.

The loader does the hard part (``shards/elastic.py``): given every old rank's loader state, each
new rank takes its share of the rest of the epoch, so nothing is replayed, and continues at
in-epoch batch ``floor(b x W / W')`` of its own ``steps_per_epoch`` (the same number of tuples
consumed). This module keeps the trainer's counters in step with it:

* ``batches_done`` (per rank) becomes ``epoch x steps_per_epoch' + min(steps_per_epoch',
  floor(b x W / W'))``, exactly the loader's in-epoch position, so the epoch ends when the
  loader's does and the fractional epoch the models see (``batches_done / steps_per_epoch``)
  carries over (it differs from the saved one by less than one batch per rank);
* the LR schedulers are moved to the optimiser step that marks that position on the new schedule
  (``epoch x optimizer_steps_per_epoch' + in-epoch batches // grad_accum_steps``), so the learning
  rate over epochs goes on as if the run had always had W' processes: with integer milestones the
  rate right after the switch is the rate right before it;
* ``step`` (the optimiser updates made) is *not* remapped: it keeps counting updates, so
  checkpoint names, log rows and TensorBoard steps stay increasing and ``train.max_steps`` /
  ``train.checkpoint_every`` keep meaning "updates";
* optimiser states (Adam moments) are global, not sharded (every rank holds the whole model), so
  they load as saved;
* RNG: new rank r takes old rank r's RNG states; a rank with no old counterpart (r >= W) gets a
  fresh stream seeded by ``(train.seed, r, step)``.

What the switch costs, at most: the tuples of less than one batch per rank (flooring), and, with
``grad_accum_steps`` > 1 when the new position falls inside an accumulation group, one optimiser
step that averages fewer micro-batches than the group holds (fewer by less than
``grad_accum_steps``; its loss is still divided by the group size). Nothing is repeated.

Refused (one line, before anything is loaded): a loader that cannot regroup (no
``steps_per_epoch_at``), and other data or batch settings (``data.batch_size``, ``positive``,
``steps_per_epoch``, or data giving another ``steps_per_epoch`` on W processes than the checkpoint
recorded): those change what a batch or an epoch is, which no counter mapping can repair.
``train.grad_accum_steps`` may change with the world size (e.g. to keep the global batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from launch.checkpoint import CheckpointError, complete_data_config

from .state import Schedule

# Loader settings that decide how many tuples one batch holds or how many batches an epoch has.
BATCH_KEYS = ("batch_size", "positive", "steps_per_epoch")


@dataclass(frozen=True)
class ElasticSwitch:
    """The counters before and after an elastic resume (what the ``resume`` log row records)."""

    old_world: int
    new_world: int
    old_steps_per_epoch: int
    new_steps_per_epoch: int
    old_batches_done: int
    new_batches_done: int
    old_lr_step: int
    new_lr_step: int

    @property
    def old_epoch(self) -> float:
        return self.old_batches_done / self.old_steps_per_epoch

    @property
    def new_epoch(self) -> float:
        return self.new_batches_done / self.new_steps_per_epoch

    def row(self) -> dict:
        return {
            "elastic": True,
            "processes_before": self.old_world,
            "processes": self.new_world,
            "steps_per_epoch_before": self.old_steps_per_epoch,
            "steps_per_epoch": self.new_steps_per_epoch,
            "batches_done_before": self.old_batches_done,
            "batches_done": self.new_batches_done,
            "epoch_before": self.old_epoch,
            "epoch": self.new_epoch,
            "lr_step_before": self.old_lr_step,
            "lr_step": self.new_lr_step,
        }

    def line(self) -> str:
        return (
            f"elastic resume: {self.old_world} -> {self.new_world} processes; batches per process "
            f"{self.old_batches_done} -> {self.new_batches_done} of {self.old_steps_per_epoch} -> "
            f"{self.new_steps_per_epoch} per epoch (epoch {self.old_epoch:.3f} -> {self.new_epoch:.3f}); "
            f"lr schedule step {self.old_lr_step} -> {self.new_lr_step}"
        )


def map_batches_done(batches_done: int, old_spe: int, old_world: int, new_spe: int, new_world: int) -> int:
    """Per-rank ``batches_done`` on the new world size: whole epochs stay whole, the in-epoch part
    follows the loader (``shards.elastic.regroup``: ``min(new_spe, floor(b x W / W'))``)."""
    epoch, in_epoch = divmod(int(batches_done), int(old_spe))
    return epoch * new_spe + min(new_spe, in_epoch * old_world // new_world)


def lr_step_at(batches_done: int, schedule: Schedule) -> int:
    """Optimiser steps a run on ``schedule`` has made when ``batches_done`` micro-batches are done:
    whole epochs of ``optimizer_steps_per_epoch``, plus the closed accumulation groups of this one."""
    epoch, in_epoch = divmod(int(batches_done), schedule.steps_per_epoch)
    return epoch * schedule.optimizer_steps_per_epoch + in_epoch // schedule.grad_accum_steps


def fresh_rank_seed(seed: int, rank: int, step: int) -> int:
    """Seed of a new rank that has no old counterpart: its own, and unlike any run start's."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1)[0])


def plan_switch(
    ckpt_dir: Path, trainer_state: dict, saved_data: dict, data_cfg: dict, loader, schedule: Schedule, world: int
) -> ElasticSwitch:
    """Check that the checkpoint can continue on ``world`` processes and compute the new counters;
    a change that cannot be mapped is a one-line :class:`CheckpointError`."""
    old_world = int(trainer_state["world_size"])
    old_spe = int(trainer_state["steps_per_epoch"])
    if not hasattr(loader, "steps_per_epoch_at"):
        raise CheckpointError(
            f"{ckpt_dir} was written by {old_world} processes but this run has {world}, and this loader "
            f"({type(loader).__name__}) cannot regroup its stream over another number of processes; "
            f"resume with --num_processes {old_world}"
        )
    now_data = complete_data_config(data_cfg)
    changed = [
        f"data.{key} {saved_data.get(key)!r} -> {now_data.get(key)!r}"
        for key in BATCH_KEYS
        if key in saved_data and saved_data.get(key) != now_data.get(key)
    ]
    now_spe = int(loader.steps_per_epoch_at(old_world))
    if not changed and now_spe != old_spe:
        changed = [f"{old_spe} -> {now_spe} batches per epoch on {old_world} processes"]
    if changed:
        raise CheckpointError(
            f"{ckpt_dir} cannot continue on {world} processes: the data or batch settings changed "
            f"({'; '.join(changed)}); an elastic resume may change only the number of processes "
            f"(and train.grad_accum_steps): resume with the original data settings"
        )
    new_batches = map_batches_done(trainer_state["batches_done"], old_spe, old_world, schedule.steps_per_epoch, world)
    schedulers = trainer_state.get("schedulers") or [{}]
    return ElasticSwitch(
        old_world=old_world,
        new_world=world,
        old_steps_per_epoch=old_spe,
        new_steps_per_epoch=schedule.steps_per_epoch,
        old_batches_done=int(trainer_state["batches_done"]),
        new_batches_done=new_batches,
        old_lr_step=int(schedulers[0].get("last_epoch", trainer_state["step"])),
        new_lr_step=lr_step_at(new_batches, schedule),
    )


def load_loader_states(loader, states: list[dict], ckpt_dir: Path) -> None:
    """Give every old rank's loader state to the loader (it regroups them); its refusal (another
    seed, buffer size or shard list, a missing rank) becomes one line naming the checkpoint."""
    try:
        loader.load_state_dict(list(states))
    except ValueError as exc:
        raise CheckpointError(f"{ckpt_dir}: the loader cannot continue this checkpoint's epoch: {exc}") from None
