"""FLAC members with a per-frame seek table (`shards.flac`): lossless, readable by any decoder,
and cut to crop windows without decoding (issue 12 item 3, compact audio)."""

import io

import numpy as np
import pytest
import soundfile as sf

from shards.decode import decode_voice_crop
from shards.flac import add_seektable, crop_flac_window, encode_flac_seekable, parse_flac
from shards.testing import voice_int16
from shards.wav import crop_start

SR = 16000


def _plain_flac(pcm):
    buf = io.BytesIO()
    sf.write(buf, pcm, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize("seconds", [0.3, 2.0, 8.0])
def test_seekable_flac_is_lossless_and_has_one_point_per_frame(seconds):
    pcm = voice_int16(1, seconds, SR, np.random.default_rng(0))
    data = encode_flac_seekable(pcm, SR)
    decoded, rate = sf.read(io.BytesIO(data), dtype="int16")  # any decoder reads it, seeking included
    assert rate == SR and np.array_equal(decoded, pcm)
    firsts, offsets = parse_flac(data).points
    assert firsts == [4096 * i for i in range(-(-len(pcm) // 4096))]
    layout = parse_flac(data)
    assert all(data[layout.first_frame + o : layout.first_frame + o + 2] == b"\xff\xf8" for o in offsets)
    assert len(data) - len(_plain_flac(pcm)) == 4 + 18 * len(firsts)  # the table (and its block header) is all


@pytest.mark.parametrize("seconds", [0.3, 3.0, 8.0])
@pytest.mark.parametrize("crop", [1000, 32000, 64000])
def test_a_window_decodes_to_exactly_the_crop_the_whole_clip_gives(seconds, crop):
    pcm = voice_int16(2, seconds, SR, np.random.default_rng(1))
    data = encode_flac_seekable(pcm, SR)
    for fraction in (0.0, 0.37, 0.5, 0.999999):
        window, start = crop_flac_window(data, crop, fraction)
        assert len(window) <= len(data)
        assert parse_flac(window).total_samples < min(crop, len(pcm)) + 2 * 4096  # the crop + under 2 frames
        got = decode_voice_crop(window, crop, 0.0, SR, start=start)
        want = decode_voice_crop(data, crop, fraction, SR)  # seek + decode in the whole member
        assert np.array_equal(got, want)
        first = crop_start(len(pcm), crop, fraction)
        n = min(crop, len(pcm))
        assert np.array_equal(got[:n], pcm[first : first + n] / np.float32(32768.0))


def test_flac_without_a_seek_table_or_not_flac_is_not_cut():
    pcm = voice_int16(3, 3.0, SR, np.random.default_rng(2))
    plain = _plain_flac(pcm)
    assert crop_flac_window(plain, 16000, 0.5) is None  # older shards: kept whole by the loader
    assert crop_flac_window(b"RIFF" + bytes(60), 16000, 0.5) is None
    assert crop_flac_window(encode_flac_seekable(pcm, SR)[:30], 16000, 0.5) is None  # truncated header
    assert add_seektable(plain) == encode_flac_seekable(pcm, SR)
    with pytest.raises(ValueError, match="not a FLAC"):
        add_seektable(b"garbage" * 10)


def test_a_window_cut_from_a_damaged_member_fails_as_undecodable_audio():
    from shards.stream import BadSample

    pcm = voice_int16(4, 4.0, SR, np.random.default_rng(3))
    window, start = crop_flac_window(encode_flac_seekable(pcm, SR), 32000, 0.5)
    broken = window[: len(window) // 2]
    with pytest.raises(BadSample) as err:
        decode_voice_crop(broken, 32000, 0.0, SR, key="k", start=start)
    assert err.value.reason == "undecodable_audio"
