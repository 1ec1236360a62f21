"""Every unusable input is skipped, reported with its reason, and the run completes.

Two sources of bad inputs: the synthetic corpus's `--inject-faults` (its `faults.json` is the
answer key) and files planted here for the cases it does not cover (a corrupt mp4 whose m4a is
fine, an mp4 without audio and without m4a, missing faces, an orphan m4a, too-short audio).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest_media import make_vox2_corpus, write_m4a, write_mp4

from pipeline.extract import ExtractSettings
from pipeline.ingest import IngestConfig, run_ingest

#: faults.json kind -> the skip kinds the ingest may report for it (a truncated mp4+m4a pair is
#: a damaged video: `corrupt_video`, with the unreadable audio named in the reason).
EXPECTED_KINDS = {
    "truncated_mp4": {"corrupt_video"},
    "no_audio_track": {"no_audio_track"},
    "silent_audio": {"silent_audio"},
    "zero_length_audio": {"zero_length_audio"},
    "unreadable_image": {"unreadable_image"},
    "bad_box_file": {"bad_box_file"},
    "missing_meta_row": {"missing_meta_row"},
}


def _ingest(root: Path, out: Path, dataset: str, meta_name: str) -> None:
    run_ingest(
        IngestConfig(
            dataset=dataset,
            root=root,
            meta=root / meta_name,
            out=out,
            workers=2,
            shard_samples=4,
            extract=ExtractSettings(frames_per_clip=2, face_size=48),
            progress=False,
        ),
        log=lambda *_: None,
    )


def _all_skips(out: Path, dataset: str) -> list[dict]:
    report = json.loads((out / dataset / "report.json").read_text())
    skips = list(report["skipped_outside_splits"])
    for split_report in sorted((out / dataset).glob("*/report.json")):
        skips += json.loads(split_report.read_text())["skipped"]
    return skips


def _written_keys(out: Path, dataset: str) -> set[str]:
    keys = set()
    for manifest in (out / dataset).glob("*/manifest.jsonl"):
        keys |= {json.loads(line)["key"] for line in manifest.read_text().splitlines()}
    return keys


@pytest.fixture(scope="module")
def synth_faulty(tmp_path_factory):
    synth = pytest.importorskip("pipeline.synth")
    base = tmp_path_factory.mktemp("faulty")
    corpus = base / "corpus"
    synth.make_corpus(
        corpus,
        identities=6,
        videos_per_identity=2,
        clips_per_video=1,
        min_seconds=1.0,
        max_seconds=1.5,
        workers=1,
        inject_faults=True,
        progress=False,
    )
    out = base / "out"
    _ingest(corpus / "voxceleb1", out, "voxceleb1", "vox1_meta.csv")
    _ingest(corpus / "voxceleb2", out, "voxceleb2", "vox2_meta.csv")
    faults = json.loads((corpus / "faults.json").read_text())
    truth = json.loads((corpus / "ground_truth.json").read_text())
    return corpus, out, faults, truth


@pytest.mark.parametrize("dataset", ["voxceleb1", "voxceleb2"])
def test_every_injected_fault_is_skipped_with_its_reason(synth_faulty, dataset):
    _, out, faults, _ = synth_faulty
    skips = _all_skips(out, dataset)
    by_key: dict[str, set[str]] = {}
    for s in skips:
        by_key.setdefault(s.get("key"), set()).add(s["kind"])
    mine = [f for f in faults if f["dataset"] == dataset]
    assert mine, "the synthetic corpus should inject faults into both datasets"
    for fault in mine:
        for key in fault["keys"]:
            assert key in by_key, f"{fault['kind']} {fault['path']} ({key}) is not in the report"
            assert by_key[key] & EXPECTED_KINDS[fault["kind"]], (fault, by_key[key])
    assert all(s["reason"] for s in skips)


@pytest.mark.parametrize("dataset", ["voxceleb1", "voxceleb2"])
def test_good_clips_are_all_written_and_bad_ones_are_not(synth_faulty, dataset):
    corpus, out, faults, _ = synth_faulty
    bad = {k for f in faults if f["dataset"] == dataset for k in f["keys"]}
    written = _written_keys(out, dataset)
    assert not written & bad
    sub = corpus / dataset
    if dataset == "voxceleb2":
        on_disk = {f"vox2_{p.parts[-3]}_{p.parts[-2]}_{p.stem}" for p in sub.glob("*/mp4/*/*/*.mp4")}
    else:
        on_disk = {f"vox1_{p.parts[-3]}_{p.parts[-2]}_{p.stem}" for p in sub.glob("wav/*/*/*.wav")}
    on_disk = {k.replace(".", "-") for k in on_disk}
    assert written == on_disk - bad


def test_own_planted_faults(tmp_path):
    root = make_vox2_corpus(tmp_path / "vox2", clips_per_video=1, videos=1, with_m4a_for=(), with_txt=False)
    ident_dir = root / "dev" / "mp4" / "id00012"
    # corrupt mp4 (random bytes) next to a perfectly good m4a: the video is the problem
    (ident_dir / "-vid00abcde" / "00009.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    write_m4a(root / "dev" / "aac" / "id00012" / "-vid00abcde" / "00009.m4a", 1.0)
    # mp4 without an audio track and no m4a
    write_mp4(ident_dir / "-vid00abcde" / "00010.mp4", 1.0, audio=False)
    # too short to be a voice sample
    write_mp4(ident_dir / "-vid00abcde" / "00011.mp4", 0.2)
    # an m4a with no mp4 (no faces)
    write_m4a(root / "dev" / "aac" / "id00012" / "zzzzzzzzzzz" / "00001.m4a", 1.0)
    out = tmp_path / "out"
    _ingest(root, out, "voxceleb2", "vox2_meta.csv")
    kinds = {s.get("key"): s["kind"] for s in _all_skips(out, "voxceleb2")}
    assert kinds == {
        "vox2_id00012_-vid00abcde_00009": "corrupt_video",
        "vox2_id00012_-vid00abcde_00010": "no_audio_track",
        "vox2_id00012_-vid00abcde_00011": "short_audio",
        "vox2_id00012_zzzzzzzzzzz_00001": "missing_video",
    }
    assert len(_written_keys(out, "voxceleb2")) == 5  # the five good clips of the base corpus


def test_an_eval_split_whose_every_clip_is_skipped_is_up_to_date_on_rerun(tmp_path):
    """No samples means no eval.zarr to build: an unchanged re-run must do nothing, not re-finalize."""
    root = make_vox2_corpus(
        tmp_path / "vox2", clips_per_video=1, videos=1, seconds=0.2, with_m4a_for=(), with_txt=False
    )
    cfg = IngestConfig(
        dataset="voxceleb2",
        root=root,
        meta=root / "vox2_meta.csv",
        out=tmp_path / "out",
        splits=["test"],
        workers=1,
        shard_samples=4,
        progress=False,
        extract=ExtractSettings(frames_per_clip=2, face_size=32),
    )
    first = run_ingest(cfg, log=lambda *_: None)
    assert first["splits"]["test"]["samples"] == 0
    assert first["splits"]["test"]["skipped_by_kind"] == {"short_audio": 2}
    assert run_ingest(cfg, log=lambda *_: None)["status"] == "up_to_date"
