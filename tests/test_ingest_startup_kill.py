"""kill -9 of the ingest at random moments of its start-up (imports, scan, worker pool start,
first tasks) leaves no process behind: no pool worker, no resource tracker. Workers ask to die
with their parent as their first act, before the pool's own start-up code, and exit at once if
the parent is already gone (pipeline/executors.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from ingest_media import make_vox2_corpus

ROOT = Path(__file__).resolve().parents[1]
TAG = "VOXFACE_KILL_TEST_TAG"


def _tagged(tag: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries `TAG=tag` (children inherit it)."""
    found = []
    needle = f"{TAG}={tag}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if state != b"Z" and needle in env.split(b"\0"):
            found.append(int(entry))
    return found


@pytest.mark.slow
def test_no_process_survives_20_kills_during_start_up(tmp_path):
    corpus = make_vox2_corpus(tmp_path / "vox2", clips_per_video=1, videos=1, with_txt=False)
    rng = np.random.default_rng(15)
    moments = rng.uniform(0.1, 2.5, size=20)
    leftovers: dict[str, list[int]] = {}
    tags: list[str] = []
    try:
        for i, moment in enumerate(moments):
            tag = uuid.uuid4().hex
            tags.append(tag)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), TAG: tag}
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline.ingest",
                    "--dataset",
                    "voxceleb2",
                    "--root",
                    str(corpus),
                    "--out",
                    str(tmp_path / f"out{i}"),
                    "--workers",
                    "2",
                    "--shard-samples",
                    "1",
                    "--frames-per-clip",
                    "1",
                    "--face-size",
                    "32",
                    "--no-progress",
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(moment)
            proc.send_signal(signal.SIGKILL)  # the main process only, as an OOM killer would
            proc.wait()
            deadline = time.time() + 20
            while _tagged(tag) and time.time() < deadline:
                time.sleep(0.1)
            left = _tagged(tag)
            if left:
                leftovers[f"kill {i} at {moment:.2f} s"] = left
        late = [pid for tag in tags for pid in _tagged(tag)]
        if late:
            leftovers["found at the end"] = late
    finally:
        for pid in {pid for tag in tags for pid in _tagged(tag)}:  # never leave strays behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not leftovers, f"processes outlived the killed ingest: {leftovers}"
