"""CPU decoding of one item: a face JPEG to uint8 pixels, a FLAC crop to a float waveform.

* JPEG: PIL (libjpeg-turbo). It releases the GIL while decoding, but a 112 px face takes ~0.2 ms
  and the Python around it holds the GIL, so threads did not scale here (1.05x with 2 threads);
  the loader runs these functions in worker processes instead (`shards/assemble.py`).
* FLAC: `soundfile` seeks to the crop start and decodes only the crop (plus the FLAC frame it
  starts in), instead of decoding an 8 s utterance to train on 2 s (wespeaker decodes it all).
  Clips shorter than the crop are loop-padded (tiled), as voice toolkits do, never zero-padded
  (zeros would be silence with its own log-mel signature).

Every failure becomes `BadSample` with a counter name, so the loader can skip and count it.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from PIL import Image

from shards.stream import BadSample

__all__ = ["decode_face", "decode_voice_crop"]


def decode_face(data: bytes, key: str = "?") -> np.ndarray:
    """JPEG bytes -> uint8 `[H, W, 3]` RGB."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            arr = np.asarray(img.convert("RGB"))
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError...)
        raise BadSample("undecodable_jpeg", f"sample {key!r}: face JPEG does not decode ({exc!r})") from exc
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadSample("undecodable_jpeg", f"sample {key!r}: face JPEG decodes to shape {arr.shape}")
    return arr


def decode_voice_crop(data: bytes, crop_samples: int, start_fraction: float, sample_rate: int,
                      key: str = "?") -> np.ndarray:
    """FLAC bytes -> float32 `[crop_samples]` in [-1, 1], starting at `start_fraction` of the free range."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate != sample_rate:
                raise BadSample("bad_audio", f"sample {key!r}: audio at {f.samplerate} Hz, expected {sample_rate}")
            total = f.frames
            if total <= 0:
                raise BadSample("bad_audio", f"sample {key!r}: audio has no samples")
            if total > crop_samples:
                start = min(int(start_fraction * (total - crop_samples + 1)), total - crop_samples)
                f.seek(start)
                wave = f.read(crop_samples, dtype="float32", always_2d=True)
                want = crop_samples
            else:
                wave = f.read(total, dtype="float32", always_2d=True)
                want = total
    except BadSample:
        raise
    except Exception as exc:  # libsndfile errors surface as RuntimeError/LibsndfileError/...
        raise BadSample("undecodable_flac", f"sample {key!r}: FLAC does not decode ({exc!r})") from exc
    if wave.shape[0] != want:
        raise BadSample("undecodable_flac", f"sample {key!r}: FLAC gave {wave.shape[0]} of {want} samples (truncated?)")
    mono = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if mono.shape[0] < crop_samples:
        mono = np.resize(mono, crop_samples)  # loop-pad: tiles the clip
    return np.ascontiguousarray(mono, dtype=np.float32)
