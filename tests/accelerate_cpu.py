"""One way for every test to start a script on CPU ranks through `accelerate launch` (gloo)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ACCELERATE = Path(sys.executable).with_name("accelerate")
ROOT = Path(__file__).resolve().parents[1]


def launch_command(script: str | Path, *args: str, processes: int = 2, port: int | str = 0) -> list[str]:
    """`accelerate launch` of `script` on `processes` CPU ranks (one machine, no mixed precision)."""
    multi = ["--multi_gpu"] if processes > 1 else []
    return [str(ACCELERATE), "launch", *multi, "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
            str(script), *map(str, args)]  # fmt: skip


def launch_env(**extra: str) -> dict[str, str]:
    """The environment for it: CPU ranks, one thread each, this checkout importable."""
    return {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}
