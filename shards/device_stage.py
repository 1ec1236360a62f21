"""The loader's device work (host-to-device copies, DALI decode, log-mel, face normalisation) on
its own CUDA stream, handed to the training stream with the right waits.

Without it that work is queued on the training stream, between the model's kernels, and the
host-to-device copies from pageable memory block the host. With it, copies come from pinned
memory with ``non_blocking=True`` (:func:`to_device`) and run on the loader's stream while the
GPU computes the previous step; :meth:`DeviceStage.hand_over` makes the training stream wait for
exactly the batch's work and tells the caching allocator that the training stream now uses the
batch's memory (``record_stream``), so it is not reused while a step still reads it.

On CPU every method is a no-op, so the CPU path is unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; to CUDA from pinned memory without blocking the host."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class DeviceStage:
    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def side_stream(self):
        """Context: CUDA work issued in the block goes to the loader's stream."""
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def mark(self) -> Any:
        """An event after the work queued so far on the loader's stream (None on CPU)."""
        if self.stream is None:
            return None
        event = torch.cuda.Event()
        event.record(self.stream)
        return event

    def wait(self, event: Any) -> None:
        """The loader's stream waits for ``event`` (work done in another thread's block)."""
        if self.stream is not None and event is not None:
            self.stream.wait_event(event)

    def hand_over(self, batch: dict) -> dict:
        """Make the caller's (training) stream wait for the batch and own its tensors."""
        if self.stream is None:
            return batch
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.device.type == "cuda":
                value.record_stream(current)
        return batch
