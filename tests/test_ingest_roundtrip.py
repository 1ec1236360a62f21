"""Ingest -> read back with webdataset, the tar CLI and our reader; index/manifest/eval.zarr agree.

One small VoxCeleb2 and VoxCeleb1 corpus per module (PyAV-written mp4/m4a, wav, 1-fps jpgs, txt),
ingested once; the tests then check what a user of the shards relies on.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds
from ingest_media import VOX1_ROWS, VOX2_IDS, make_vox1_corpus, make_vox2_corpus
from PIL import Image

from pipeline.extract import ExtractSettings
from pipeline.ingest import IngestConfig, IngestError, run_ingest
from shards.evalstore import EvalStore
from shards.format import audio_member, iter_tar_samples, read_dali_index

F, S = 3, 64


def _cfg(root: Path, out: Path, dataset: str, **kw) -> IngestConfig:
    meta = root / ("vox2_meta.csv" if dataset == "voxceleb2" else "vox1_meta.csv")
    # VoxCeleb2 with the default wav audio member, VoxCeleb1 with flac: both formats round-trip
    audio_format = "flac" if dataset == "voxceleb1" else "wav"
    extract = kw.pop("extract", ExtractSettings(frames_per_clip=F, face_size=S, audio_format=audio_format))
    return IngestConfig(
        dataset=dataset,
        root=root,
        meta=meta,
        out=out,
        workers=kw.pop("workers", 1),
        shard_samples=kw.pop("shard_samples", 3),
        extract=extract,
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("ingest_rt")
    v2 = make_vox2_corpus(base / "vox2", clips_per_video=2, videos=2)
    v1 = make_vox1_corpus(base / "vox1", clips_per_video=2)
    out = base / "out"
    logs: list[str] = []
    run_ingest(_cfg(v2, out, "voxceleb2", workers=2), log=logs.append)
    run_ingest(_cfg(v1, out, "voxceleb1"), log=logs.append)
    return {"vox2": v2, "vox1": v1, "out": out, "logs": logs}


def _split_dirs(out: Path):
    return sorted(p for p in out.glob("*/*") if (p / "index.json").exists())


def test_every_split_written_with_expected_counts(built):
    out = built["out"]
    counts = {
        (p.parent.name, p.name): json.loads((p / "index.json").read_text())["num_samples"] for p in _split_dirs(out)
    }
    # vox2: 3 dev ids x 4 clips -> train 12, 2 test ids x 4 -> test 8; vox1 wen1251: A/B val, C/D test, F/G train
    assert counts == {
        ("voxceleb2", "train"): 12,
        ("voxceleb2", "test"): 8,
        ("voxceleb1", "val"): 4,
        ("voxceleb1", "test"): 4,
        ("voxceleb1", "train"): 4,
    }


def test_webdataset_reads_every_sample_with_all_members(built):
    for split_dir in _split_dirs(built["out"]):
        index = json.loads((split_dir / "index.json").read_text())
        urls = [str(split_dir / s["path"]) for s in index["shards"]]
        samples = list(wds.WebDataset(urls, shardshuffle=False))
        assert len(samples) == index["num_samples"]
        for sample in samples:
            members = sorted(k for k in sample if not k.startswith("__"))
            assert members == sorted(index["members"])
            assert "." not in sample["__key__"]
        _, first, _ = next(iter_tar_samples(split_dir / index["shards"][0]["path"]))
        assert list(first) == index["members"]  # index.json lists the members in tar order


def test_tar_cli_extracts_the_same_bytes_as_the_manifest_says(built, tmp_path):
    split_dir = built["out"] / "voxceleb2" / "train"
    rows = [json.loads(line) for line in (split_dir / "manifest.jsonl").read_text().splitlines()]
    for shard in sorted(split_dir.glob("shard-*.tar")):
        dest = tmp_path / shard.stem
        dest.mkdir()
        subprocess.run(["tar", "-xf", str(shard), "-C", str(dest)], check=True)
        for row in (r for r in rows if r["shard"] == shard.name):
            sha = hashlib.sha1()
            for ext in row["members"]:
                data = (dest / f"{row['key']}.{ext}").read_bytes()
                assert len(data) == row["members"][ext]
                sha.update(data)
            assert sha.hexdigest() == row["sha1"]


def test_json_matches_meta_and_media(built):
    genders = {i: g for i, g, _ in VOX2_IDS}
    v1 = {r[0]: r for r in VOX1_ROWS}
    for split_dir in _split_dirs(built["out"]):
        for shard in sorted(split_dir.glob("shard-*.tar")):
            for key, members, _ in iter_tar_samples(shard):
                info = json.loads(members["json"])
                assert info["key"] == key and info["split"] == split_dir.name
                assert info["num_faces"] == F and info["face_size"] == S and info["sample_rate"] == 16000
                if info["dataset"] == "voxceleb2":
                    assert info["gender"] == genders[info["identity"]]
                    assert (
                        info["source"] == f"{'test' if split_dir.name == 'test' else 'dev'}/mp4/"
                        f"{info['identity']}/{info['video']}/{info['clip']}.mp4"
                    )
                else:
                    _, name, gender, nationality, _ = v1[info["identity"]]
                    assert (info["name"], info["gender"], info["nationality"]) == (name, gender, nationality)
                    assert "track" in info and info["track"]["fv_conf"] == 17.5
                assert set(members) & {"wav", "flac"} == {"wav" if info["dataset"] == "voxceleb2" else "flac"}
                audio, sr = sf.read(io.BytesIO(audio_member(members)), dtype="int16")
                assert sr == 16000 and abs(audio.size / sr - info["duration"]) < 1e-6
                for i in range(F):
                    assert Image.open(io.BytesIO(members[f"f{i}.jpg"])).size == (S, S)


def test_vox1_flac_is_the_wav_exactly(built):
    """FLAC is lossless: a 16 kHz PCM_16 wav must come back sample for sample."""
    split_dir = built["out"] / "voxceleb1" / "train"
    for _key, members, _ in iter_tar_samples(next(split_dir.glob("shard-*.tar"))):
        info = json.loads(members["json"])
        original, _ = sf.read(built["vox1"] / info["source"], dtype="int16")
        audio, _ = sf.read(io.BytesIO(members["flac"]), dtype="int16")
        np.testing.assert_array_equal(audio, original)


def test_index_manifest_and_dali_index_agree_with_the_tars(built):
    for split_dir in _split_dirs(built["out"]):
        index = json.loads((split_dir / "index.json").read_text())
        rows = [json.loads(line) for line in (split_dir / "manifest.jsonl").read_text().splitlines()]
        assert len(rows) == index["num_samples"] == sum(s["num_samples"] for s in index["shards"])
        assert len({r["key"] for r in rows}) == len(rows)
        per_id = {}
        for r in rows:
            per_id[r["identity"]] = per_id.get(r["identity"], 0) + 1
        assert {i: v["num_samples"] for i, v in index["identities"].items()} == per_id
        assert all(v["gender"] in ("m", "f") for v in index["identities"].values())
        for shard in index["shards"]:
            tar = split_dir / shard["path"]
            assert tar.stat().st_size == shard["bytes"]
            samples = list(iter_tar_samples(tar))
            assert len(samples) == shard["num_samples"]
            dali = read_dali_index(tar.with_suffix(".idx"))
            blob = tar.read_bytes()
            for (key, members, offset), entry in zip(samples, dali):
                row = next(r for r in rows if r["key"] == key)
                assert row["offset"] == offset and row["shard"] == shard["path"]
                for ext, (off, size) in entry.items():
                    assert blob[off : off + size] == members[ext]


def test_shards_mix_identities(built):
    """The seeded shuffle spreads an identity over shards (no identity blocks)."""
    rows = [
        json.loads(line) for line in (built["out"] / "voxceleb2" / "train" / "manifest.jsonl").read_text().splitlines()
    ]
    shards_of = {}
    ids_in = {}
    for r in rows:
        shards_of.setdefault(r["identity"], set()).add(r["shard"])
        ids_in.setdefault(r["shard"], set()).add(r["identity"])
    assert max(len(v) for v in shards_of.values()) >= 2
    assert max(len(v) for v in ids_in.values()) >= 2


def test_eval_store_equals_shard_contents(built):
    for split_dir in _split_dirs(built["out"]):
        store_path = split_dir / "eval.zarr"
        assert store_path.exists() == (split_dir.name in ("val", "test"))
        if not store_path.exists():
            continue
        store = EvalStore(store_path)
        n = 0
        for shard in sorted(split_dir.glob("shard-*.tar")):
            for key, members, _ in iter_tar_samples(shard):
                i = store.index_of(key)
                faces = np.stack(
                    [np.asarray(Image.open(io.BytesIO(members[f"f{j}.jpg"])).convert("RGB")) for j in range(F)]
                )
                np.testing.assert_array_equal(store.faces(i), faces)
                audio, _ = sf.read(io.BytesIO(audio_member(members)), dtype="int16")
                np.testing.assert_array_equal(store.audio(i), audio)
                info = json.loads(members["json"])
                assert store.identities[i] == info["identity"] and store.genders[i] == info["gender"]
                n += 1
        assert n == len(store)


def test_rerun_on_unchanged_input_does_no_work(built):
    def outputs():  # every file but the run lock (which records the current holder's pid)
        return {p: p.stat().st_mtime_ns for p in built["out"].rglob("*") if p.is_file() and p.name != ".ingest.lock"}

    before = outputs()
    logs: list[str] = []
    report = run_ingest(_cfg(built["vox2"], built["out"], "voxceleb2", workers=2), log=logs.append)
    assert report["status"] == "up_to_date"
    assert any("nothing to do" in line for line in logs)
    assert outputs() == before


def test_changed_settings_are_refused_with_a_clear_message(built):
    cfg = _cfg(built["vox2"], built["out"], "voxceleb2", shard_samples=5)
    with pytest.raises(IngestError, match=r"shard_samples: 3 -> 5.*--overwrite"):
        run_ingest(cfg, log=lambda *_: None)


def test_overwrite_rebuilds_with_new_settings(built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built["out"] / "voxceleb1", out / "voxceleb1")
    cfg = _cfg(built["vox1"], out, "voxceleb1", shard_samples=1, overwrite=True, splits=["val"])
    run_ingest(cfg, log=lambda *_: None)
    index = json.loads((out / "voxceleb1" / "val" / "index.json").read_text())
    assert index["num_shards"] == 4 and index["ingest"]["shard_samples"] == 1
    assert sorted(p.name for p in (out / "voxceleb1" / "val").glob("*.tar")) == [
        f"shard-00000{i}.tar" for i in range(4)
    ]


def test_leak_into_an_existing_split_is_refused(built, tmp_path):
    """Moving id00017 from dev to test in the meta would put a trained identity into test."""
    out = tmp_path / "out"
    shutil.copytree(built["out"] / "voxceleb2", out / "voxceleb2")
    root = tmp_path / "vox2"
    shutil.copytree(built["vox2"], root)
    meta = (root / "vox2_meta.csv").read_bytes().replace(b"id00017 ,n000170 ,m ,dev ", b"id00017 ,n000170 ,m ,test ")
    (root / "vox2_meta.csv").write_bytes(meta)
    cfg = _cfg(root, out, "voxceleb2", splits=["test"], overwrite=True)
    with pytest.raises(IngestError, match=r"id00017 \(test here, already in train\)"):
        run_ingest(cfg, log=lambda *_: None)
    assert not (out / "voxceleb2" / "test" / ".ingest" / "plan.json").read_text().count("id00017")


def test_cli_help_and_bad_arguments():
    help_text = subprocess.run(
        [sys.executable, "-m", "pipeline.ingest", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--dataset",
        "--root",
        "--meta",
        "--out",
        "--split-preset",
        "--splits",
        "--workers",
        "--frames-per-clip",
        "--face-size",
        "--shard-samples",
        "--seed",
        "--limit",
        "--eval-store",
        "--no-eval-store",
        "--overwrite",
        "--video-backend",
    ):
        assert flag in help_text
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.ingest",
            "--dataset",
            "voxceleb2",
            "--root",
            "/nonexistent",
            "--out",
            "/tmp/x",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "is not a folder" in bad.stderr


def test_dali_webdataset_reader_uses_the_ingest_written_index(built):
    """The .idx files written during ingest are what DALI's reader needs (no wds2idx pass)."""
    dali = pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn, pipeline_def

    split_dir = built["out"] / "voxceleb2" / "test"
    index = json.loads((split_dir / "index.json").read_text())
    tars = [str(split_dir / s["path"]) for s in index["shards"]]
    expected = [(members["f0.jpg"], members["json"]) for t in tars for _, members, _ in iter_tar_samples(t)]

    @pipeline_def(batch_size=len(expected), num_threads=1, device_id=None)
    def pipe():
        jpg, info = fn.readers.webdataset(
            paths=tars,
            index_paths=[t[:-4] + ".idx" for t in tars],
            ext=["f0.jpg", "json"],
            missing_component_behavior="error",
            random_shuffle=False,
            name="reader",
        )
        return jpg, info

    p = pipe()
    p.build()
    assert p.epoch_size("reader") == index["num_samples"] == len(expected)
    jpgs, jsons = p.run()
    got = [(np.asarray(jpgs.at(i)).tobytes(), np.asarray(jsons.at(i)).tobytes()) for i in range(len(expected))]
    assert got == expected
    del dali


def test_rerun_repairs_a_deleted_or_damaged_shard(built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built["out"] / "voxceleb2", out / "voxceleb2")
    split_dir = out / "voxceleb2" / "train"
    original = {p.name: p.read_bytes() for p in split_dir.glob("shard-*")}
    (split_dir / "shard-000001.tar").unlink()
    with open(split_dir / "shard-000002.tar", "r+b") as fh:
        fh.truncate(1024)
    logs: list[str] = []
    run_ingest(_cfg(built["vox2"], out, "voxceleb2"), log=logs.append)
    assert any("2 shard(s) missing or changed" in line for line in logs)
    assert {p.name: p.read_bytes() for p in split_dir.glob("shard-*")} == original
