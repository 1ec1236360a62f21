"""The logging window: what happens between two log rows.

Loss terms are summed as device tensors (no host read per step); :meth:`LogWindow.row` is the
one place per ``train.log_every`` steps that reduces them over ranks and reads them on the host.
"""

from __future__ import annotations

import math
import time

import torch

from launch.optim import current_lrs


def loader_skip_counts(loader) -> dict:
    """The loader's read-time skip counters, flattened for logging ({} if it exposes none)."""
    counts = getattr(loader, "skip_counts", None)
    if callable(counts):
        counts = counts()
    if not isinstance(counts, dict):
        return {}
    return {f"skipped/{k}": int(v) for k, v in counts.items() if isinstance(v, (int, float))}


def loader_report_fields(loader) -> dict:
    """Numbers (and the face decoder in use) from the loader's ``report()`` for the log row."""
    report = getattr(loader, "report", None)
    if not callable(report):
        return {}
    info, row = report(), {}
    for key in ("coverage", "decoded_items_per_tuple", "dali_fallback_batches"):
        if isinstance(info.get(key), (int, float)):
            row[f"loader/{key}"] = float(info[key])
    if isinstance(info.get("face_decoder"), str):
        row["loader/face_decoder"] = info["face_decoder"]
    return row


def loader_decoder_summary(loader) -> dict:
    """The face decoder in use and how many batches fell back from DALI to the CPU decoder."""
    fields = loader_report_fields(loader)
    out = {}
    if "loader/face_decoder" in fields:
        out["face_decoder"] = fields["loader/face_decoder"]
    if "loader/dali_fallback_batches" in fields:
        out["dali_fallback_batches"] = int(fields["loader/dali_fallback_batches"])
    return out


class LogWindow:
    """Sums of every scalar loss term, tuples and loader wait time since the last row."""

    def __init__(self):
        self.terms: dict[str, torch.Tensor] = {}
        self.batches = 0
        self.tuples = 0
        self.data_s = 0.0
        self.t0 = time.perf_counter()

    def next_batch(self, batches):
        """``next(batches)``, timing the wait for the loader (the ``loader_share`` column)."""
        t0 = time.perf_counter()
        try:
            return next(batches)
        finally:
            self.data_s += time.perf_counter() - t0

    def add(self, terms: dict, batch: dict) -> int:
        """Account one micro-batch; returns its tuple count (a shape, not a value: no sync)."""
        n_tuples = int(batch["label"].shape[0])
        self.tuples += n_tuples
        for name, value in terms.items():
            if torch.is_tensor(value) and value.numel() == 1:
                self.terms[name] = self.terms.get(name, 0.0) + value.detach().float()
        self.batches += 1
        return n_tuples

    def row(self, accelerator, step: int, epoch: float, optimizers, loader) -> dict:
        """Mean of every loss term over the window and over ranks, plus lrs, speed and counters."""
        names = sorted(self.terms)
        device = accelerator.device
        local = (
            torch.stack([self.terms[n].to(device) / max(self.batches, 1) for n in names])
            if names
            else torch.zeros(0, device=device)
        )
        mean = accelerator.reduce(local, reduction="mean") if accelerator.num_processes > 1 else local
        seconds = max(time.perf_counter() - self.t0, 1e-9)
        row = {"event": "train", "step": step, "epoch": epoch}
        row.update({f"loss/{n}": float(v) for n, v in zip(names, mean.tolist())})
        row.update(current_lrs(optimizers))
        row["tuples_per_s"] = self.tuples * accelerator.num_processes / seconds
        row["loader_share"] = self.data_s / seconds
        if torch.cuda.is_available() and device.type == "cuda":
            row["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        row.update(loader_skip_counts(loader))
        row.update(loader_report_fields(loader))
        return row


def raise_if_diverged(row: dict, step: int, latest_checkpoint) -> None:
    """Stop on a non-finite loss. The row is reduced over ranks, so every rank stops here.
    ``latest_checkpoint()`` names the checkpoint to go back to (read only when needed)."""
    diverged = [k for k, v in row.items() if k.startswith("loss/") and not math.isfinite(v)]
    if diverged:
        raise FloatingPointError(
            f"training diverged: {', '.join(diverged)} not finite at step {step}. Nothing was saved "
            f"after the last checkpoint ({latest_checkpoint()}). Lower optim.lr.* or set "
            f"optim.grad_clip, then start again or resume from it."
        )
