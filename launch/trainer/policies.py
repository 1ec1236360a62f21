"""When the loop checkpoints and validates, and what a checkpoint holds.

- :class:`Checkpoints`: every ``train.checkpoint_every`` optimiser steps, and at every epoch end
  (or stop) unless that step is already saved. A checkpoint holds the model, the optimisers and
  schedulers, the :class:`~launch.trainer.state.TrainState` counters and, per rank, the RNG and
  loader cursor, so a resumed run continues bit-exactly on CPU.
- :class:`ValidationPolicy`: every ``train.val_every`` epochs, at the end of training and when
  ``train.max_steps`` stops it (not when preempted: the checkpoint must be written first); an
  improvement writes the model-only ``best`` checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

from launch import checkpoint as ckpt

from .state import Schedule, TrainState


class Checkpoints:
    def __init__(
        self, writer, every: int, schedule: Schedule, step, loader, model_cfg: dict, data_cfg: dict, world_size: int
    ):
        self.writer = writer  # None in dry runs: nothing is written
        self.every = every
        self.schedule = schedule
        self.step = step  # the TrainStep: weights, optimisers, schedulers
        self.loader = loader
        self.model_cfg, self.data_cfg = model_cfg, data_cfg
        self.world_size = world_size

    def save(self, state: TrainState, name: str, mark_latest: bool = True, model_only: bool = False) -> Path:
        epoch = state.progress(self.schedule)
        core = self.step.core
        payload = ckpt.model_payload(core, getattr(core, "cfg", self.model_cfg), self.data_cfg, epoch, state.step)
        trainer_state = (
            None
            if model_only
            else {
                "optimizers": [o.state_dict() for o in self.step.optimizers],
                "schedulers": [s.state_dict() for s in self.step.schedulers],
                "step": state.step,
                "batches_done": state.batches_done,
                "best": state.best,
                "world_size": self.world_size,
                "steps_per_epoch": self.schedule.steps_per_epoch,
                "grad_accum_steps": self.schedule.grad_accum_steps,
            }
        )
        rank_state = None if model_only else {"rng": ckpt.capture_rng_state(), "loader": self.loader.state_dict()}
        return self.writer.save(
            name,
            model=payload,
            trainer=trainer_state,
            rank_state=rank_state,
            meta={"step": state.step, "epoch": epoch, "best": state.best},
            mark_latest=mark_latest,
        )

    def _save_step(self, state: TrainState) -> None:
        self.save(state, f"step-{state.step:09d}")
        state.last_saved_step = state.step

    def after_step(self, state: TrainState) -> None:
        if self.writer is not None and self.every and state.step % self.every == 0:
            self._save_step(state)

    def after_epoch(self, state: TrainState) -> None:
        """At an epoch end or a stop, unless this step is already saved."""
        ended = self.schedule.epoch_finished(state.batches_done) or state.stop
        if self.writer is not None and ended and state.step != state.last_saved_step:
            self._save_step(state)


class ValidationPolicy:
    def __init__(self, validator, every: int, schedule: Schedule, checkpoints: Checkpoints, logger):
        self.validator = validator  # None: no validation, no best checkpoint
        self.every = every
        self.schedule = schedule
        self.checkpoints = checkpoints
        self.logger = logger

    def due(self, state: TrainState) -> bool:
        if self.validator is None or state.preempted:
            return False
        if not (self.schedule.epoch_finished(state.batches_done) or state.stop):
            return False
        return (
            state.stop
            or state.batches_done == self.schedule.total_batches
            or self.schedule.epoch_of(state.batches_done) % self.every == 0
        )

    def run(self, state: TrainState, core) -> dict:
        """Score ``core``, record ``best`` (and its checkpoint), log; leaves ``core`` in train mode."""
        result = self.validator(core)
        name = self.validator.name
        metric, epoch = result[name], state.progress(self.schedule)
        if state.best is None or (math.isfinite(metric) and metric > state.best["value"]):
            state.best = {"metric": name, "value": metric, "step": state.step, "epoch": epoch}
            if self.checkpoints.writer is not None:
                self.checkpoints.save(state, ckpt.BEST_NAME, mark_latest=False, model_only=True)
        self.logger.log({"event": "val", "step": state.step, "epoch": epoch, **result, "best": state.best["value"]})
        state.last_val = result
        core.train()
        return result
