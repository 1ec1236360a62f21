"""benchmarks/project_scale.py turns the committed benchmark results into the VoxCeleb2-dev
projection the docs quote; it must run on them and scale as a projection should."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_projection_runs_on_the_committed_results_and_scales_with_cores(tmp_path):
    out = tmp_path / "p.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "project_scale.py"),
            "--results",
            str(ROOT / "benchmarks" / "results"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ingest = json.loads(out.read_text())["ingest"]
    h16, h64 = ingest["hosts"]["16_cores"], ingest["hosts"]["64_cores"]
    assert ingest["cpu_hours"] > 0 and 0 < ingest["shard_gb"] < ingest["source_gb"]
    # four times the workers: about a quarter of the wall time, four times the throughput
    assert abs(h16["wall_hours"] / h64["wall_hours"] - 4) < 0.2
    assert abs(h64["clips_per_s"] / h16["clips_per_s"] - 4) < 0.1
    assert out.with_suffix(".md").is_file()


def test_missing_results_are_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "project_scale.py"),
            "--results",
            str(tmp_path),
            "--out",
            str(tmp_path / "p.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
