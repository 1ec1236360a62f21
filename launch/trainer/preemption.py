"""Cluster preemption: a signal asks the run to stop at a step every rank agrees on."""

from __future__ import annotations

import signal
import threading

import torch


class PreemptionFlag:
    """SIGTERM / SIGUSR1 (cluster preemption, ``kill``, ``scancel --signal``) ask the run to stop:
    the current step finishes, a checkpoint is written, and the process exits with code 3 so a
    scheduler can requeue it with ``train.resume=auto``. With several processes the flag is
    OR-reduced, so all ranks stop at the same step even if only one received the signal; the loop
    asks only at log steps, where it synchronises anyway (a reduce plus `.item()` every step would
    stall the CPU on the GPU), so a stop can come up to ``train.log_every`` steps later."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signum = signum

    def agreed(self, accelerator) -> bool:
        if accelerator.num_processes == 1:
            return self.signum is not None  # no device tensor: no host sync
        flag = torch.tensor([0.0 if self.signum is None else 1.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> PreemptionFlag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
