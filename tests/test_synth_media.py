"""Every synthetic media file decodes with independent readers and has the promised format."""

from __future__ import annotations

from pathlib import Path

import av
import decord
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pipeline.synth import read_track
from pipeline.synth.testing import cached_corpus, load_ground_truth

AAC_SLACK = 2 * 1024 + 1024  # AAC priming + padding: decoders return up to ~3 frames extra


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return cached_corpus(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def clip_frames(corpus) -> dict[tuple[str, str, str], int]:
    """(identity, ytid, clip) -> planned number of 25-fps frames, from the ground truth."""
    truth = load_ground_truth(corpus)
    return {
        (p["identity"], v["ytid"], c["clip"]): int(round(c["seconds"] * 25))
        for p in truth["identities"]
        for v in p["videos"]
        for c in v["clips"]
    }


def _key(path: Path) -> tuple[str, str, str]:
    return (path.parent.parent.name, path.parent.name, path.stem)


def test_mp4_video_and_audio_tracks_decode_with_pyav(corpus, clip_frames):
    mp4s = sorted(corpus.glob("voxceleb2/*/mp4/*/*/*.mp4"))
    assert len(mp4s) == 12
    for path in mp4s:
        with av.open(str(path)) as c:
            (video,) = c.streams.video
            (audio,) = c.streams.audio
            assert video.codec_context.name == "h264"
            assert video.codec_context.pix_fmt == "yuv420p"
            assert (video.codec_context.width, video.codec_context.height) == (224, 224)
            assert video.average_rate == 25
            assert audio.codec_context.name == "aac"
            assert audio.codec_context.sample_rate == 16000 and audio.codec_context.channels == 1
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(frames) == clip_frames[_key(path)]
        # a drawn scene, not a flat colour or noise: strong but structured variation
        assert np.std(frames[0]) > 20
        assert np.abs(np.diff(frames[0].astype(int), axis=1)).mean() < 25


def test_mp4_and_m4a_decode_with_decord(corpus, clip_frames):
    for path in sorted(corpus.glob("voxceleb2/*/mp4/*/*/*.mp4")):
        n = clip_frames[_key(path)]
        vr = decord.VideoReader(str(path))
        assert len(vr) == n and vr[0].shape == (224, 224, 3)
        m4a = Path(str(path).replace("/mp4/", "/aac/")).with_suffix(".m4a")
        for audio_path in (path, m4a):
            samples = decord.AudioReader(str(audio_path), sample_rate=16000, mono=True)[:].asnumpy()
            assert n * 640 <= samples.shape[1] <= n * 640 + AAC_SLACK
            assert np.sqrt(np.mean(samples**2)) > 1e-3


def test_m4a_is_audio_only_and_matches_mp4_audio(corpus):
    for m4a in sorted(corpus.glob("voxceleb2/*/aac/*/*/*.m4a")):
        mp4 = Path(str(m4a).replace("/aac/", "/mp4/")).with_suffix(".mp4")
        with av.open(str(m4a)) as c:
            assert len(c.streams.video) == 0 and len(c.streams.audio) == 1
            a = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
        with av.open(str(mp4)) as c:
            b = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
        np.testing.assert_array_equal(a, b)


def test_wav_is_16k_mono_pcm16_of_planned_length(corpus, clip_frames):
    wavs = sorted(corpus.glob("voxceleb1/wav/*/*/*.wav"))
    assert len(wavs) == 12
    for path in wavs:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        audio, _ = sf.read(str(path), dtype="float32")
        assert len(audio) == clip_frames[_key(path)] * 640
        assert 1e-3 < np.sqrt(np.mean(audio**2)) < 0.5


def test_face_jpgs_open_with_pil_at_1fps_and_box_size(corpus):
    truth = load_ground_truth(corpus)
    names = {p["identity"]: p["name"] for p in truth["identities"] if p["dataset"] == "voxceleb1"}
    seen = 0
    for txt in sorted(corpus.glob("voxceleb1/txt/*/*/*.txt")):
        track = read_track(txt)
        utt = (
            corpus
            / "voxceleb1/unzippedIntervalFaces/data"
            / names[track.identity]
            / "1.6"
            / track.reference
            / str(int(txt.stem))
        )
        jpgs = sorted(utt.glob("*.jpg"))
        expected = [f for f in track.frames if f % 25 == 0]
        assert [int(j.stem) for j in jpgs] == expected and all(len(j.stem) == 7 for j in jpgs)
        for jpg in jpgs:
            with Image.open(jpg) as im:
                im.load()
                assert im.mode == "RGB" and im.format == "JPEG"
                row = int(np.nonzero(track.frames == int(jpg.stem))[0][0])
                assert im.size == (int(round(track.boxes[row, 2])), int(round(track.boxes[row, 3])))
            seen += 1
    assert seen >= 12
