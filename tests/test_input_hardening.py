"""Issue 15 items 6, 7, 9, 10: questionable meta rows, empty splits, tiny faces, the real cause of
a broken mp4, hostile member names and shards that hold more than their index lists.

Each test fails on the code before the fix (it reproduces the defect the fault-injection pass
found) and pins the message a user sees.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from ingest_media import (
    make_vox2_corpus,
    write_jpgs,
    write_mp4,
    write_vox1_meta,
    write_wav,
)
from PIL import Image

from pipeline.extract import ClipError, ExtractSettings, extract_clip
from pipeline.ingest import IngestConfig, run_ingest
from pipeline.meta import read_meta
from pipeline.sources import ClipRecord, scan_voxceleb1
from pipeline.splits import SplitError, assign_splits

QUIET = {"log": lambda *_: None}


def _cfg(root: Path, out: Path, **kw) -> IngestConfig:
    kw.setdefault("extract", ExtractSettings(frames_per_clip=2, face_size=32))
    return IngestConfig(
        dataset="voxceleb2",
        root=root,
        meta=root / "vox2_meta.csv",
        out=out,
        workers=1,
        shard_samples=4,
        progress=False,
        **kw,
    )


# ------------------------------------------------------------------ 6: meta rows by line number

VOX2_ODD = (
    "\ufeffVoxCeleb2 ID,VGGFace2 ID,Gender,Set\n"
    "id00012 ,n000120 ,m ,dev \n"  # line 2: fine
    "id00015 ,n000150 ,x ,dev \n"  # line 3: gender x
    "id00017 ,n000170 ,f ,dev ,extra \n"  # line 4: an extra field
    "id00019 ,n000190 ,f \n"
)  # line 5: no Set field


def test_meta_warnings_name_each_odd_row_by_line(tmp_path):
    path = tmp_path / "vox2_meta.csv"
    path.write_bytes(VOX2_ODD.encode())
    meta = read_meta(path)
    got = {(w.line, w.identity, w.kind) for w in meta.warnings}
    assert got == {
        (3, "id00015", "unknown_gender"),
        (4, "id00017", "extra_fields"),
        (5, "id00019", "missing_fields"),
        (5, "id00019", "missing_set"),
    }
    assert all(w.message.startswith(f"vox2_meta.csv:{w.line}: {w.identity}") for w in meta.warnings)
    assert meta["id00015"].gender is None and meta["id00017"].set == "dev"


def test_a_row_without_set_is_an_error_for_the_set_based_vox2_preset(tmp_path):
    path = tmp_path / "vox2_meta.csv"
    path.write_bytes(VOX2_ODD.encode())
    for preset in ("vox2", "vox2test"):
        with pytest.raises(SplitError, match=r"line 5: id00019 Set=None"):
            assign_splits(preset, read_meta(path))


def test_vox1_row_without_set_is_only_a_warning_for_the_letter_split(tmp_path):
    path = write_vox1_meta(
        tmp_path / "vox1_meta.csv",
        [
            ("id10001", "Al_A", "m", "UK", "dev"),
            ("id10002", "Cy_C", "x", "UK", ""),
            ("id10003", "Fe_F", "f", "UK", "dev"),
        ],
    )
    meta = read_meta(path)
    assert {(w.line, w.kind) for w in meta.warnings} == {(3, "unknown_gender"), (3, "missing_set")}
    assert assign_splits("wen1251", meta).split_of == {"id10001": "val", "id10002": "test", "id10003": "train"}


def test_the_released_meta_files_give_no_warnings():
    from pipeline.bundled import meta_file

    for dataset in ("voxceleb1", "voxceleb2"):
        assert read_meta(meta_file(dataset)).warnings == []


def test_ingest_logs_and_reports_meta_warnings(tmp_path):
    root = make_vox2_corpus(tmp_path / "vox2", clips_per_video=1, with_m4a_for=(), with_txt=False)
    meta = root / "vox2_meta.csv"
    meta.write_bytes(meta.read_bytes().replace(b"id00017 ,n000170 ,m ,dev ", b"id00017 ,n000170 ,x ,dev "))
    lines: list[str] = []
    run_ingest(_cfg(root, tmp_path / "out"), log=lines.append)
    assert "warning: vox2_meta.csv:4: id00017: gender 'x' is not m/f" in "\n".join(lines)
    report = json.loads((tmp_path / "out" / "voxceleb2" / "report.json").read_text())
    assert [(w["line"], w["kind"]) for w in report["meta_warnings"]] == [(4, "unknown_gender")]


# ------------------------------------------------------------------ 7: empty splits


@pytest.fixture(scope="module")
def empty_test_split(tmp_path_factory):
    """A vox2 corpus whose test clips are all too short: the test split is written with 0 samples."""
    base = tmp_path_factory.mktemp("empty")
    root = make_vox2_corpus(base / "vox2", clips_per_video=1, seconds=0.3, with_m4a_for=(), with_txt=False)
    lines: list[str] = []
    report = run_ingest(_cfg(root, base / "out", splits=["test"]), log=lines.append)
    return base / "out" / "voxceleb2" / "test", report, lines, _cfg(root, base / "out", splits=["test"])


def test_ingest_says_a_split_is_empty_and_why(empty_test_split):
    folder, report, lines, cfg = empty_test_split
    assert report["splits"]["test"]["status"] == "empty"
    text = "\n".join(lines)
    assert f"warning: {folder} holds 0 samples" in text
    assert "all 2 planned clips were skipped: short_audio 2" in text
    rerun: list[str] = []
    assert run_ingest(cfg, log=rerun.append)["status"] == "up_to_date"
    assert any("holds 0 samples" in line for line in rerun)  # the re-run says it again


def test_evaluation_store_of_an_empty_split_does_not_advise_rerunning_ingest(empty_test_split):
    from shards.evalstore import EvalStore

    folder = empty_test_split[0]
    with pytest.raises(FileNotFoundError) as err:
        EvalStore(folder / "eval.zarr")
    msg = str(err.value)
    assert "holds 0 samples" in msg and "Re-running the same ingest cannot change that" in msg
    assert "run `python -m pipeline.ingest` for this split" not in msg


def test_launch_evaluate_on_an_empty_split_is_one_clear_line(empty_test_split, capsys):
    from launch import evaluate

    folder = empty_test_split[0]
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(
            [
                "--data",
                str(folder.parent.parent),
                "--protocol",
                "vox2test",
                "--trials-only",
                "--out",
                str(folder.parent.parent / "eval"),
            ]
        )
    assert "holds 0 samples" in str(exit_.value)


def test_training_loader_on_an_empty_split_raises_a_clear_error(empty_test_split):
    from shards.partition import EmptyShardSetError, ShardCatalog

    folder = empty_test_split[0]
    with pytest.raises(EmptyShardSetError, match="holds 0 samples.*point data.shards at a split that has samples"):
        ShardCatalog([str(folder)])


def test_train_cli_on_an_empty_split_exits_with_one_line(empty_test_split, tmp_path, capsys):
    from launch import train

    folder = empty_test_split[0]
    rc = train.main(
        [
            "--config",
            "launch/configs/demo.yaml",
            f"data.shards=[{folder}]",
            f"train.output_dir={tmp_path / 'run'}",
            "train.val_data=null",
            "train.cpu=true",
        ]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    # one error line (beside the one-line device announcement every rank prints), no traceback
    assert rc == 2 and len(errors) == 1 and "holds 0 samples" in errors[0] and "Traceback" not in err


# ------------------------------------------------------------------ 9: tiny faces


def test_a_tiny_video_is_skipped_as_small_face_not_upscaled(tmp_path):
    root = make_vox2_corpus(tmp_path / "vox2", clips_per_video=1, with_m4a_for=(), with_txt=False)
    tiny = root / "dev" / "mp4" / "id00012" / "-tinyvideo1" / "00001.mp4"
    write_mp4(tiny, 1.0, size=16)
    out = tmp_path / "out"
    summary = run_ingest(_cfg(root, out), **QUIET)
    train = json.loads((out / "voxceleb2" / "train" / "report.json").read_text())
    skipped = {s["key"]: s for s in train["skipped"]}
    assert skipped["vox2_id00012_-tinyvideo1_00001"]["kind"] == "small_face"
    assert "16 px, below the 32 px minimum" in skipped["vox2_id00012_-tinyvideo1_00001"]["reason"]
    assert summary["splits"]["train"]["skipped_by_kind"] == {"small_face": 1}
    # the limit is a setting: 0 keeps any size
    settings = ExtractSettings(frames_per_clip=2, face_size=32, min_face_size=0)
    record = ClipRecord("voxceleb2", "id00012", "-tinyvideo1", "00001", "x.mp4", str(tiny), str(tiny))
    assert len([m for m in extract_clip(record, "train", {}, settings).members if m.endswith(".jpg")]) == 2


def test_small_face_images_are_dropped_and_a_clip_of_only_small_ones_skipped(tmp_path):
    root = tmp_path / "vox1"
    root.mkdir()
    write_vox1_meta(root / "vox1_meta.csv", [("id10001", "Al_A", "m", "UK", "dev")])
    faces = root / "unzippedIntervalFaces" / "data" / "Al_A" / "1.6" / "-abcdefghij"
    write_wav(root / "wav" / "id10001" / "-abcdefghij" / "00001.wav")
    write_wav(root / "wav" / "id10001" / "-abcdefghij" / "00002.wav", seed=2)
    write_jpgs(faces / "1", [1, 2, 3], size=64)
    Image.fromarray(np.full((9, 17, 3), 128, np.uint8)).save(faces / "1" / "0000004.jpg")
    (faces / "2").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((9, 17, 3), 100, np.uint8)).save(faces / "2" / f"000000{i}.jpg")
    clips = {c.clip: c for c in scan_voxceleb1(root, read_meta(root / "vox1_meta.csv")).clips}
    settings = ExtractSettings(frames_per_clip=3, face_size=32)
    sample = extract_clip(clips["00001"], "val", {}, settings)
    assert [d["kind"] for d in sample.dropped] == ["small_face"]
    assert "0000004.jpg" not in json.loads(sample.members["json"])["frames"]
    with pytest.raises(ClipError) as err:
        extract_clip(clips["00002"], "val", {}, settings)
    assert err.value.kind == "small_face" and "17x9 image" in err.value.reason


# ------------------------------------------------------------------ 10: the real cause of a broken mp4


@pytest.mark.parametrize("damage", ["truncated", "not_media", "empty"])
def test_a_broken_mp4_with_its_own_audio_is_corrupt_video(tmp_path, damage):
    mp4 = write_mp4(tmp_path / "id00012" / "-abcdefghij" / "00001.mp4", 1.0, size=64)
    data = mp4.read_bytes()
    mp4.write_bytes(
        {"truncated": data[: int(len(data) * 0.4)], "not_media": b"<html>not a video</html>" * 40, "empty": b""}[damage]
    )
    record = ClipRecord("voxceleb2", "id00012", "-abcdefghij", "00001", "x.mp4", str(mp4), str(mp4))
    for backend in ("pyav", "decord"):
        with pytest.raises(ClipError) as err:
            extract_clip(record, "train", {}, ExtractSettings(frames_per_clip=2, face_size=32, video_backend=backend))
        assert err.value.kind == "corrupt_video", (backend, err.value)


# ------------------------------------------------------------------ 10: member names, extra samples


def _shard_set(tmp_path):
    from shards.testing import SyntheticSpec, make_shard_set

    spec = SyntheticSpec(num_identities=6, videos_per_identity=2, clips_per_video=2, shard_sizes=[12, 12])
    return make_shard_set(tmp_path / "s", spec)


def _loader_cfg(d, **kw):
    return dict(
        shards=[str(d)],
        batch_size=3,
        k=2,
        buffer_size=24,
        crop_seconds=0.3,
        frame="first",
        seed=1,
        decode_workers="threads",
        **kw,
    )


def test_member_names_that_are_absolute_or_climb_out_are_counted_as_bad(tmp_path):
    from shards.loader import TupleLoader
    from shards.stream import ShardReadError
    from shards.testing import face_jpeg, voice_wav

    d = _shard_set(tmp_path)
    rng = np.random.default_rng(0)
    hostile = ["../../escape", "/abs/key", "a/../../b"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for n, key in enumerate(hostile):
            meta = json.dumps({"identity": "id10000", "video": "v0x0", "clip": f"{90 + n:05d}"}).encode()
            for ext, data in (
                ("f0.jpg", face_jpeg(0, n, 32, rng)),
                ("json", meta),
                ("wav", voice_wav(0, 0.5, 16000, rng)),
            ):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (d / "shard-000009.tar").write_bytes(buf.getvalue())
    index = json.loads((d / "index.json").read_text())
    index["shards"].append({"path": "shard-000009.tar", "num_samples": len(hostile), "bytes": len(buf.getvalue())})
    index["num_samples"] += len(hostile)
    (d / "index.json").write_text(json.dumps(index))
    loader = TupleLoader(_loader_cfg(d))
    keys = {k for b in loader for k in b["anchor_key"]}
    assert loader.skip_counts.get("bad_member_name") == len(hostile)
    assert not keys & set(hostile)
    assert any("absolute paths" in m for m in loader.report()["skip_messages"])
    with pytest.raises(ShardReadError, match="bad_member_name|climb out|absolute"):
        list(TupleLoader(_loader_cfg(d, strict=True)))


def test_a_shard_holding_more_samples_than_its_index_lists_is_flagged(tmp_path):
    from shards.loader import TupleLoader
    from shards.stream import ShardReadError

    d = _shard_set(tmp_path)
    index = json.loads((d / "index.json").read_text())
    index["shards"][1]["num_samples"] -= 2  # the tar still holds 12
    index["num_samples"] -= 2
    (d / "index.json").write_text(json.dumps(index))
    loader = TupleLoader(_loader_cfg(d, steps_per_epoch=4))
    list(loader)
    assert loader.skip_counts.get("extra_samples", 0) >= 1
    assert any(
        "shard-000001.tar holds more samples than the 10 its index.json lists" in m
        for m in loader.report()["skip_messages"]
    )
    with pytest.raises(ShardReadError, match="holds more samples"):
        list(TupleLoader(_loader_cfg(d, strict=True, steps_per_epoch=4)))
    # an intact shard set is not flagged
    clean = _shard_set(tmp_path / "clean")
    loader = TupleLoader(_loader_cfg(clean, steps_per_epoch=4))
    list(loader)
    assert "extra_samples" not in loader.skip_counts


def test_a_broken_m4a_beside_a_good_mp4_stays_unreadable_audio(tmp_path):
    from ingest_media import write_m4a

    mp4 = write_mp4(tmp_path / "v.mp4", 1.0, size=64)
    m4a = write_m4a(tmp_path / "a.m4a", 1.0)
    m4a.write_bytes(m4a.read_bytes()[:200])
    record = ClipRecord("voxceleb2", "id00012", "-abcdefghij", "00001", "v.mp4", str(m4a), str(mp4))
    with pytest.raises(ClipError) as err:
        extract_clip(record, "train", {}, ExtractSettings(frames_per_clip=2, face_size=32))
    assert err.value.kind == "unreadable_audio"  # the video is fine: the audio is the cause
