"""benchmarks/gpu_check.sh and its helper stay runnable without a GPU: the shell script parses,
the helper's configs validate for both models and both sizes, and the CPU smoke mode runs every
check end to end and passes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from launch.config import check_owned_sections, validate

ROOT = Path(__file__).resolve().parents[1]


def _load_gpu_check():
    """benchmarks/gpu_check.py by its path (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


gpu_check = _load_gpu_check()


def test_shell_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], check=True)


def test_pixel_difference():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 255
    b[1] = 1
    d = gpu_check.pixel_difference(a, b)
    assert d["max_abs"] == 255 and d["mean_abs"] == pytest.approx((255 + 48) / 96)


@pytest.mark.parametrize("model", gpu_check.MODELS)
@pytest.mark.parametrize("device, full", [("cuda", True), ("cpu", False)])
def test_training_configs_validate(tmp_path, model, device, full):
    cfg = validate(gpu_check.train_config(tmp_path / "s", tmp_path / "run", model, device, 200, full))
    check_owned_sections(cfg)
    assert cfg["train"]["max_steps"] == 200 and cfg["data"]["steps_per_epoch"] == 200
    assert cfg["train"]["mixed_precision"] == ("bf16" if device == "cuda" else "no")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_mode_without_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="torch sees no CUDA device"):
        gpu_check.main(["--device", "cuda", "--out", str(tmp_path / "o.json"), "--work", str(tmp_path / "w")])


@pytest.mark.slow
def test_cpu_smoke_mode_runs_every_check(tmp_path):
    pytest.importorskip("nvidia.dali")
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "gpu_check.sh"),
            "--device",
            "cpu",
            "--steps",
            "2",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(out.read_text())
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:], result["pass"])
    assert all(result["pass"].values()) and len(result["pass"]) == 5
    assert result["decode"]["backend"] == "cpu" and result["decode"]["mean_abs"] <= 1.5
    assert result["recovery"]["guarded_bad_items"] == [7] and result["recovery"]["raw_corrupt_batch_raised"]
    assert result["loader"]["same_plan"] and result["loader"]["dali_threads"]["face_decoder"] == "dali-cpu"
    for model in gpu_check.MODELS:
        for run in ("on_device", "on_cpu"):
            r = result["train"][model][run]
            assert r["rc"] == 0 and r["steps"] == 2 and r["losses_finite"] and r["device"] == "cpu"
