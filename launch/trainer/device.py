"""Which device and precision this rank trains on."""

from __future__ import annotations

import torch


def resolve_mixed_precision(setting: str, device: torch.device) -> str:
    if setting != "auto":
        return setting
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def build_accelerator(settings: dict):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    probe_device = torch.device("cuda" if torch.cuda.is_available() and not settings["cpu"] else "cpu")
    return Accelerator(
        cpu=settings["cpu"],
        mixed_precision=resolve_mixed_precision(settings["mixed_precision"], probe_device),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=settings["find_unused_parameters"])],
    )
