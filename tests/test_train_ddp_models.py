"""AICANet and BIANet (tiny backbones) under DDP with 2 gloo processes on CPU: each optimiser gets
exactly its own gradient averaged over ranks, replicas stay equal, training runs through
``launch.train`` and says loudly that the processes fell back to CPU; and
``train.find_unused_parameters=true`` is refused with the reason."""

import json
import subprocess
from pathlib import Path

import pytest
from accelerate_cpu import ACCELERATE, launch_command, launch_env

from launch.config import ConfigError, validate
from launch.logging_utils import read_log

ROOT = Path(__file__).resolve().parents[1]


def test_find_unused_parameters_is_refused_with_the_reason():
    with pytest.raises(
        ConfigError,
        match=r"find_unused_parameters=True is not supported: the discriminator's "
        r"loss is computed in model.loss\(\), outside the DDP forward",
    ):
        validate({"model": {"name": "aicanet"}, "train": {"find_unused_parameters": True}})


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate CLI not installed in this environment")
def test_real_models_under_two_process_ddp(tmp_path):
    env = launch_env()
    cmd = launch_command(str(ROOT / "tests" / "ddp_real_models.py"), str(tmp_path), "aicanet", "bianet")
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(line) == 1, proc.stdout
    results = json.loads(line[0][len("RESULT ") :])
    for name in ("aicanet", "bianet"):
        check, summary = results[name]["check"], results[name]["summary"]
        assert check["missing_grads"] == []
        assert check["ranks_grads_differ"] > 0  # the ranks saw different batches: averaging is visible
        assert check["disc_grad_max"] > 0  # the discriminator really has a gradient to average
        assert check["max_rel_grad_error"] < 1e-4, check
        assert check["weights_equal_across_ranks"]
        assert summary["processes"] == 2 and summary["steps"] == 3 and summary["device"].startswith("cpu")
        rows = read_log(tmp_path / name / "train_log.jsonl")
        assert [r["step"] for r in rows] == [1, 2, 3]
        assert all(v == v and abs(v) != float("inf") for r in rows for k, v in r.items() if k.startswith("loss/"))
    # device auto + ACCELERATE_USE_CPU: both ranks say where they run, the main one warns once per run
    assert proc.stderr.count("WARNING: 2 processes are training on CPU") == 2  # two runs (one per model)
    assert proc.stderr.count("training on cpu") == 4
