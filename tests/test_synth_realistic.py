"""`pipeline.synth --realistic` (issue 12 item 7): VoxCeleb2 clips of about 8 s at about 250 kbps,
with texture and grain, still byte-deterministic; the plain corpus is unchanged by the option."""

from __future__ import annotations

import json
import os

import av
import pytest

from pipeline.synth import __main__ as synth_cli
from pipeline.synth import layout_vox2, make_corpus, realistic
from pipeline.synth.plan import CorpusSpec, plan_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("realistic") / "corpus"
    make_corpus(
        out,
        identities=2,
        videos_per_identity=1,
        clips_per_video=1,
        min_seconds=realistic.SECONDS[0],
        max_seconds=realistic.SECONDS[1],
        workers=1,
        progress=False,
        realistic=True,
    )
    return out


def test_realistic_clips_are_about_8_s_at_about_250_kbps(corpus):
    mp4s = sorted(corpus.glob("voxceleb2/*/mp4/*/*/*.mp4"))
    assert len(mp4s) == 2
    for path in mp4s:
        with av.open(str(path)) as c:
            seconds = c.duration / 1e6
            video = c.streams.video[0]
            assert (video.width, video.height, int(video.average_rate)) == (224, 224, 25)
            assert c.streams.audio, "the mp4 keeps its AAC track"
        kbps = os.path.getsize(path) * 8 / seconds / 1000
        assert realistic.SECONDS[0] - 0.05 <= seconds <= realistic.SECONDS[1] + 0.1, seconds
        assert 0.8 * realistic.TARGET_KBPS <= kbps <= 1.25 * realistic.TARGET_KBPS, kbps
    truth = json.loads((corpus / "ground_truth.json").read_text())
    assert truth["spec"]["realistic"] is True


def test_realistic_clip_is_byte_deterministic_and_far_richer_than_plain(tmp_path):
    spec = CorpusSpec(identities=2, videos_per_identity=1, clips_per_video=1, min_seconds=2.0, max_seconds=2.0)
    person = next(p for p in plan_corpus(spec) if p.dataset == "voxceleb2")
    video, clip = person.videos[0], person.videos[0].clips[0]
    sizes = {}
    for name, real in (("a", True), ("b", True), ("plain", False)):
        layout_vox2.write_clip(tmp_path / name, spec.seed, person, video, clip, realistic=real)
        sizes[name] = (tmp_path / name / layout_vox2.clip_paths(person, video, clip)["mp4"]).read_bytes()
    assert sizes["a"] == sizes["b"]
    assert len(sizes["a"]) > 2 * len(sizes["plain"])  # texture + grain + bitrate: the encoder spends bits


def test_cli_realistic_defaults_to_8_s_clips_and_plain_spec_is_unchanged(monkeypatch, tmp_path):
    seen = {}

    def fake(out, **kw):
        seen.update(kw)
        raise ValueError("stop")

    monkeypatch.setattr(synth_cli, "make_corpus", fake)
    assert synth_cli.main(["--out", str(tmp_path), "--realistic"]) == 2
    assert (seen["min_seconds"], seen["max_seconds"], seen["realistic"]) == (7.0, 9.0, True)
    assert synth_cli.main(["--out", str(tmp_path), "--realistic", "--min-seconds", "3", "--max-seconds", "4"]) == 2
    assert (seen["min_seconds"], seen["max_seconds"]) == (3.0, 4.0)
    assert synth_cli.main(["--out", str(tmp_path)]) == 2
    assert (seen["min_seconds"], seen["max_seconds"], seen["realistic"]) == (4.0, 6.0, False)
    # corpora made without the option keep their ground truth spec (no new key)
    from pipeline.synth.corpus import ground_truth

    spec = CorpusSpec(identities=2, videos_per_identity=1, clips_per_video=1)
    assert "realistic" not in ground_truth(spec, False, plan_corpus(spec))["spec"]
