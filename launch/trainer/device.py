"""Which device and precision this rank trains on, chosen once and said out loud.

``train.device``: ``cuda`` demands a GPU and stops with a clear message when torch sees none (no
driver, ``CUDA_VISIBLE_DEVICES`` empty, a container started without ``--gpus all``); ``cpu``
trains on CPU on purpose; ``auto`` takes CUDA when present, else CPU. Every rank prints one line
with its device and precision; when several processes fell back to CPU under ``auto`` the main
process warns loudly, since that is almost always a broken GPU setup, not a wish.
"""

from __future__ import annotations

import sys

import torch

from launch.config import ConfigError


class DeviceUnavailable(ConfigError):
    """The configured device cannot be used; the message says what to check."""


NO_CUDA_HINT = (
    "check the NVIDIA driver (`nvidia-smi`), CUDA_VISIBLE_DEVICES, that torch is a CUDA "
    "build (torch.version.cuda={cuda}) and, in Docker, `docker run --gpus all`"
)


def choose_device(setting: str, cuda_available: bool | None = None) -> str:
    """``cpu`` or ``cuda`` for ``train.device`` (``auto``, ``cpu``, ``cuda``)."""
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if setting == "cuda" and not cuda_available:
        raise DeviceUnavailable(
            "train.device=cuda but torch sees no CUDA device; "
            + NO_CUDA_HINT.format(cuda=torch.version.cuda)
            + "; or set train.device=auto / cpu"
        )
    if setting == "cpu":
        return "cpu"
    return "cuda" if cuda_available else "cpu"


def resolve_mixed_precision(setting: str, device: torch.device) -> str:
    if setting != "auto":
        return setting
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def build_accelerator(settings: dict):
    """The Accelerator on the chosen device; raises :class:`DeviceUnavailable` when ``cuda`` was
    asked for but this rank did not get one (e.g. ``ACCELERATE_USE_CPU`` in the environment)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    wanted = choose_device(settings["device"])
    accelerator = Accelerator(
        cpu=wanted == "cpu",
        mixed_precision=resolve_mixed_precision(settings["mixed_precision"], torch.device(wanted)),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=settings["find_unused_parameters"])],
    )
    if settings["device"] == "cuda" and accelerator.device.type != "cuda":
        raise DeviceUnavailable(
            f"train.device=cuda but Accelerate placed rank {accelerator.process_index} "
            f"on {accelerator.device} (ACCELERATE_USE_CPU set, or an Accelerate config "
            f"with use_cpu: true?); " + NO_CUDA_HINT.format(cuda=torch.version.cuda)
        )
    if accelerator.device.type == "cuda":
        # Face and voice crops have fixed H, W and T; only the unique-item count varies per batch, and
        # the autotuner keeps its choice per shape, so each count is tuned once.
        torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    return accelerator


def describe_device(accelerator) -> dict:
    """What this rank runs on, for the log and the summary."""
    device = accelerator.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": str(device), "device_name": name, "mixed_precision": str(accelerator.mixed_precision)}


def announce_device(accelerator, setting: str, stream=None) -> dict:
    """Print one line per rank (device, precision, why) and, on the main process, a loud warning
    when several processes train on CPU although ``auto`` would have taken a GPU."""
    stream = stream or sys.stderr
    info = describe_device(accelerator)
    rank, world = accelerator.process_index, accelerator.num_processes
    print(
        f"[rank {rank}/{world}] training on {info['device']} ({info['device_name']}), precision "
        f"{info['mixed_precision']} (train.device={setting})",
        file=stream,
        flush=True,
    )
    if setting == "auto" and world > 1 and accelerator.device.type == "cpu" and accelerator.is_main_process:
        print(
            f"WARNING: {world} processes are training on CPU: no rank found a CUDA device "
            f"(train.device=auto). If you meant GPUs, "
            + NO_CUDA_HINT.format(cuda=torch.version.cuda)
            + ". Set train.device=cpu to train on CPU on purpose (this warning then goes away), or "
            "train.device=cuda to make a missing GPU an error.",
            file=stream,
            flush=True,
        )
    return info
