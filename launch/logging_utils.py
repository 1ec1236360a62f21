"""Training logs: one JSON line per log step (always) plus Accelerate's experiment trackers.

Why both: JSONL is greppable, diffable and what tests compare (the loss curve after a resume
must equal the uninterrupted one); trackers are what people watch. ``train.log_with`` names
Accelerate trackers (``tensorboard`` by default; ``wandb``, ``mlflow``, ``aim``, ... when the
library is installed), built through ``accelerate.tracking`` so every tracker Accelerate supports
works the same way, and the resolved config is stored as the run's hyper-parameters. Only the main
process writes. On resume the JSONL rows after the checkpoint's step are dropped and TensorBoard
purges them (``purge_step``), so a resumed run's logs read like one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from launch.config import ConfigError

LOG_FILE = "train_log.jsonl"
#: Trackers Accelerate knows (``accelerate.utils.LoggerType``); availability is checked at start.
KNOWN_TRACKERS = ("tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml", "dvclive", "swanlab", "trackio")


class TrackerError(ConfigError):
    """A requested tracker cannot be used (its library is not installed); the message says which."""


def flatten_config(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": {"generator": 1e-3}}}`` -> ``{"optim.lr.generator": 1e-3}``; values every
    tracker accepts as hyper-parameters (numbers, bools, strings; lists and null as text)."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def build_trackers(names: list[str], run_dir: Path, resume_step: int | None) -> list:
    """Accelerate tracker objects for ``names``, started. TensorBoard writes to ``<run_dir>/tensorboard``."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS
    from accelerate.utils import LoggerType
    from accelerate.utils.imports import is_tensorboard_available

    available = {str(t) for t in _available_trackers()}
    trackers = []
    for name in dict.fromkeys(names):
        if name not in available:
            hint = (
                "pip install tensorboard"
                if name == "tensorboard" and not is_tensorboard_available()
                else f"pip install {name.replace('_', '-')}"
            )
            raise TrackerError(
                f"train.log_with names {name!r}, which is not installed ({hint}), or drop it: train.log_with=[]"
            )
        cls = LOGGER_TYPE_TO_CLASS[str(LoggerType(name))]
        if name == "tensorboard":
            tracker = cls("tensorboard", str(run_dir), purge_step=resume_step)
        elif cls.requires_logging_directory:
            tracker = cls(run_dir.name, str(run_dir))
        else:
            tracker = cls(run_dir.name)
        tracker.start()
        trackers.append(tracker)
    return trackers


def _available_trackers() -> list:
    from accelerate.tracking import get_available_trackers

    return get_available_trackers()


class RunLogger:
    """JSONL + Accelerate trackers. Create it on every process; only ``enabled`` writes."""

    def __init__(
        self,
        run_dir: str | Path,
        enabled: bool,
        log_with: list[str],
        resume_step: int | None,
        hparams: dict | None = None,
    ):
        self.enabled = enabled
        self.path = Path(run_dir) / LOG_FILE
        self.trackers: list = []
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            truncate_log_after(self.path, resume_step)
        self.trackers = build_trackers(list(log_with), Path(run_dir), resume_step)
        self.file = self.path.open("a", buffering=1)
        if hparams is not None:
            flat = flatten_config(hparams)
            for tracker in self.trackers:
                tracker.store_init_configuration(flat)

    def log(self, row: dict) -> None:
        """Write one row; ``row["step"]`` is the trackers' x axis, finite numbers become scalars."""
        if not self.enabled:
            return
        self.file.write(json.dumps(row, sort_keys=True) + "\n")
        scalars = {
            key: value
            for key, value in row.items()
            if key != "step"
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        }
        if scalars:
            for tracker in self.trackers:
                tracker.log(scalars, step=int(row.get("step", 0)))

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        for tracker in self.trackers:
            tracker.finish()


def read_log(path: str | Path, event: str | None = "train") -> list[dict]:
    """Rows of a JSONL log, optionally only those with ``row["event"] == event``."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if event is None or r.get("event") == event]


def truncate_log_after(path: Path, step: int) -> None:
    """Drop rows written after ``step`` (they belong to the part of the run being redone)."""
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
