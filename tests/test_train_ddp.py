"""A real 2-process gloo run through `accelerate launch` on CPU (the fakes keep it fast): it must
finish (no DDP hang), write one RNG/loader file per rank, gather validation from both ranks, log
once, and resume with the same number of processes."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from accelerate_cpu import ACCELERATE, launch_command, launch_env

from launch import checkpoint as ckpt
from launch.config import MODULE_GROUPS
from launch.logging_utils import read_log

ROOT = Path(__file__).resolve().parents[1]


def launch(config: Path, *overrides, timeout=240):
    env = launch_env()
    cmd = launch_command(str(ROOT / "tests" / "train_fakes.py"), "--config", str(config), *overrides)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SUMMARY ")]
    assert len(line) == 1, proc.stdout  # printed by the main process only
    return json.loads(line[0][len("SUMMARY ") :])


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate CLI not installed in this environment")
def test_two_process_gloo_run_and_resume(tmp_path):
    cfg = {
        "data": {"k": 2, "batch_size": 8, "batches_per_epoch": 5, "identities": 20, "direction": "both"},
        "model": {"name": "fake"},
        "optim": {"lr": {g: 1e-2 for g in MODULE_GROUPS}},
        "train": {
            "epochs": 2,
            "output_dir": str(tmp_path / "run"),
            "log_every": 1,
            "progress": False,
            "log_with": [],
            "cpu": True,
            "val_data": "fake-val",
            "val_min_trials": 32,
            "checkpoint_every": 3,
        },
    }
    config = tmp_path / "fake.yaml"
    config.write_text(yaml.safe_dump(cfg))
    first = launch(config, "train.max_steps=7")
    assert first["processes"] == 2 and first["steps"] == 7
    latest = ckpt.read_latest(tmp_path / "run" / "checkpoints")
    assert sorted(p.name for p in latest.glob("rank-*.pt")) == ["rank-00000.pt", "rank-00001.pt"]
    r0, r1 = (torch.load(latest / f"rank-0000{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["rng"]["torch"], r1["rng"]["torch"])  # independent per-rank streams
    # Validation gathered both ranks' tuples: 2 batches each of 8.
    assert first["last_val"]["val/tuples"] == 32

    final = launch(config, "train.resume=auto")
    assert final["steps"] == 10 and final["epochs"] == 2.0
    rows = read_log(tmp_path / "run" / "train_log.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 11))  # one writer, no duplicated rows
    assert all(r["loss/total"] == r["loss/total"] for r in rows)
