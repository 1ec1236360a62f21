"""DALI behind its CPU safety net, tested on CPU by injecting failures: a start-up failure warns
once and falls back (auto) or stops with a clear error (forced dali); a batch DALI cannot decode
is decoded on the CPU, counted, and DALI is rebuilt for the next batch; the decoder in use and
the fallback count reach the training log and the summary."""

import warnings

import numpy as np
import pytest
import torch

from launch.train import format_summary
from launch.trainer.window import LogWindow, loader_decoder_summary
from shards.dali_decode import DaliStartupError, GuardedFaceDecoder
from shards.stream import BadSample


class FlakyDecoder:
    """Stands in for DaliFaceDecoder: fails on the call numbers in ``fail_on`` (shared counter)."""

    calls = 0

    def __init__(self, fail_on=()):
        self.fail_on = set(fail_on)

    def __call__(self, jpegs):
        FlakyDecoder.calls += 1
        if FlakyDecoder.calls in self.fail_on:
            raise RuntimeError(f"nvJPEG error on call {FlakyDecoder.calls}")
        return torch.full((len(jpegs), 2, 2, 3), 7, dtype=torch.uint8)


def cpu_faces(n, bad=()):
    return lambda: [
        BadSample("undecodable_jpeg", "bad") if i in bad else np.zeros((2, 2, 3), np.uint8) for i in range(n)
    ]


def failing_build():
    raise RuntimeError("nvjpegCreate failed: driver too old")


def test_startup_failure_auto_warns_once_and_decodes_on_cpu():
    with pytest.warns(RuntimeWarning, match="could not start .*driver too old") as caught:
        guard = GuardedFaceDecoder("dali-gpu", forced=False, build=failing_build)
    assert len(caught) == 1 and guard.kind == "pil"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no further warning per batch
        faces, by_dali = guard.decode([b"x"] * 3, cpu_faces(3))
    assert not by_dali and len(faces) == 3 and guard.report()["dali_disabled_cause"].startswith("the DALI")


def test_startup_failure_forced_dali_is_a_clear_error():
    with pytest.raises(
        DaliStartupError,
        match="data.face_decoder is 'dali' but the DALI decoder could not start .*driver too old.*face_decoder: auto",
    ):
        GuardedFaceDecoder("dali-gpu", forced=True, build=failing_build)


def test_a_failed_batch_decodes_on_cpu_is_counted_and_dali_restarts():
    FlakyDecoder.calls = 0
    builds = []
    guard = GuardedFaceDecoder("dali-gpu", forced=True, build=lambda: builds.append(1) or FlakyDecoder(fail_on={2}))
    results = [guard.decode([b"x"] * 2, cpu_faces(2)) for _ in range(4)]
    assert [by_dali for _, by_dali in results] == [True, False, True, True]  # recovered after one batch
    assert int(results[1][0][0].max()) == 0 and int(results[2][0][0].max()) == 7
    assert guard.fallback_batches == 1 and guard.restarts == 1 and len(builds) == 2
    assert guard.kind == "dali-gpu"


def test_bad_jpegs_never_disable_dali_but_repeated_dali_failures_do():
    FlakyDecoder.calls = 0
    guard = GuardedFaceDecoder("dali-gpu", forced=True, build=lambda: FlakyDecoder(fail_on=range(1, 100)))
    for _ in range(5):  # each batch really holds a bad JPEG: data errors, DALI stays
        faces, _ = guard.decode([b"x"] * 2, cpu_faces(2, bad={1}))
        assert isinstance(faces[1], BadSample)
    assert guard.fallback_batches == 5 and guard.kind == "dali-gpu"
    guard.decode([b"x"] * 2, cpu_faces(2))
    guard.decode([b"x"] * 2, cpu_faces(2))
    with pytest.raises(DaliStartupError, match="failed on 3 batches in a row .*nvJPEG error"):
        guard.decode([b"x"] * 2, cpu_faces(2))  # forced: stop with the cause
    FlakyDecoder.calls = 0
    auto = GuardedFaceDecoder("dali-gpu", forced=False, build=lambda: FlakyDecoder(fail_on=range(1, 100)))
    with pytest.warns(RuntimeWarning, match="failed on 3 batches in a row"):
        for _ in range(3):
            faces, _ = auto.decode([b"x"] * 2, cpu_faces(2))
            assert len(faces) == 2  # every batch still decoded
    assert auto.kind == "pil" and auto.fallback_batches == 3


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    from shards.testing import SyntheticSpec, make_shard_set

    spec = SyntheticSpec(num_identities=6, videos_per_identity=2, clips_per_video=2, num_faces=2, face_size=32)
    return str(make_shard_set(tmp_path_factory.mktemp("dali") / "s", spec))


def loader_cfg(shard_dir, **kw):
    return dict(shards=[shard_dir], batch_size=3, k=2, buffer_size=12, crop_seconds=0.5, **kw)


def test_loader_forced_dali_that_cannot_start_fails_at_construction(shard_dir, monkeypatch):
    pytest.importorskip("nvidia.dali")
    import shards.dali_decode
    from shards.loader import TupleLoader

    def broken(*args, **kwargs):
        raise RuntimeError("no nvJPEG")

    monkeypatch.setattr(shards.dali_decode.DaliFaceDecoder, "__init__", broken)
    with pytest.raises(DaliStartupError, match="no nvJPEG"):
        TupleLoader(loader_cfg(shard_dir, face_decoder="dali"))


def test_loader_recovers_from_a_dali_batch_error(shard_dir, monkeypatch):
    pytest.importorskip("nvidia.dali")
    import shards.dali_decode
    from shards.loader import TupleLoader

    reference = list(TupleLoader(loader_cfg(shard_dir, face_decoder="pil")))
    real_call = shards.dali_decode.DaliFaceDecoder.__call__
    calls = []

    def flaky(self, jpegs):
        calls.append(len(jpegs))
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access")
        return real_call(self, jpegs)

    monkeypatch.setattr(shards.dali_decode.DaliFaceDecoder, "__call__", flaky)
    loader = TupleLoader(loader_cfg(shard_dir, face_decoder="dali"))
    batches = list(loader)
    report = loader.report()
    assert len(batches) == len(reference) >= 3
    assert report["dali_fallback_batches"] == 1 and report["dali_restarts"] == 1
    assert report["face_decoder"] == "dali-cpu" and len(calls) == len(batches)
    for a, b in zip(reference, batches, strict=True):
        assert a["candidate_key"] == b["candidate_key"]
        assert (a["faces"] - b["faces"]).abs().max().item() <= 2 * 2 / 255 + 1e-6
    assert loader.skip_counts.get("undecodable_jpeg", 0) == 0  # a DALI error is not a bad item
    loader.close()


class ReportingLoader:
    def report(self):
        return {"face_decoder": "pil", "dali_fallback_batches": 4, "coverage": 0.5}


def test_decoder_and_fallback_count_reach_the_log_row_and_summary():
    from types import SimpleNamespace

    accelerator = SimpleNamespace(device=torch.device("cpu"), num_processes=1)
    row = LogWindow().row(accelerator, step=1, epoch=0.1, optimizers=[], loader=ReportingLoader())
    assert row["loader/face_decoder"] == "pil" and row["loader/dali_fallback_batches"] == 4.0
    summary = {
        "steps": 1,
        "epochs": 0.1,
        "processes": 1,
        "seconds": 1.0,
        "tuples_per_s": 1.0,
        "last_val": None,
        "best": None,
        "output_dir": "x",
        "latest_checkpoint": "y",
        **loader_decoder_summary(ReportingLoader()),
    }
    assert "face decoder     pil (4 batches fell back to the CPU decoder)" in format_summary(summary)
