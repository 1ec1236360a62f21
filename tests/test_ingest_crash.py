"""Process-level failures: a worker that dies mid-clip (e.g. a decoder segfault on a hostile
file) costs only that clip; workers dying on every clip stop the run with a clear error; and a
second concurrent ingest of the same dataset folder is refused."""

from __future__ import annotations

import json
import os

from ingest_media import make_vox2_corpus

from pipeline.extract import ExtractSettings
from pipeline.ingest import IngestConfig, _extract_job, run_ingest

CRASH_KEY = "vox2_id00015_-vid10abcde_00002"


def crash_on_one_clip(record, split, info, settings):
    """Module-level so spawned workers can import it: kill the worker on one clip."""
    if record.key == CRASH_KEY:
        os._exit(139)
    return _extract_job(record, split, info, settings)


def test_worker_crash_skips_only_the_culprit(tmp_path):
    root = make_vox2_corpus(tmp_path / "vox2", clips_per_video=2, videos=1, with_txt=False)
    out_crash, out_clean = tmp_path / "crash", tmp_path / "clean"

    def cfg(out):
        return IngestConfig(
            dataset="voxceleb2",
            root=root,
            meta=root / "vox2_meta.csv",
            out=out,
            workers=2,
            shard_samples=3,
            eval_store=False,
            progress=False,
            extract=ExtractSettings(frames_per_clip=2, face_size=32),
        )

    run_ingest(cfg(out_crash), log=lambda *_: None, job=crash_on_one_clip)
    run_ingest(cfg(out_clean), log=lambda *_: None)
    report = json.loads((out_crash / "voxceleb2" / "train" / "report.json").read_text())
    assert [(s["key"], s["kind"]) for s in report["skipped"]] == [(CRASH_KEY, "worker_crash")]

    def rows(out):
        return [json.loads(line) for line in (out / "voxceleb2" / "train" / "manifest.jsonl").read_text().splitlines()]

    crashed, clean = rows(out_crash), rows(out_clean)
    assert [r["key"] for r in crashed] == [r["key"] for r in clean if r["key"] != CRASH_KEY]
    assert [r["sha1"] for r in crashed] == [r["sha1"] for r in clean if r["key"] != CRASH_KEY]


def crash_always(record, split, info, settings):
    os._exit(139)


def test_systemic_crashes_stop_the_run_with_a_clear_error(tmp_path):
    import pytest

    from pipeline.ingest import IngestError

    root = make_vox2_corpus(tmp_path / "vox2", clips_per_video=2, videos=1, with_txt=False)
    cfg = IngestConfig(
        dataset="voxceleb2",
        root=root,
        meta=root / "vox2_meta.csv",
        out=tmp_path / "out",
        workers=1,
        shard_samples=3,
        eval_store=False,
        progress=False,
        extract=ExtractSettings(frames_per_clip=2, face_size=32),
    )
    with pytest.raises(IngestError, match="5 clips in a row killed their worker"):
        run_ingest(cfg, log=lambda *_: None, job=crash_always)
    assert not list((tmp_path / "out").rglob("*.tar"))


def test_a_second_concurrent_ingest_of_the_same_dataset_is_refused(tmp_path):
    import fcntl

    import pytest

    from pipeline.ingest import IngestError

    root = make_vox2_corpus(tmp_path / "vox2", clips_per_video=1, videos=1, with_txt=False)
    lock = tmp_path / "out" / "voxceleb2" / ".ingest.lock"
    lock.parent.mkdir(parents=True)
    cfg = IngestConfig(
        dataset="voxceleb2",
        root=root,
        meta=root / "vox2_meta.csv",
        out=tmp_path / "out",
        workers=1,
        eval_store=False,
        progress=False,
    )
    with open(lock, "w") as holder:
        holder.write("pid 4242\n")
        holder.flush()
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(IngestError, match=r"being written by another ingest \(pid 4242\)"):
            run_ingest(cfg, log=lambda *_: None)
    run_ingest(cfg, log=lambda *_: None)  # lock released: runs
    assert (tmp_path / "out" / "voxceleb2" / "train" / "index.json").exists()
