"""Ingest as pure shard tasks on other engines: a Dask LocalCluster run (with a worker killed in
the middle of a shard task) and a 2-part job array + merge give the same bytes as a local run;
merging parts made with other settings, or with a part missing, is refused naming it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from ingest_media import make_vox2_corpus

from pipeline.extract import ExtractSettings
from pipeline.ingest import IngestConfig, IngestError, run_ingest


def _cfg(corpus: Path, out: Path, **kw) -> IngestConfig:
    extract = kw.pop("extract", ExtractSettings(frames_per_clip=2, face_size=32))
    return IngestConfig(
        dataset="voxceleb2",
        root=corpus,
        meta=corpus / "vox2_meta.csv",
        out=out,
        workers=2,
        shard_samples=3,
        progress=False,
        extract=extract,
        **kw,
    )


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file a consumer reads (reports carry timings; .ingest is bookkeeping)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and ".ingest" not in p.relative_to(out).as_posix()
        and "eval.zarr" not in p.as_posix()
        and p.name != "report.json"
    }


def _assert_same(a: Path, b: Path) -> None:
    sa, sb = _snapshot(a), _snapshot(b)
    assert sorted(sa) == sorted(sb)
    assert any(k.endswith(".tar") for k in sa)
    for name in sa:
        assert sa[name] == sb[name], f"{name} differs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_vox2_corpus(tmp_path_factory.mktemp("dist") / "vox2", clips_per_video=2, videos=2, with_txt=False)


@pytest.fixture(scope="module")
def local_out(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    run_ingest(_cfg(corpus, out), log=lambda *_: None)
    return out


def test_dask_local_cluster_with_a_killed_worker_equals_a_local_run(corpus, local_out, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    marker = tmp_path / "killed-once"
    # read by pipeline.shardtask in the dask worker processes: the first shard task to create the
    # marker kills its own worker halfway through its clips
    monkeypatch.setenv("VOXFACE_TEST_KILL_WORKER_ONCE", str(marker))
    out = tmp_path / "dask"
    report = run_ingest(_cfg(corpus, out, executor="dask"), log=lambda *_: None)
    assert marker.exists(), "no dask worker was killed: the test did not test a re-run"
    _assert_same(local_out, out)
    for split in ("train", "test"):
        rows = (out / "voxceleb2" / split / "manifest.jsonl").read_text().splitlines()
        keys = [json.loads(r)["key"] for r in rows]
        assert len(keys) == len(set(keys)), "a re-run task duplicated samples"
        split_report = json.loads((out / "voxceleb2" / split / "report.json").read_text())
        assert split_report["skipped"] == [], "the killed task lost clips"
    assert report["splits"]["train"]["samples"] > 0
    assert not list(out.rglob("*.partial")) and not list(out.rglob("*.attempt"))


def test_two_parts_then_merge_equal_a_local_run(corpus, local_out, tmp_path):
    out = tmp_path / "parts"
    with ThreadPoolExecutor(2) as pool:
        first = run_ingest(_cfg(corpus, out, num_parts=2, part=0), log=lambda *_: None, executor=pool)
        assert first["status"] == "part_done"
        assert not (out / "voxceleb2" / "train" / "index.json").exists()
        # the merge refuses while part 1 has not run, and names it
        with pytest.raises(IngestError, match=r"part 1 of 2 not complete \(part 1: missing") as err:
            run_ingest(_cfg(corpus, out, num_parts=2, merge_only=True), log=lambda *_: None)
        assert "\n" not in str(err.value) and "--part 1" in str(err.value)
        # part 1 is the last to finish: it merges
        last = run_ingest(_cfg(corpus, out, num_parts=2, part=1), log=lambda *_: None, executor=pool)
    assert last["splits"]["train"]["status"] == "written"
    _assert_same(local_out, out)
    tars = {p.name for p in (out / "voxceleb2").rglob("*.tar")}
    assert len(tars) >= 3  # shards of both parts
    again = run_ingest(_cfg(corpus, out, num_parts=2, merge_only=True), log=lambda *_: None)
    assert again["status"] == "up_to_date"


def test_merging_parts_made_with_different_settings_is_refused(corpus, tmp_path):
    out = tmp_path / "mixed"
    with ThreadPoolExecutor(2) as pool:
        run_ingest(_cfg(corpus, out, num_parts=2, part=0), log=lambda *_: None, executor=pool)
        # parts started at the same moment both find no plan yet: simulate it for part 1
        for plan in (out / "voxceleb2").glob("*/.ingest/plan.json"):
            plan.unlink()
        other = ExtractSettings(frames_per_clip=2, face_size=32, jpeg_quality=80)
        with pytest.raises(
            IngestError,
            match=r"part 0 of 2 was made with different settings "
            r"or inputs \(jpeg_quality: 90 -> 80\)",
        ) as err:
            run_ingest(_cfg(corpus, out, num_parts=2, part=1, extract=other), log=lambda *_: None, executor=pool)
    assert "\n" not in str(err.value)
    assert not list(out.rglob("index.json"))


def test_cli_part_arguments_are_checked(corpus, tmp_path, capsys):
    from pipeline.ingest import main

    base = ["--dataset", "voxceleb2", "--root", str(corpus), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(base + ["--num-parts", "2"]) == 2
    assert "--num-parts 2 needs --part 0..1" in capsys.readouterr().err
    assert main(base + ["--num-parts", "2", "--part", "2"]) == 2
    assert "--part must be in 0..1, got 2" in capsys.readouterr().err
    assert main(base + ["--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler needs --executor dask" in capsys.readouterr().err


def test_a_part_finishing_after_the_merge_does_not_merge_again(corpus, tmp_path, monkeypatch):
    """Parts finishing together: the one that gets the merge lock second finds the set merged
    and leaves it alone (no second manifest/index/eval.zarr write)."""
    import pipeline.ingest as ingest_mod

    out = tmp_path / "late"
    real_lock = ingest_mod._merge_lock
    stamps = {}

    @contextmanager
    def lock_after_part_1_merged(dataset_dir):
        # the re-run of part 0 reaches the merge; part 1 finishes and merges just before it
        monkeypatch.setattr(ingest_mod, "_merge_lock", real_lock)
        assert (
            run_ingest(_cfg(corpus, out, num_parts=2, part=1), log=lambda *_: None, executor=pool)["splits"]["train"][
                "status"
            ]
            == "written"
        )
        stamps["merged"] = (out / "voxceleb2" / "train" / "index.json").stat().st_mtime_ns
        with real_lock(dataset_dir):
            yield

    with ThreadPoolExecutor(2) as pool:
        run_ingest(_cfg(corpus, out, num_parts=2, part=0), log=lambda *_: None, executor=pool)
        monkeypatch.setattr(ingest_mod, "_merge_lock", lock_after_part_1_merged)
        late = run_ingest(_cfg(corpus, out, num_parts=2, part=0), log=lambda *_: None, executor=pool)
    assert late["status"] == "up_to_date"
    assert (out / "voxceleb2" / "train" / "index.json").stat().st_mtime_ns == stamps["merged"]
