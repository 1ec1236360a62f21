"""The step path makes no device-to-host reads after the first step.

On a GPU, ``Tensor.item``, ``tolist``, ``bool(t)``, ``float(t)``, ``.cpu()`` ... wait for the
device: one per step stalls the CPU and leaves the GPU idle between kernels. On CPU nothing
stalls, so this test makes such reads fail instead: it patches them to raise when the caller is
the project's own code (torch's internals, e.g. Adam's read of its CPU step counter, are not
device reads) and the call happens inside a training step (``TrainStep.accumulate``,
``TrainStep.update``, ``LogWindow.add``) after the first one (the model's first batch is
range-checked, models/batch.py). The logging window is where the loss terms are read, once per
``train.log_every`` steps, and it is outside the trapped frames.
"""

import sys
from pathlib import Path

import pytest
import torch
from train_fakes import REAL_SHAPES, fake_config, run_fake

from launch.trainer.step import TrainStep
from launch.trainer.window import LogWindow

ROOT = Path(__file__).resolve().parents[1]
OWN_CODE = tuple(str(ROOT / d) for d in ("launch", "models", "shards"))
STEP_CODE = {TrainStep.accumulate.__code__, TrainStep.update.__code__, LogWindow.add.__code__}
READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu")


class SyncTrap:
    def __init__(self):
        self.armed = False
        self.caught: list[str] = []

    def wrap(self, name, real):
        trap = self

        def patched(tensor, *args, **kwargs):
            if trap.armed:
                caller = sys._getframe(1)
                if caller.f_code.co_filename.startswith(OWN_CODE) and trap._in_step(caller):
                    where = f"{caller.f_code.co_filename}:{caller.f_lineno}"
                    trap.caught.append(f"Tensor.{name} at {where}")
                    raise AssertionError(f"device-to-host read Tensor.{name} in the step path at {where}")
            return real(tensor, *args, **kwargs)

        return patched

    @staticmethod
    def _in_step(frame) -> bool:
        while frame is not None:
            if frame.f_code in STEP_CODE:
                return True
            frame = frame.f_back
        return False


@pytest.fixture
def trap(monkeypatch):
    trap = SyncTrap()
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, trap.wrap(name, getattr(torch.Tensor, name)))
    real_update = TrainStep.update

    def update_then_arm(self):
        real_update(self)
        trap.armed = True  # from the second step on

    monkeypatch.setattr(TrainStep, "update", update_then_arm)
    STEP_CODE.add(update_then_arm.__code__)
    return trap


def real_model_config(tmp_path, name, accum=1):
    data = {"batch_size": 4, "direction": "both", **({} if name == "fake" else REAL_SHAPES)}
    cfg = fake_config(tmp_path, epochs=1, log_every=3, grad_accum_steps=accum, val_data=None)
    cfg["model"] = {**cfg["model"], "name": name}
    cfg["data"] = {**cfg["data"], **data}
    cfg["optim"]["grad_clip"] = 1.0  # clipping must not read the norm either
    return cfg


def test_the_trap_catches_the_debug_range_checks(tmp_path, trap, monkeypatch):
    """The trap sees reads deep in model code: the per-batch range checks of the debug switch."""
    monkeypatch.setenv("VOXFACE_CHECK_BATCHES", "1")
    with pytest.raises(AssertionError, match=r"read Tensor.__int__ in the step path at .*models/batch.py"):
        run_fake(real_model_config(tmp_path, "baseline"))


@pytest.mark.parametrize("name, accum", [("fake", 1), ("aicanet", 2), ("bianet", 1)])
def test_training_steps_make_no_host_reads(tmp_path, trap, name, accum):
    summary = run_fake(real_model_config(tmp_path, name, accum))
    assert trap.armed and trap.caught == []
    assert summary["steps"] == 6 // accum
