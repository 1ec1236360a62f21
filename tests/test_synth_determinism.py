"""Same arguments give identical bytes (whatever the worker count); other seeds differ; resume works."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from pipeline.synth import CorpusExistsError, make_corpus
from pipeline.synth.testing import TINY, cached_corpus

SMALL = {"identities": 3, "videos_per_identity": 1, "clips_per_video": 1, "min_seconds": 1.0, "max_seconds": 1.2}


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return cached_corpus(tmp_path_factory.getbasetemp())


def test_same_arguments_give_identical_bytes_with_any_worker_count(corpus, tmp_path):
    again = tmp_path / "again"
    make_corpus(again, workers=2, progress=False, **TINY)
    a, b = digest(corpus), digest(again)
    assert len(a) >= 70
    assert a == b


def test_a_different_seed_gives_different_people_and_media(tmp_path):
    d0 = digest(Path(make_corpus(tmp_path / "s0", seed=0, workers=1, progress=False, **SMALL)["out"]))
    d1 = digest(Path(make_corpus(tmp_path / "s1", seed=1, workers=1, progress=False, **SMALL)["out"]))
    assert d0["ground_truth.json"] != d1["ground_truth.json"]
    media0 = {h for name, h in d0.items() if name.endswith((".wav", ".mp4", ".m4a", ".jpg"))}
    media1 = {h for name, h in d1.items() if name.endswith((".wav", ".mp4", ".m4a", ".jpg"))}
    assert media0 and not media0 & media1


def test_faults_leave_every_good_file_untouched(corpus, tmp_path_factory):
    faulty = digest(cached_corpus(tmp_path_factory.getbasetemp(), inject_faults=True))
    clean = digest(corpus)
    changed = {k for k in clean if k != "ground_truth.json" and faulty.get(k) != clean[k]}
    assert changed == set()
    assert set(faulty) - set(clean)  # the faults are extra files


def test_rerun_resumes_missing_files_and_refuses_foreign_folders(corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    victim = next(copy.glob("voxceleb2/*/mp4/*/*/*.mp4"))
    victim.unlink()
    summary = make_corpus(copy, workers=1, progress=False, **TINY)
    assert summary["clips_rendered"] == 1 and summary["clips_skipped_existing"] == summary["clips"] - 1
    assert digest(copy) == digest(corpus)
    with pytest.raises(CorpusExistsError, match="other arguments"):
        make_corpus(copy, workers=1, progress=False, **{**TINY, "seed": 5})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(CorpusExistsError, match="not empty"):
        make_corpus(tmp_path / "other", workers=1, progress=False, **TINY)


def test_bad_arguments_are_refused_with_clear_messages(tmp_path):
    with pytest.raises(ValueError, match="must all be >= 1"):
        make_corpus(tmp_path / "x", identities=0, progress=False)
    with pytest.raises(ValueError, match="clip length"):
        make_corpus(tmp_path / "x", min_seconds=5, max_seconds=4, progress=False)
    with pytest.raises(ValueError, match="workers"):
        make_corpus(tmp_path / "x", workers=0, progress=False)
