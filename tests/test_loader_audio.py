"""Compact audio in the loader (issue 12 item 3): the buffer holds each sample's seeded crop
window, cut without decoding from WAV or seek-table FLAC members; older FLAC shards still load;
features do not depend on the member format; resume stays bit-exact."""

import itertools

import pytest
import torch

from shards.loader import TupleLoader
from shards.testing import SyntheticSpec, make_shard_set

CROP_S = 1.0


def _spec(**kw):
    return SyntheticSpec(
        num_identities=8, videos_per_identity=3, clips_per_video=2, seconds=(3.0, 4.0), shard_sizes=[16, 16, 16], **kw
    )


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    return {
        "wav": str(make_shard_set(root / "wav", _spec())),
        "flac": str(make_shard_set(root / "flac", _spec(audio_format="flac"))),
        "flac_old": str(make_shard_set(root / "flac_old", _spec(audio_format="flac", flac_seektable=False))),
    }


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


def test_features_do_not_depend_on_the_audio_member(sets):
    """Same samples as WAV, FLAC with a seek table (cut to windows) and FLAC without one (kept
    whole, cut at decode time at the same seeded place): the same keys and the same features."""
    runs = {name: _epoch(_cfg(d))[0] for name, d in sets.items()}
    ref = runs["wav"]
    for name in ("flac", "flac_old"):
        assert len(runs[name]) == len(ref)
        for a, b in zip(ref, runs[name]):
            assert a["anchor_key"] == b["anchor_key"] and a["candidate_key"] == b["candidate_key"]
            assert torch.equal(a["voices"], b["voices"]), name


def test_the_buffer_holds_crop_windows_not_whole_clips(sets):
    crop_bytes = 2 * int(CROP_S * 16000)
    for name, d in sets.items():
        with TupleLoader(_cfg(d)) as crop, TupleLoader(_cfg(d, buffer_audio="clip")) as clip:
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


def test_crop_window_resume_is_bit_exact_with_flac(sets):
    cfg = _cfg(sets["flac"], decode_workers="processes", num_workers=2)
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


def test_buffer_audio_is_validated(sets):
    with pytest.raises(ValueError, match="buffer_audio"):
        TupleLoader(_cfg(sets["wav"], buffer_audio="window"))
