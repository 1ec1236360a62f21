"""PCM WAV members: our writer is readable by libsndfile, our reader equals libsndfile, and the
loader's crop-before-sending gives the same waveform as decoding the whole member."""

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from shards.decode import decode_voice_crop
from shards.stream import BadSample
from shards.wav import crop_pcm16_wav, encode_pcm16_wav, parse_pcm16_wav


def _sf_wav(samples, rate=16000, subtype="PCM_16", fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def test_encoded_wav_reads_back_exactly_with_soundfile():
    x = np.random.default_rng(0).integers(-32768, 32768, size=(1001, 2), dtype=np.int16)
    for samples in (x[:, 0], x):
        data = encode_pcm16_wav(samples, 16000)
        back, rate = sf.read(io.BytesIO(data), dtype="int16")
        assert rate == 16000 and np.array_equal(back, samples)
    with pytest.raises(TypeError):
        encode_pcm16_wav(x.astype(np.float32), 16000)


@pytest.mark.parametrize("channels", [1, 2])
def test_crop_equals_soundfile_decode_of_the_same_window(channels):
    x = np.random.default_rng(1).integers(-30000, 30000, size=(20011, channels), dtype=np.int16)
    data = _sf_wav(x)  # written by libsndfile, not by us
    full, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    full = full.mean(axis=1) if channels > 1 else full[:, 0]
    crop = 8000
    for u in (0.0, 0.41, 0.999999):
        start = min(int(u * (len(full) - crop + 1)), len(full) - crop)
        np.testing.assert_allclose(
            decode_voice_crop(data, crop, u, 16000),
            full[start : start + crop],
            rtol=0,
            atol=1e-7 if channels > 1 else 0,
        )


def test_loader_side_crop_then_worker_decode_equals_direct_decode():
    rng = np.random.default_rng(2)
    data = encode_pcm16_wav(rng.integers(-30000, 30000, size=24000, dtype=np.int16), 16000)
    for crop, u in ((8000, 0.0), (8000, 0.73), (30000, 0.5)):  # the last one is loop-padded
        small = crop_pcm16_wav(data, crop, u)
        assert len(small) <= 44 + 2 * crop
        np.testing.assert_array_equal(decode_voice_crop(small, crop, u, 16000), decode_voice_crop(data, crop, u, 16000))


def test_non_pcm16_wav_falls_back_to_soundfile():
    x = np.sin(np.linspace(0, 100, 5000)).astype(np.float32) * 0.5
    data = _sf_wav(x, subtype="FLOAT")
    assert parse_pcm16_wav(data) is None and crop_pcm16_wav(data, 1000, 0.2) is None
    np.testing.assert_allclose(decode_voice_crop(data, 1000, 0.0, 16000), x[:1000], atol=1e-7)


def test_broken_wav_is_a_counted_reason_never_garbage():
    data = encode_pcm16_wav(np.arange(4000, dtype=np.int16), 16000)
    for bad in (data[:1000], data[:30], data[:12] + b"data" + struct.pack("<I", 100) + b"\0" * 100):
        with pytest.raises(BadSample) as err:
            decode_voice_crop(bad, 800, 0.3, 16000, key="k7")
        assert err.value.reason == "undecodable_audio" and "k7" in str(err.value)
        assert crop_pcm16_wav(bad, 800, 0.3) is None  # passed on whole; the worker reports it
    with pytest.raises(BadSample) as err:
        decode_voice_crop(encode_pcm16_wav(np.zeros(100, np.int16), 8000), 800, 0.0, 16000)
    assert err.value.reason == "bad_audio" and "8000 Hz" in str(err.value)
    with pytest.raises(BadSample) as err:
        decode_voice_crop(encode_pcm16_wav(np.zeros(0, np.int16), 16000), 800, 0.0, 16000)
    assert err.value.reason == "bad_audio"
