"""kill -9 in the middle of an ingest, re-run the same command: the result equals an
uninterrupted run byte for byte (shards, DALI indexes, manifest, index.json, eval.zarr contents)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ingest_media import make_vox2_corpus

from shards.evalstore import EvalStore

ROOT = Path(__file__).resolve().parents[1]


def _command(corpus: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.ingest",
        "--dataset",
        "voxceleb2",
        "--root",
        str(corpus),
        "--out",
        str(out),
        "--workers",
        "1",
        "--shard-samples",
        "3",
        "--frames-per-clip",
        "2",
        "--face-size",
        "64",
        "--no-progress",
    ]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file a consumer reads (reports carry timings and are excluded)."""
    files = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_file() and ".ingest" not in rel and "eval.zarr" not in rel and not rel.endswith("report.json"):
            files[rel] = p.read_bytes()
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_vox2_corpus(tmp_path_factory.mktemp("resume") / "vox2", clips_per_video=2, videos=2)


def test_killed_and_resumed_equals_uninterrupted(corpus, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(_command(corpus, clean), check=True, env=_env(), capture_output=True, cwd=ROOT)

    proc = subprocess.Popen(
        _command(corpus, killed),
        env=_env(),
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sidecars = killed / "voxceleb2" / "train" / ".ingest"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and len(list(sidecars.glob("shard-*.json"))) < 1:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process and its workers
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "ingest finished before it could be killed"
    assert not (killed / "voxceleb2" / "test" / "index.json").exists()

    resumed = subprocess.run(_command(corpus, killed), check=True, env=_env(), capture_output=True, text=True, cwd=ROOT)
    assert "resuming" in resumed.stdout
    assert not list(killed.rglob("*.partial"))
    a, b = _snapshot(clean), _snapshot(killed)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs between the clean and the resumed run"
    ea, eb = (
        EvalStore(clean / "voxceleb2" / "test" / "eval.zarr"),
        EvalStore(killed / "voxceleb2" / "test" / "eval.zarr"),
    )
    assert ea.keys == eb.keys
    for i in range(len(ea)):
        np.testing.assert_array_equal(ea.faces(i), eb.faces(i))
        np.testing.assert_array_equal(ea.audio(i), eb.audio(i))

    again = subprocess.run(_command(corpus, killed), check=True, env=_env(), capture_output=True, text=True, cwd=ROOT)
    assert "nothing to do" in again.stdout
