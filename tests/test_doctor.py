"""`python -m pipeline.doctor` on the small synthetic corpus with injected faults (issue 12 item 6).

The corpus's `faults.json` is the answer key for the file checks; further faults (a missing face
folder, a meta row for an identity that was never downloaded, a missing split, a full disk) are
planted in copies here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ingest_media import write_wav

from pipeline import doctor, doctor_checks
from pipeline.extract import ExtractSettings
from pipeline.ingest import IngestConfig, run_ingest
from pipeline.probe import probe_file
from pipeline.synth.testing import cached_corpus

#: faults.json kind -> what the structural file check reports for each bad file (the probe
#: does not decode, so silent audio is only found by the sample check)
PROBE_KINDS = {
    "truncated_mp4": {"corrupt_video", "unreadable_audio"},
    "no_audio_track": {"no_audio_track", None},
    "silent_audio": {None},
    "zero_length_audio": {"zero_length_audio"},
    "unreadable_image": {"unreadable_image"},
    "bad_box_file": {"bad_box_file"},
}
SMALL = ["--frames-per-clip", "2", "--face-size", "48", "--no-progress"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The session's tiny faulty corpus (shared with the synth tests; never modified here:
    tests that plant faults work on copies)."""
    return cached_corpus(tmp_path_factory.getbasetemp(), inject_faults=True)


def _doctor(capsys, *args) -> tuple[int, dict, str]:
    rc = doctor.main([*args, *SMALL])
    out = capsys.readouterr().out
    json_path = Path(args[args.index("--json") + 1]) if "--json" in args else None
    return rc, json.loads(json_path.read_text()) if json_path else {}, out


@pytest.mark.parametrize("dataset", ["voxceleb1", "voxceleb2"])
def test_full_check_finds_every_injected_bad_file_with_the_ingest_kind(corpus, dataset, tmp_path, capsys):
    rc, report, out = _doctor(
        capsys, "--dataset", dataset, "--root", str(corpus / dataset), "--full", "--json", str(tmp_path / "r.json")
    )
    found = {b["path"]: b["kind"] for b in report["file_check"]["bad"]}
    faults = [
        f
        for f in json.loads((corpus / "faults.json").read_text())
        if f["dataset"] == dataset and f["kind"] in PROBE_KINDS
    ]
    assert faults
    for fault in faults:
        rel = fault["path"].split("/", 1)[1]  # relative to the dataset root
        assert found.get(rel) in PROBE_KINDS[fault["kind"]], (fault, found.get(rel))
    assert set(found) <= {f["path"].split("/", 1)[1] for f in faults}  # no good file is blamed
    # the sample (every clip here) uses the ingest's extraction: silent audio is found too
    assert report["sample_check"]["verdicts"]["silent_audio"] >= 1
    # the orphan identity of the corpus is on disk without a meta row
    orphan = next(
        f["identity"]
        for f in json.loads((corpus / "faults.json").read_text())
        if f["dataset"] == dataset and f["kind"] == "missing_meta_row"
    )
    assert orphan in report["identities"]["on_disk_not_in_meta"]
    # several bad files out of a few dozen is more than 5 %: blocking, exit 1, said in the summary
    assert rc == 1 and not report["ok"] and "NOT READY" in out and "BLOCKING [bad_files]" in out


def test_counts_per_split_match_the_meta_file_and_the_disk(corpus, tmp_path, capsys):
    rc, report, _ = _doctor(
        capsys,
        "--dataset",
        "voxceleb2",
        "--root",
        str(corpus / "voxceleb2"),
        "--max-bad-fraction",
        "1",
        "--json",
        str(tmp_path / "r.json"),
    )
    truth = json.loads((corpus / "ground_truth.json").read_text())
    people = [p for p in truth["identities"] if p["dataset"] == "voxceleb2"]
    expected = {"train": sum(p["set"] == "dev" for p in people), "test": sum(p["set"] == "test" for p in people)}
    assert {s: c["meta_identities"] for s, c in report["splits"].items()} == expected
    assert {s: c["identities_on_disk"] for s, c in report["splits"].items()} == expected
    on_disk = {
        "train": len(list((corpus / "voxceleb2" / "dev" / "mp4").glob("*/*/*.mp4"))),
        "test": len(list((corpus / "voxceleb2" / "test" / "mp4").glob("*/*/*.mp4"))),
    }
    orphan_clips = 1  # the orphan identity's clip is under dev/ but has no meta row
    assert report["splits"]["train"]["clips"] == on_disk["train"] - orphan_clips
    assert report["splits"]["test"]["clips"] == on_disk["test"]
    assert rc == 0 and report["ok"]  # bad files below --max-bad-fraction 1: warnings only
    assert {p["severity"] for p in report["problems"]} == {"warning"}


def test_missing_faces_and_identities_missing_on_either_side(corpus, tmp_path, capsys):
    root = Path(shutil.copytree(corpus / "voxceleb1", tmp_path / "voxceleb1"))
    meta = (root / "vox1_meta.csv").read_text().splitlines()
    # a training identity (letter split F-Z) loses its face folder
    victim_id, victim_name = next(row.split("\t")[:2] for row in meta[1:] if row.split("\t")[1][0] >= "F")
    shutil.rmtree(root / "unzippedIntervalFaces" / "data" / victim_name)
    # a meta row for an identity that was never downloaded, with a name that puts it in test (C/D/E)
    (root / "vox1_meta.csv").write_text("\n".join([*meta, "id10999\tDe_Absent\tm\tUK\tdev"]) + "\n")
    # a name-keyed audio folder that is neither an id nor a name of the meta file
    write_wav(root / "wav" / "Zz_Stranger" / "abcdefghijk" / "00001.wav")
    rc, report, out = _doctor(
        capsys,
        "--dataset",
        "voxceleb1",
        "--root",
        str(root),
        "--max-bad-fraction",
        "1",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert victim_id in report["missing_inputs"]["missing_faces"]["identities_with_no_usable_clip"]
    assert report["splits"]["test"]["identities_missing_list"] == ["id10999"]
    assert report["identities"]["in_meta_not_on_disk_count"] >= 2  # the absent one and the faceless one
    assert report["identities"]["unnamed_folders"] == ["Zz_Stranger"]
    assert "missing faces" in out and "Zz_Stranger" in out and rc == 0


def test_a_split_with_no_clip_on_disk_is_blocking(corpus, tmp_path, capsys):
    root = Path(shutil.copytree(corpus / "voxceleb2", tmp_path / "voxceleb2"))
    shutil.rmtree(root / "test")
    rc, report, out = _doctor(
        capsys,
        "--dataset",
        "voxceleb2",
        "--root",
        str(root),
        "--max-bad-fraction",
        "1",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert rc == 1 and [p["code"] for p in report["problems"] if p["severity"] == "blocking"] == ["empty_split"]
    assert "split test: none of its" in out


def test_meta_and_argument_errors(corpus, tmp_path, capsys):
    rc, report, out = _doctor(
        capsys,
        "--dataset",
        "voxceleb1",
        "--root",
        str(corpus / "voxceleb1"),
        "--meta",
        str(corpus / "voxceleb2" / "vox2_meta.csv"),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert rc == 1 and report["problems"][0]["code"] == "meta" and "voxceleb2 id" in out
    assert doctor.main(["--dataset", "voxceleb1", "--root", str(tmp_path / "nowhere"), *SMALL]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_disk_estimate_matches_the_ingest_and_a_full_disk_blocks(corpus, tmp_path, capsys, monkeypatch):
    rc, report, _ = _doctor(
        capsys,
        "--dataset",
        "voxceleb2",
        "--root",
        str(corpus / "voxceleb2"),
        "--max-bad-fraction",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--json",
        str(tmp_path / "r.json"),
    )
    out = tmp_path / "shards"
    run_ingest(
        IngestConfig(
            dataset="voxceleb2",
            root=corpus / "voxceleb2",
            meta=corpus / "voxceleb2" / "vox2_meta.csv",
            out=out,
            splits=["test"],
            workers=1,
            shard_samples=4,
            progress=False,
            extract=ExtractSettings(frames_per_clip=2, face_size=48),
        ),
        log=lambda *_: None,
    )
    actual = json.loads((out / "voxceleb2" / "test" / "index.json").read_text())["total_bytes"]
    estimate = report["disk"]["splits"]["test"]["shard_bytes"]  # the test split has no injected fault
    assert 0.9 * actual <= estimate <= 1.1 * actual
    zarr_bytes = sum(p.stat().st_size for p in (out / "voxceleb2" / "test" / "eval.zarr").rglob("*") if p.is_file())
    assert zarr_bytes <= report["disk"]["splits"]["test"]["eval_store_bytes_at_most"]
    assert rc == 0 and report["disk"]["free_bytes"] > 0
    # the same copy against a nearly full disk
    monkeypatch.setattr(
        doctor_checks.shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000)
    )
    rc, report, out_text = _doctor(
        capsys,
        "--dataset",
        "voxceleb2",
        "--root",
        str(corpus / "voxceleb2"),
        "--max-bad-fraction",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert rc == 1 and "BLOCKING [disk_space]" in out_text


def test_probe_kinds_on_planted_files(tmp_path):
    from ingest_media import write_mp4, write_wav

    good = write_mp4(tmp_path / "good.mp4", 1.0, size=64)
    assert probe_file(str(good), "video+audio") is None
    data = good.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert probe_file(str(tmp_path / "cut.mp4"), "video+audio")[0] == "corrupt_video"
    (tmp_path / "text.mp4").write_text("hello" * 100)
    assert probe_file(str(tmp_path / "text.mp4"), "video")[0] == "corrupt_video"
    assert (
        probe_file(str(write_mp4(tmp_path / "mute.mp4", 1.0, size=64, audio=False)), "video+audio")[0]
        == "no_audio_track"
    )
    (tmp_path / "empty.wav").write_bytes(b"")
    assert probe_file(str(tmp_path / "empty.wav"), "audio")[0] == "zero_length_audio"
    assert probe_file(str(write_wav(tmp_path / "ok.wav")), "audio") is None


def test_full_check_in_worker_processes_gives_the_same_verdicts(corpus, tmp_path, capsys):
    args = ["--dataset", "voxceleb2", "--root", str(corpus / "voxceleb2"), "--full", "--sample", "0"]
    _, one, _ = _doctor(capsys, *args, "--json", str(tmp_path / "1.json"))
    _, two, _ = _doctor(capsys, *args, "--workers", "2", "--json", str(tmp_path / "2.json"))
    assert one["file_check"] == two["file_check"] and one["file_check"]["bad_files"] == 3
