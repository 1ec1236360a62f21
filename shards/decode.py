"""CPU decoding of one item: a face JPEG to uint8 pixels, a WAV or FLAC crop to a float waveform.

* JPEG: torchvision's `decode_jpeg` (libjpeg-turbo, ~0.05 ms for a 112 px face), PIL as the
  fallback for what it rejects. Per-item calls with Python around them do not scale across
  threads (PIL: 1.05x with 2 threads), so the loader runs these functions in worker processes
  (`shards/assemble.py`).
* Audio: a 16-bit PCM WAV crop is a slice of the bytes (`shards.wav`, ~5 us). FLAC (and any other
  libsndfile format) goes through `soundfile`, which seeks to the crop start and decodes only the
  crop (plus the FLAC frame it starts in, ~0.4 ms for 2 s), instead of decoding an 8 s utterance
  to train on 2 s (wespeaker decodes it all). Both cut the same window (`crop_start`). Clips
  shorter than the crop are loop-padded (tiled), as voice toolkits do, never zero-padded (zeros
  would be silence with its own log-mel signature).

Every failure becomes `BadSample` with a counter name, so the loader can skip and count it.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from shards.stream import BadSample
from shards.wav import WavError, crop_start, parse_pcm16_wav, read_pcm16

__all__ = ["decode_face", "decode_voice_crop"]


def decode_face(data: bytes, key: str = "?") -> np.ndarray:
    """JPEG bytes -> uint8 `[H, W, 3]` RGB (a view of torchvision's `[3, H, W]` tensor).

    torchvision's `decode_jpeg` calls libjpeg-turbo with no Python in between; PIL parses the JPEG
    markers in Python first, which made a 112 px face cost twice as much (0.05 vs 0.1 ms, same
    pixels: both are libjpeg-turbo with the default integer IDCT; `tests/test_loader_decode.py`
    checks equality with PIL). Bytes torchvision rejects get a second chance with PIL, so a
    stray PNG or an exotic JPEG still decodes; truncated or garbage data fails both and becomes
    `BadSample("undecodable_jpeg")`.
    """
    try:
        chw = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        arr = chw.permute(1, 2, 0).numpy()
    except RuntimeError:
        arr = _decode_face_pil(data, key)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadSample("undecodable_jpeg", f"sample {key!r}: face JPEG decodes to shape {arr.shape}")
    return arr


def _decode_face_pil(data: bytes, key: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError...)
        raise BadSample("undecodable_jpeg", f"sample {key!r}: face JPEG does not decode ({exc!r})") from exc


def decode_voice_crop(
    data: bytes,
    crop_samples: int,
    start_fraction: float,
    sample_rate: int,
    key: str = "?",
    start: int | None = None,
    span: int | None = None,
) -> np.ndarray:
    """WAV or FLAC bytes -> float32 `[crop_samples]` in [-1, 1], starting at `start_fraction` of the
    free range. 16-bit PCM WAV is sliced directly (`shards.wav`); other formats go to soundfile.

    `start` (and `span`): `data` is a window cut when the sample entered the buffer
    (`Sample.audio_start` / `audio_span`): it starts at sample `start` of `data` and runs for `span`
    samples (None: to the end; a shorter clip's window ends with the clip), and the crop is placed
    at `start_fraction` of the free range *inside the window*. A FLAC window is read whole, without
    seeking (it starts mid-stream, so libsndfile cannot seek in it)."""
    if start is not None and data[:4] == b"fLaC":
        return _pad(_soundfile_window(data, crop_samples, start_fraction, start, span, sample_rate, key), crop_samples)
    try:
        wav = parse_pcm16_wav(data)
    except WavError as exc:
        raise BadSample("undecodable_audio", f"sample {key!r}: WAV does not decode ({exc})") from exc
    if wav is not None:
        _check_rate(wav.sample_rate, wav.frames, sample_rate, key)
        first, frames = _place(wav.frames, crop_samples, start_fraction, start, span)
        pcm = read_pcm16(data, wav, first, frames)
        mono = pcm.mean(axis=1, dtype=np.float32) / 32768.0 if wav.channels > 1 else pcm[:, 0] / np.float32(32768.0)
    else:
        mono = _soundfile_crop(data, crop_samples, start_fraction, sample_rate, key)
    return _pad(mono, crop_samples)


def _place(total: int, crop: int, fraction: float, start: int | None, span: int | None) -> tuple[int, int]:
    """First sample and length of the crop in a `total`-sample member: anywhere in it (`start`
    None) or inside the window `[start, start + span)` clipped to the member (`crop_start` within
    the window, so a crop never leaves it)."""
    lo = 0 if start is None else min(max(0, start), total)
    size = total - lo if span is None else min(span, total - lo)
    return lo + crop_start(size, crop, fraction), min(crop, size)


def _pad(mono: np.ndarray, crop_samples: int) -> np.ndarray:
    if mono.shape[0] < crop_samples:
        mono = np.resize(mono, crop_samples)  # loop-pad: tiles the clip
    return np.ascontiguousarray(mono, dtype=np.float32)


def _soundfile_window(
    data: bytes, crop_samples: int, fraction: float, start: int, span: int | None, sample_rate: int, key: str
) -> np.ndarray:
    """A FLAC window (`shards.flac.crop_flac_window`): decode from its first frame, keep the crop."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            _check_rate(f.samplerate, f.frames, sample_rate, key)
            first, want = _place(f.frames, crop_samples, fraction, start, span)
            # all of it: the buffered window (crop or wider) plus under two frames, and a partial
            # read makes libsndfile seek, which fails in a stream that does not start at sample 0
            wave = f.read(dtype="float32", always_2d=True)[first : first + want]
    except BadSample:
        raise
    except Exception as exc:
        raise BadSample("undecodable_audio", f"sample {key!r}: audio does not decode ({exc!r})") from exc
    if want <= 0 or wave.shape[0] != want:
        raise BadSample("undecodable_audio", f"sample {key!r}: audio window gave {wave.shape[0]} of {want} samples")
    return wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]


def _check_rate(rate: int, frames: int, sample_rate: int, key: str) -> None:
    if rate != sample_rate:
        raise BadSample("bad_audio", f"sample {key!r}: audio at {rate} Hz, expected {sample_rate}")
    if frames <= 0:
        raise BadSample("bad_audio", f"sample {key!r}: audio has no samples")


def _soundfile_crop(data: bytes, crop_samples: int, start_fraction: float, sample_rate: int, key: str) -> np.ndarray:
    """FLAC (or any libsndfile format): seek to the crop and decode only it."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            _check_rate(f.samplerate, f.frames, sample_rate, key)
            want = min(crop_samples, f.frames)
            f.seek(crop_start(f.frames, crop_samples, start_fraction))
            wave = f.read(want, dtype="float32", always_2d=True)
    except BadSample:
        raise
    except Exception as exc:  # libsndfile errors surface as RuntimeError/LibsndfileError/...
        raise BadSample("undecodable_audio", f"sample {key!r}: audio does not decode ({exc!r})") from exc
    if wave.shape[0] != want:
        raise BadSample(
            "undecodable_audio", f"sample {key!r}: audio gave {wave.shape[0]} of {want} samples (truncated?)"
        )
    return wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
