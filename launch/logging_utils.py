"""Training logs: one JSON line per log step plus TensorBoard scalars, main process only.

Why both: JSONL is greppable, diffable and what tests compare (the loss curve after a resume
must equal the uninterrupted one); TensorBoard is what people watch. On resume the JSONL rows
after the checkpoint's step are dropped and TensorBoard purges them (``purge_step``), so a
resumed run's logs read like one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

LOG_FILE = "train_log.jsonl"


class RunLogger:
    """JSONL + optional TensorBoard writer. Create it on every process; only ``enabled`` writes."""

    def __init__(self, run_dir: str | Path, enabled: bool, tensorboard: bool, resume_step: int | None):
        self.enabled = enabled
        self.path = Path(run_dir) / LOG_FILE
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            truncate_log_after(self.path, resume_step)
        self.file = self.path.open("a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def log(self, row: dict) -> None:
        """Write one row; ``row["step"]`` is the TensorBoard x axis, numbers become scalars."""
        if not self.enabled:
            return
        self.file.write(json.dumps(row, sort_keys=True) + "\n")
        if self.tb is not None:
            step = int(row.get("step", 0))
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_log(path: str | Path, event: str | None = "train") -> list[dict]:
    """Rows of a JSONL log, optionally only those with ``row["event"] == event``."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if event is None or r.get("event") == event]


def truncate_log_after(path: Path, step: int) -> None:
    """Drop rows written after ``step`` (they belong to the part of the run being redone)."""
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
