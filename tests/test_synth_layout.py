"""Folder layouts, meta files and face-track txt files look and parse like the real VoxCeleb ones."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.bundled import META_DIR
from pipeline.synth import MetaFormatError, TrackFormatError, read_track, read_vox1_meta, read_vox2_meta
from pipeline.synth.naming import wen_split
from pipeline.synth.plan import CorpusSpec, plan_corpus
from pipeline.synth.testing import cached_corpus, load_ground_truth

REAL_META = META_DIR
YTID = r"[A-Za-z0-9_-]{11}"
VOX2_FILE = re.compile(rf"voxceleb2/(dev|test)/(mp4|aac|txt)/id\d{{5}}/{YTID}/\d{{5}}\.(mp4|m4a|txt)")
VOX1_FILE = re.compile(
    rf"voxceleb1/(wav/id1\d{{4}}/{YTID}/\d{{5}}\.wav|txt/id1\d{{4}}/{YTID}/\d{{5}}\.txt"
    rf"|unzippedIntervalFaces/data/[A-Za-z._-]+/1\.6/{YTID}/[1-9]\d*/\d{{7}}\.jpg)"
)
#: A real VoxCeleb2 txt file head (quoted in public code; see docs/REFERENCES.md#e8).
REAL_VOX2_TXT = (
    "Identity  : \tid00012\nReference : \t_raOc3-IRsw\nOffset    : \t2\nFV Conf   : \t20.230\t(1)\n"
    "ASD Conf  : \t2.765\n\nFRAME \tX \tY \tW \tH \n000349 \t0.319 \t0.067 \t0.424 \t0.753 \n"
    "000350 \t0.319 \t0.067 \t0.424 \t0.753 \n"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return cached_corpus(tmp_path_factory.getbasetemp())


def _files(corpus: Path) -> list[str]:
    return sorted(str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file())


def test_every_file_sits_in_the_real_layout(corpus):
    files = _files(corpus)
    extra = {"ground_truth.json", "voxceleb1/vox1_meta.csv", "voxceleb2/vox2_meta.csv"}
    bad = [f for f in files if f not in extra and not (VOX2_FILE.fullmatch(f) or VOX1_FILE.fullmatch(f))]
    assert bad == []
    assert not any(f.endswith(".tmp") for f in files)
    ytids = {f.split("/")[-2] for f in files if f.endswith((".wav", ".mp4"))}
    assert any(y.startswith("-") for y in ytids) and any(y.startswith("_") for y in ytids)
    assert not any("." in y for y in ytids)


def test_vox2_files_come_in_triples_in_their_meta_set(corpus):
    rows = {r.identity: r for r in read_vox2_meta(corpus / "voxceleb2/vox2_meta.csv")}
    for mp4 in corpus.glob("voxceleb2/*/mp4/*/*/*.mp4"):
        rel = mp4.relative_to(corpus).parts
        assert rows[rel[3]].set == rel[1]
        for kind, ext in (("aac", ".m4a"), ("txt", ".txt")):
            assert (corpus / "voxceleb2" / rel[1] / kind / rel[3] / rel[4] / rel[5]).with_suffix(ext).is_file()


def test_real_meta_files_parse_with_the_same_parser():
    vox1 = read_vox1_meta(REAL_META / "vox1_meta.csv")
    vox2 = read_vox2_meta(REAL_META / "vox2_meta.csv")
    assert len(vox1) == 1251 and vox1[0].name == "A.J._Buckley" and vox1[0].nationality == "Ireland"
    assert len(vox2) == 6114 and (vox2[0].identity, vox2[0].name, vox2[0].set) == ("id00012", "n000012", "dev")
    # VoxCeleb1's own test Set is exactly the E names; the synthetic corpus copies that rule
    assert {r.set for r in vox1 if r.name.startswith("E")} == {"test"}
    assert {r.set for r in vox1 if not r.name.startswith("E")} == {"dev"}


def test_synthetic_meta_bytes_have_the_real_shape(corpus):
    real2 = (REAL_META / "vox2_meta.csv").read_bytes().split(b"\n")
    ours2 = (corpus / "voxceleb2/vox2_meta.csv").read_bytes().split(b"\n")
    assert ours2[0] == real2[0]  # BOM + header
    row = re.compile(rb"id\d{5} ,n\d{6} ,[mf] ,(dev|test) ")
    assert row.fullmatch(real2[1]) and all(row.fullmatch(line) for line in ours2[1:-1]) and ours2[-1] == b""
    real1 = (REAL_META / "vox1_meta.csv").read_bytes().split(b"\n")
    ours1 = (corpus / "voxceleb1/vox1_meta.csv").read_bytes().split(b"\n")
    assert ours1[0] == real1[0] and b"\r" not in b"".join(ours1)
    assert all(len(line.split(b"\t")) == 5 for line in ours1[1:-1])


def test_meta_agrees_with_disk_and_ground_truth(corpus):
    truth = {p["identity"]: p for p in load_ground_truth(corpus)["identities"]}
    vox1 = read_vox1_meta(corpus / "voxceleb1/vox1_meta.csv")
    vox2 = read_vox2_meta(corpus / "voxceleb2/vox2_meta.csv")
    assert {p.name for p in (corpus / "voxceleb1/wav").iterdir()} == {r.identity for r in vox1}
    assert {p.name for p in corpus.glob("voxceleb2/*/mp4/*")} == {r.identity for r in vox2}
    assert [r.identity for r in vox1] == sorted(r.identity for r in vox1)
    assert [r.name for r in vox1] == sorted(r.name for r in vox1)  # ids follow ASCII name order
    for r in vox1 + vox2:
        assert truth[r.identity]["gender"] == r.gender and truth[r.identity]["set"] == r.set
    for r in vox1:
        assert truth[r.identity]["wen_split"] == wen_split(r.name)
        assert (corpus / "voxceleb1/unzippedIntervalFaces/data" / r.name / "1.6").is_dir()


def test_meta_parser_rejects_wrong_files(tmp_path):
    bad = tmp_path / "vox1_meta.csv"
    bad.write_text("VoxCeleb1 ID,VGGFace1 ID,Gender,Nationality,Set\nid10001,A_B,m,USA,dev\n")
    with pytest.raises(MetaFormatError, match="header"):
        read_vox1_meta(bad)
    bad.write_text("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\nid10001\tA_B\tx\tUSA\tdev\n")
    with pytest.raises(MetaFormatError, match=":2: bad gender"):
        read_vox1_meta(bad)


def test_txt_tracks_parse_and_agree_with_their_path(corpus, tmp_path):
    real = tmp_path / "00001.txt"
    real.write_text(REAL_VOX2_TXT)
    track = read_track(real)
    assert (track.identity, track.reference, track.offset) == ("id00012", "_raOc3-IRsw", 2)
    np.testing.assert_allclose(track.boxes[0], [0.319, 0.067, 0.424, 0.753])
    ours = sorted(corpus.glob("voxceleb*/**/txt/**/*.txt"))
    assert len(ours) == 24
    for txt in ours:
        lines = txt.read_text().split("\n")
        assert [line.split("\t")[0] for line in lines[:7]] == [
            line.split("\t")[0] for line in REAL_VOX2_TXT.split("\n")[:7]
        ]
        t = read_track(txt)
        assert (t.identity, t.reference) == (txt.parent.parent.name, txt.parent.name)
        assert np.all(np.diff(t.frames) == 1)
        if "voxceleb2" in txt.parts:
            assert np.all((t.boxes >= 0) & (t.boxes <= 1))
        else:  # pixels of a 640x360 frame, integers
            assert np.all(t.boxes == np.round(t.boxes))
            assert np.all(t.boxes[:, 0] + t.boxes[:, 2] <= 640) and np.all(t.boxes[:, 1] + t.boxes[:, 3] <= 360)


def test_track_parser_rejects_broken_tables(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text(REAL_VOX2_TXT.replace("0.319 \t0.067", "left \t??", 1))
    with pytest.raises(TrackFormatError, match=":8: non-numeric"):
        read_track(path)
    path.write_text("Identity  : \tid00012\n")
    with pytest.raises(TrackFormatError):
        read_track(path)


def test_demo_size_splits_are_all_populated():
    plans = plan_corpus(CorpusSpec(identities=40))
    vox1 = [p for p in plans if p.dataset == "voxceleb1"]
    vox2 = [p for p in plans if p.dataset == "voxceleb2"]
    counts = {s: sum(p.wen_split == s for p in vox1) for s in ("train", "val", "test")}
    assert counts["val"] >= 4 and counts["test"] >= 4 and counts["train"] >= 20
    assert {p.set for p in vox1 if p.name[0] == "E"} == {"test"} and any(p.name[0] == "E" for p in vox1)
    n_test2 = sum(p.set == "test" for p in vox2)
    assert n_test2 >= 4 and abs(n_test2 / 40 - 0.25) <= 0.05
    assert not {p.identity for p in vox1} & {p.identity for p in vox2}
    ytids = [v.ytid for p in plans for v in p.videos]
    assert len(ytids) == len(set(ytids))
    assert sum("." in p.name for p in vox1) >= 1  # dotted names like A.J._Buckley exist
