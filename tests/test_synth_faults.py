"""--inject-faults writes exactly the listed bad inputs, and each really is bad in the stated way."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image, UnidentifiedImageError

from pipeline.synth import TrackFormatError, read_track, read_vox1_meta, read_vox2_meta
from pipeline.synth.faults import KINDS
from pipeline.synth.testing import cached_corpus, load_ground_truth
from shards.format import make_key


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return cached_corpus(tmp_path_factory.getbasetemp(), inject_faults=True)


@pytest.fixture(scope="module")
def faults(corpus) -> list[dict]:
    return json.loads((corpus / "faults.json").read_text())


def _audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])


def test_every_kind_is_present_with_complete_entries(faults, corpus):
    assert set(Counter(f["kind"] for f in faults)) == set(KINDS)
    for f in faults:
        assert f["dataset"] in ("voxceleb1", "voxceleb2") and f["reason"]
        assert (corpus / f["path"]).exists()
        if f["clip"] is not None:
            assert f["key"] == make_key(f["dataset"], f["identity"], f["video"], f["clip"]) and f["keys"] == [f["key"]]
        else:
            assert f["kind"] == "missing_meta_row" and f["keys"]


def test_faulty_media_fail_the_way_they_are_labelled(faults, corpus):
    for f in faults:
        path = corpus / f["path"]
        kind = f["kind"]
        if kind == "truncated_mp4":
            with pytest.raises(av.error.InvalidDataError):
                av.open(str(path))
        elif kind == "no_audio_track":
            with av.open(str(path)) as c:
                assert len(c.streams.audio) == 0 and len(c.streams.video) == 1
        elif kind == "silent_audio":
            audio = sf.read(str(path))[0] if path.suffix == ".wav" else _audio(path)
            assert len(audio) > 8000 and not np.any(audio)
        elif kind == "zero_length_audio":
            assert sf.info(str(path)).frames == 0
        elif kind == "unreadable_image":
            with pytest.raises(UnidentifiedImageError):
                Image.open(path)
        elif kind == "bad_box_file":
            with pytest.raises(TrackFormatError):
                read_track(path)


def test_missing_meta_rows_are_on_disk_but_not_in_meta_or_truth(faults, corpus):
    listed = {r.identity for r in read_vox1_meta(corpus / "voxceleb1/vox1_meta.csv")}
    listed |= {r.identity for r in read_vox2_meta(corpus / "voxceleb2/vox2_meta.csv")}
    truth = {p["identity"] for p in load_ground_truth(corpus)["identities"]}
    orphans = [f for f in faults if f["kind"] == "missing_meta_row"]
    assert {f["dataset"] for f in orphans} == {"voxceleb1", "voxceleb2"}
    for f in orphans:
        assert f["identity"] not in listed and f["identity"] not in truth
        assert any(p.is_file() for p in (corpus / f["path"]).rglob("*"))


def test_every_file_outside_the_clean_corpus_is_listed(faults, corpus, tmp_path_factory):
    clean = cached_corpus(tmp_path_factory.getbasetemp())
    extra = {str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file()}
    extra -= {str(p.relative_to(clean)) for p in clean.rglob("*") if p.is_file()}
    extra.discard("faults.json")
    listed = {f["path"] for f in faults}
    bad_clip_keys = {f["key"] for f in faults if f["key"]}
    orphan_dirs = [f["path"] for f in faults if f["kind"] == "missing_meta_row"]
    for rel in extra:
        # an extra file is itself listed, sits under an orphan identity, or belongs to a listed bad clip
        parts = rel.split("/")
        in_orphan = any(rel.startswith(d + "/") for d in orphan_dirs)
        if rel in listed or in_orphan:
            continue
        if parts[1] == "unzippedIntervalFaces":
            ident = {p["name"]: p["identity"] for p in load_ground_truth(corpus)["identities"]}[parts[3]]
            key = make_key("voxceleb1", ident, parts[5], f"{int(parts[6]):05d}")
        else:
            ident, video, clip = parts[-3], parts[-2], parts[-1].split(".")[0]
            key = make_key(parts[0], ident, video, clip)
        assert key in bad_clip_keys, rel
