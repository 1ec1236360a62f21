"""What a run resumes from (:class:`TrainState`) and how batches map to epochs and optimiser
steps (:class:`Schedule`).

Two counters drive everything: ``batches_done`` (micro-batches consumed by this rank) and
``step`` (optimiser steps). The epoch progress the models see is ``batches_done /
steps_per_epoch``; an accumulation group never crosses an epoch end, so the last group of an
epoch may be shorter than ``grad_accum_steps`` (and its loss is divided by its true size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AccumulationGroup:
    """The micro-batch's place in its gradient-accumulation group."""

    size: int  # micro-batches in this group (the loss is divided by it)
    closes: bool  # the last micro-batch of the group: all-reduce and optimiser step follow


@dataclass(frozen=True)
class Schedule:
    steps_per_epoch: int  # micro-batches per epoch per rank (the loader's promise)
    grad_accum_steps: int
    total_batches: int  # micro-batches of the whole run per rank

    @classmethod
    def of(cls, steps_per_epoch: int, grad_accum_steps: int, epochs: float) -> Schedule:
        return cls(steps_per_epoch, grad_accum_steps, max(1, round(epochs * steps_per_epoch)))

    @property
    def optimizer_steps_per_epoch(self) -> int:
        return math.ceil(self.steps_per_epoch / self.grad_accum_steps)

    def epoch_of(self, batches_done: int) -> int:
        return batches_done // self.steps_per_epoch

    def epoch_end(self, epoch: int) -> int:
        """``batches_done`` at which ``epoch`` ends (the run may end inside it)."""
        return min((epoch + 1) * self.steps_per_epoch, self.total_batches)

    def group(self, batches_done: int) -> AccumulationGroup:
        epoch = self.epoch_of(batches_done)
        in_epoch = batches_done - epoch * self.steps_per_epoch
        start = (in_epoch // self.grad_accum_steps) * self.grad_accum_steps
        size = min(self.grad_accum_steps, self.epoch_end(epoch) - epoch * self.steps_per_epoch - start)
        return AccumulationGroup(size=size, closes=in_epoch - start == size - 1)

    def epoch_finished(self, batches_done: int) -> bool:
        return batches_done % self.steps_per_epoch == 0 or batches_done == self.total_batches


@dataclass
class TrainState:
    """The counters of one run. ``step``, ``batches_done`` and ``best`` go into every checkpoint;
    the rest describe this process's session (what it saved, what it saw, why it stopped)."""

    step: int = 0
    batches_done: int = 0
    best: dict | None = None  # {"metric", "value", "step", "epoch"} of the best validation
    last_val: dict | None = None
    last_saved_step: int = -1
    tuples_seen: int = 0  # by this rank in this session (throughput)
    stop: bool = False
    preempted: bool = False

    def progress(self, schedule: Schedule) -> float:
        """Fractional epochs done: the ``epoch`` argument of ``model.loss``."""
        return self.batches_done / schedule.steps_per_epoch
