"""PCM_16 WAV members: write them at ingest (`--audio-format wav`), crop them without decoding.

Why WAV next to the default FLAC (`shards.flac`): a training step uses a crop of each voice, and
decoding it from FLAC costs ~0.4 ms per 2 s in a decode worker, about twice the log-mel features
and four JPEG-112 decodes. A PCM crop is a slice of the bytes at a computed offset (~5 us), so
the loader cuts each voice down to its crop window when it enters the buffer and decodes nothing.
The price is disk: FLAC stores voices in 0.63-0.74 of the PCM bytes.
`benchmarks/bench_loader.py` and docs/LOADER.md ("Compact audio") have the measurements.

Only 16-bit integer PCM is read here (what `encode_pcm16_wav` and most tools write); anything
else (float, 24-bit, compressed WAV) returns None from `parse_pcm16_wav` and the caller falls back
to `soundfile`, which reads every WAV flavour.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["PcmWav", "WavError", "parse_pcm16_wav", "read_pcm16", "encode_pcm16_wav", "crop_pcm16_wav", "crop_start"]

_PCM = 1
_EXTENSIBLE = 0xFFFE
_PCM_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_PCM


class WavError(ValueError):
    """A RIFF/WAVE member that is malformed or truncated (not merely a format we do not read)."""


@dataclass(frozen=True)
class PcmWav:
    """Where the samples of a 16-bit PCM WAV are, without copying them."""

    sample_rate: int
    channels: int
    data_offset: int  # byte offset of the first sample in the member
    frames: int  # samples per channel


def parse_pcm16_wav(data: bytes) -> PcmWav | None:
    """Locate the `fmt ` and `data` chunks. None when `data` is not a 16-bit PCM WAV (use a
    general decoder then); `WavError` when it is a RIFF/WAVE file that is broken or truncated."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body + size > len(data):
                raise WavError(f"fmt chunk of {size} bytes is too short or truncated")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _EXTENSIBLE and size >= 40 and data[body + 26 : body + 40] == _PCM_GUID_TAIL:
                tag = struct.unpack_from("<H", data, body + 24)[0]
            if tag != _PCM or bits != 16:
                return None
            if channels < 1 or block_align != 2 * channels or rate <= 0:
                raise WavError(f"inconsistent fmt chunk (channels {channels}, block_align {block_align}, rate {rate})")
            fmt = (rate, channels)
        elif chunk == b"data":
            if fmt is None:
                raise WavError("data chunk before the fmt chunk")
            if body + size > len(data):
                raise WavError(f"data chunk says {size} bytes but only {len(data) - body} follow (truncated)")
            rate, channels = fmt
            return PcmWav(rate, channels, body, size // (2 * channels))
        pos = body + size + (size & 1)  # chunks are padded to an even size
    raise WavError("no data chunk (truncated?)" if fmt is not None else "no fmt chunk")


def crop_start(total: int, crop: int, start_fraction: float) -> int:
    """First frame of a `crop`-frame window placed at `start_fraction` of the free range (0 when
    the clip is not longer than the crop). The FLAC and WAV paths share it so they cut the same
    window."""
    if total <= crop:
        return 0
    return min(int(start_fraction * (total - crop + 1)), total - crop)


def read_pcm16(data: bytes, wav: PcmWav, start: int, frames: int) -> np.ndarray:
    """int16 `[frames, channels]` view of the member's samples (no copy)."""
    return np.frombuffer(
        data, dtype="<i2", count=frames * wav.channels, offset=wav.data_offset + 2 * start * wav.channels
    ).reshape(frames, wav.channels)


def encode_pcm16_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """int16 `[frames]` or `[frames, channels]` -> a canonical 44-byte-header PCM_16 WAV."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        raise TypeError(f"encode_pcm16_wav needs int16 samples, got {x.dtype}")
    channels = 1 if x.ndim == 1 else x.shape[1]
    payload = x.astype("<i2", copy=False).tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(payload),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        channels,
        sample_rate,
        sample_rate * 2 * channels,
        2 * channels,
        16,
        b"data",
        len(payload),
    )
    return header + payload


def crop_pcm16_wav(data: bytes, crop: int, start_fraction: float) -> bytes | None:
    """The same WAV cut to the window `decode_voice_crop` would read (at most `crop` frames), so a
    worker gets only the bytes it decodes. None when `data` is not a readable 16-bit PCM WAV: the
    caller then passes the original bytes on and the decoder reports the problem as usual."""
    try:
        wav = parse_pcm16_wav(data)
    except WavError:
        return None
    if wav is None or wav.frames == 0:
        return None
    frames = min(crop, wav.frames)
    return encode_pcm16_wav(
        read_pcm16(data, wav, crop_start(wav.frames, crop, start_fraction), frames), wav.sample_rate
    )
