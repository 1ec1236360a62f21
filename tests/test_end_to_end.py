"""The one slow test: synthetic corpus -> ingest -> train the demo preset (smaller) -> kill -9 in
the middle -> resume -> finish above chance on the validation identities -> load for evaluation.

Slow by nature (it renders media, ingests and trains a real model, ~3 minutes on 2 cores); every
part has fast tests of its own. Run with `pytest -m slow tests/test_end_to_end.py`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch import checkpoint as ckpt
from launch import e2e_config
from launch.logging_utils import read_log

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}


def run(*args, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_synth_ingest_train_kill_resume_beats_chance(tmp_path):
    from pipeline.synth import make_corpus

    corpus, shards, run_dir = tmp_path / "corpus", tmp_path / "shards", tmp_path / "run"
    make_corpus(corpus, **e2e_config.CORPUS, workers=2, progress=False)
    for dataset in ("voxceleb1", "voxceleb2"):
        run(*e2e_config.ingest_args(corpus, shards, dataset))
    val_ids = len(json.loads((shards / "voxceleb1" / "val" / "index.json").read_text())["identities"])
    assert val_ids >= 3 and (shards / "voxceleb1" / "val" / "eval.zarr").exists()

    train_cmd = e2e_config.train_args(shards, run_dir)

    # First run: kill -9 once a few end-of-epoch checkpoints exist (mid-training, no clean exit).
    first = subprocess.Popen(
        [sys.executable, *train_cmd], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and first.poll() is None:
        latest = ckpt.read_latest(run_dir / "checkpoints")
        if latest is not None and int(latest.name.split("-")[1]) >= 12:
            first.send_signal(signal.SIGKILL)
            killed_at = int(latest.name.split("-")[1])
            break
        time.sleep(0.5)
    first.wait(timeout=60)
    assert killed_at is not None, f"training never reached a checkpoint: {first.stderr.read()[-3000:]}"

    out = run(*train_cmd, "train.resume=auto", timeout=400)
    assert "resumed from" in out and "training finished" in out
    rows = read_log(run_dir / "train_log.jsonl", event=None)
    resumes = [r for r in rows if r["event"] == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] >= killed_at
    steps = [r["step"] for r in rows if r["event"] == "train"]
    assert steps == sorted(set(steps))  # no duplicated or reordered rows across the kill
    end = [r for r in rows if r["event"] == "end"][-1]
    assert end["epochs"] == 40

    # Above chance on unseen (validation) identities: the last validation, not the best-of-N.
    last_val = [r for r in rows if r["event"] == "val"][-1]
    assert last_val["val/tuples"] >= 300
    assert last_val["val/acc_1:2"] > 0.58, last_val

    # What evaluation loads: the best checkpoint, chosen on validation.
    model = ckpt.load_model(run_dir, "cpu")
    payload = ckpt.read_model_file(run_dir)
    assert payload["model_config"]["name"] == "baseline" and not model.training
    best_meta = json.loads((run_dir / "checkpoints" / "best" / "meta.json").read_text())
    assert best_meta["best"]["metric"] == "val/acc_1:2"
