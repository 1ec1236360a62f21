"""Compact audio in the loader (issue 12 item 3): the buffer holds each sample's seeded window
(`buffer_audio: window`, a fresh crop inside it per use) or crop (`crop`), cut without decoding
from WAV or seek-table FLAC members; older FLAC shards still load; features do not depend on the
member format; crops stay inside the window and the clip; resume (also elastic) stays bit-exact."""

import itertools

import numpy as np
import pytest
import torch

from shards.assemble import lean_plan
from shards.decode import decode_voice_crop
from shards.flac import encode_flac_seekable
from shards.loader import TupleLoader
from shards.stream import Sample, SampleParser
from shards.testing import voice_int16
from shards.tuples import BatchPlan
from shards.wav import encode_pcm16_wav

CROP_S = 1.0
WINDOW_S = 1.5
SR = 16000


def _cfg(d, **kw):
    base = dict(
        shards=[d],
        batch_size=4,
        k=2,
        buffer_size=16,
        crop_seconds=CROP_S,
        num_workers=1,
        seed=3,
        direction="both",
        decode_workers="threads",
        buffer_audio="crop",
    )
    base.update(kw)
    return base


def _epoch(cfg, max_batches=None):
    with TupleLoader(cfg) as loader:
        batches = list(itertools.islice(iter(loader), max_batches))
        return batches, loader


@pytest.mark.parametrize("mode", ["crop", "window"])
def test_features_do_not_depend_on_the_audio_member(audio_member_sets, mode):
    """Same samples as WAV, FLAC with a seek table (cut to windows) and, with `crop`, FLAC without
    one (kept whole, cut at decode time at the same seeded place): the same keys and the same
    features. With `window` this also checks that a FLAC window's crop lands on the same samples
    as the WAV window's (in decode processes the WAV crop is cut by `lean_plan`: tested below)."""
    extra = {"buffer_window_seconds": WINDOW_S} if mode == "window" else {}
    names = ("wav", "flac", "flac_old") if mode == "crop" else ("wav", "flac")
    runs = {name: _epoch(_cfg(audio_member_sets[name], buffer_audio=mode, **extra))[0] for name in names}
    ref = runs["wav"]
    for name in names[1:]:
        assert len(runs[name]) == len(ref)
        for a, b in zip(ref, runs[name]):
            assert a["anchor_key"] == b["anchor_key"] and a["candidate_key"] == b["candidate_key"]
            assert torch.equal(a["voices"], b["voices"]), name


def test_the_buffer_holds_crop_windows_not_whole_clips(audio_member_sets):
    crop_bytes = 2 * int(CROP_S * 16000)
    for name, d in audio_member_sets.items():
        with (
            TupleLoader(_cfg(d, member_reads="stream")) as crop,  # the buffer holds the bytes
            TupleLoader(_cfg(d, buffer_audio="clip", member_reads="stream")) as clip,
        ):
            next(iter(crop)), next(iter(clip))
            samples = list(crop.buffer.fifo())
            audio = sum(len(s.audio) for s in samples) / len(samples)
            whole = sum(len(s.audio) for s in clip.buffer.fifo()) / len(clip.buffer)
            if name == "wav":
                assert all(len(s.audio) == 44 + crop_bytes for s in samples)  # exactly the crop
            elif name == "flac":  # the frames around the crop: under crop + 2 frames of 4,096 samples
                assert all(s.audio_start is not None for s in samples)
                assert audio < 0.6 * whole
            else:  # no seek table: kept whole, as before
                assert all(s.audio_start is None for s in samples) and audio == pytest.approx(whole, rel=0.3)
            if name != "flac_old":
                assert crop.report()["buffer_encoded_bytes"] < 0.6 * clip.report()["buffer_encoded_bytes"]


@pytest.mark.parametrize("buffer_audio", ["crop", "window"])
def test_buffered_window_resume_is_bit_exact_with_flac(audio_member_sets, buffer_audio):
    cfg = _cfg(audio_member_sets["flac"], buffer_audio=buffer_audio, decode_workers="processes", num_workers=2)
    reference, _ = _epoch(cfg)
    first = TupleLoader(cfg)
    head = list(itertools.islice(iter(first), 3))
    state = first.state_dict()
    first.close()
    with TupleLoader(cfg) as again:
        again.load_state_dict(state)
        again.set_epoch(0)
        rest = list(again)
    assert len(head) + len(rest) == len(reference)
    for a, b in zip(reference, head + rest):
        assert a["anchor_key"] == b["anchor_key"] and torch.equal(a["voices"], b["voices"])


def test_buffer_audio_and_window_are_validated(audio_member_sets):
    with pytest.raises(ValueError, match="buffer_audio"):
        TupleLoader(_cfg(audio_member_sets["wav"], buffer_audio="segment"))
    with pytest.raises(ValueError, match=r"buffer_window_seconds must be .*crop_seconds"):
        TupleLoader(_cfg(audio_member_sets["wav"], buffer_audio="window", buffer_window_seconds=0.5))  # below the crop
    with pytest.raises(ValueError, match="buffer_window_seconds only applies with data.buffer_audio: window"):
        TupleLoader(_cfg(audio_member_sets["wav"], buffer_audio="clip", buffer_window_seconds=3.0))


# ------------------------------------------------------------------ buffer_audio: window
def _find(pcm: np.ndarray, crop: np.ndarray) -> list[int]:
    """Every position where `crop` (float, from the decoder) occurs in the int16 clip `pcm`,
    found by search, not by recomputing the placement rule."""
    want = np.round(crop * 32768.0).astype(np.int64)
    ref = pcm.astype(np.int64)
    return [
        int(p)
        for p in np.flatnonzero(ref[: len(ref) - len(want) + 1] == want[0])
        if np.array_equal(ref[p : p + len(want)], want)
    ]


def _windowed(member: bytes, window_samples: int, key: str = "k") -> Sample:
    parse = SampleParser(2, "first", seed=7, window_samples=window_samples)
    meta = b'{"identity": "id0", "video": "v", "clip": "c"}'
    return parse(key, {"json": meta, "f0.jpg": b"jpg", "wav" if member[:4] == b"RIFF" else "flac": member}, (0, 0, 0))


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_window_crops_differ_between_uses_and_stay_inside_the_window_and_the_clip(fmt):
    pcm = voice_int16(5, 3.3, SR, np.random.default_rng(5))
    member = encode_pcm16_wav(pcm, SR) if fmt == "wav" else encode_flac_seekable(pcm, SR)
    crop, window = int(CROP_S * SR), int(WINDOW_S * SR)
    s = _windowed(member, window)
    assert s.audio_start is not None and s.audio_span == window and s.crop_fraction is None
    assert len(s.audio) < 0.6 * len(member)  # the buffer keeps ~the window, not the clip
    # where the window lies in the clip: the decoder's crop at the window's two ends
    lo = _find(pcm, decode_voice_crop(s.audio, crop, 0.0, SR, start=s.audio_start, span=s.audio_span))
    hi = _find(pcm, decode_voice_crop(s.audio, crop, 0.999999, SR, start=s.audio_start, span=s.audio_span))
    assert len(lo) == 1 and len(hi) == 1 and hi[0] - lo[0] == window - crop  # exactly a window's width
    assert 0 <= lo[0] and hi[0] + crop <= len(pcm)
    places = set()
    for u in np.random.default_rng(0).random(40):  # the plan's draws, one per use
        got = decode_voice_crop(s.audio, crop, float(u), SR, start=s.audio_start, span=s.audio_span)
        (where,) = _find(pcm, got)
        assert lo[0] <= where and where + crop <= lo[0] + window  # inside the window (and the clip)
        places.add(where)
    assert len(places) > 30  # a fresh crop per use, not one per epoch
    # the same sample entering the buffer again (resume, another rank) gets the same window
    again = _windowed(member, window)
    assert again.audio == s.audio and again.audio_start == s.audio_start


@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("seconds", [0.6, 1.2])
def test_clips_shorter_than_the_window_or_the_crop_still_work(fmt, seconds):
    """Shorter than the crop: loop-padded as with whole clips; between crop and window: the window
    is the whole clip and crops move inside it."""
    pcm = voice_int16(6, seconds, SR, np.random.default_rng(6))
    member = encode_pcm16_wav(pcm, SR) if fmt == "wav" else encode_flac_seekable(pcm, SR)
    crop, window = int(CROP_S * SR), int(WINDOW_S * SR)
    s = _windowed(member, window)
    assert s.audio_start is not None
    for u in (0.0, 0.5, 0.999999):
        got = decode_voice_crop(s.audio, crop, u, SR, start=s.audio_start, span=s.audio_span)
        assert got.shape == (crop,) and got.dtype == np.float32
        if len(pcm) < crop:
            assert np.array_equal(got, np.resize(pcm / np.float32(32768.0), crop))  # tiled, never zeros
        else:
            (where,) = _find(pcm, got)
            assert where + crop <= len(pcm)  # inside the clip, from its start (u = 0) to its end (u -> 1)
            assert where == {0.0: 0, 0.999999: len(pcm) - crop}.get(u, where)


def _plan_with(s: Sample, u: float) -> BatchPlan:
    return BatchPlan(
        direction="v2f", faces=[s], voices=[s], voice_crop=[u], anchor_index=[0], candidate_index=[[0]], label=[0]
    )


def test_lean_plan_cuts_the_same_crop_from_a_wav_window_as_the_decoder():
    """Decode processes get WAV crops cut in the consuming process; thread mode decodes the whole
    window: both must give the same samples."""
    pcm = voice_int16(7, 3.0, SR, np.random.default_rng(7))
    crop, window = int(CROP_S * SR), int(WINDOW_S * SR)
    s = _windowed(encode_pcm16_wav(pcm, SR), window)
    for u in (0.0, 0.2, 0.9, 0.999999):
        lean = lean_plan(_plan_with(s, u), crop).voices[0]
        assert len(lean.audio) == 44 + 2 * crop  # only the crop travels to the worker
        want = decode_voice_crop(s.audio, crop, u, SR, start=s.audio_start, span=s.audio_span)
        got = decode_voice_crop(lean.audio, crop, u, SR, start=lean.audio_start, span=lean.audio_span)
        assert np.array_equal(got, want)


def test_the_buffer_holds_windows_between_crops_and_clips(audio_member_sets):
    """`window` keeps more than `crop` and less than `clip` per sample, and the same keys come out
    as with `clip` (the buffer mode changes crops, never the tuples)."""
    window_bytes = 2 * int(WINDOW_S * 16000)
    for name in ("wav", "flac"):
        modes = {  # `member_reads: stream`: the buffer holds the bytes whose size this is about
            "clip": _cfg(audio_member_sets[name], buffer_audio="clip", member_reads="stream"),
            "crop": _cfg(audio_member_sets[name], member_reads="stream"),
            "window": _cfg(
                audio_member_sets[name], buffer_audio="window", buffer_window_seconds=WINDOW_S, member_reads="stream"
            ),
        }
        used, held = {}, {}
        for mode, cfg in modes.items():
            with TupleLoader(cfg) as loader:
                batches = list(itertools.islice(iter(loader), 3))
                used[mode] = [(b["anchor_key"], b["candidate_key"]) for b in batches]
                held[mode] = loader.report()["buffer_encoded_bytes"]
                if mode == "window" and name == "wav":
                    assert all(len(s.audio) == 44 + window_bytes for s in loader.buffer.fifo())
        assert used["window"] == used["clip"] == used["crop"]
        assert held["crop"] < held["window"] < held["clip"], (name, held)


def test_window_elastic_resume_is_deterministic_in_the_features(audio_member_sets):
    """2 ranks -> 1 rank twice from the same states: the same batches, crops included; a state
    saved after the switch resumes bit-exact."""
    cfg = _cfg(audio_member_sets["wav"], buffer_audio="window", buffer_window_seconds=WINDOW_S)
    states = []
    for rank in range(2):
        with TupleLoader(cfg, rank=rank, world_size=2) as loader:
            list(itertools.islice(iter(loader), 1))
            states.append(loader.state_dict())

    def resumed(state, stop=None):
        with TupleLoader(cfg) as loader:
            loader.load_state_dict(state)
            loader.set_epoch(0)
            out = list(itertools.islice(iter(loader), stop))
            return out, loader.state_dict()

    a, _ = resumed(states)
    b, _ = resumed(states)
    head, mid = resumed(states, 2)
    tail, _ = resumed(mid)
    assert len(a) == 4 and len(head) + len(tail) == len(a)  # 6 steps at 1 rank, resumed at 2 * 1 / 1
    for x, y, z in zip(a, b, head + tail):
        assert x["anchor_key"] == y["anchor_key"] == z["anchor_key"]
        assert torch.equal(x["voices"], y["voices"]) and torch.equal(x["voices"], z["voices"])
