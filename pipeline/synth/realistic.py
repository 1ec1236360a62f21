"""`--realistic`: VoxCeleb2 clips whose *cost* matches the real ones (for scale benchmarks).

The plain synthetic frames are flat cartoon shading: x264 at CRF 23 stores them in a few tens of
kbps, so decoding and demuxing them is far cheaper than real VoxCeleb2 (about 8 s, about 250 kbps
H.264 224x224 at 25 fps), and benchmarks on them overstate ingest speed (issue 12 measured
45.6 ms of CPU per realistic clip). Realistic clips add what makes real video expensive:

* **texture**: a static per-video pattern of fine detail (a wall, fabric, skin pores), blurred
  white noise of a few grey levels, so intra frames carry high-frequency content;
* **grain**: fresh sensor-like noise on every frame, so inter frames cannot be skipped;
* **rate control**: x264 in average-bitrate mode at `VIDEO_KBPS` (with the 48 kbps AAC track the
  file lands near `TARGET_KBPS`), instead of constant quality;
* **length**: clips of `SECONDS` (uniform in whole frames; VoxCeleb2 averages about 7.8 s).

Noise is drawn from the corpus's keyed generators (per video for texture, per clip for grain),
so realistic corpora are byte-deterministic like the others. The face, voice and attributes are
unchanged: the same spec with and without `--realistic` has the same people and the same oracle.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

#: clip length range (seconds) used when --realistic is given without --min/--max-seconds
SECONDS = (7.0, 9.0)
#: x264 average bitrate; the mp4 also carries the 48 kbps AAC track
VIDEO_KBPS = 200
TARGET_KBPS = 250
TEXTURE_LEVELS = 6.0  # standard deviation of the static texture, grey levels
GRAIN_LEVELS = 3.0  # standard deviation of the per-frame grain, grey levels


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 1]: fine static detail (white noise smoothed over 2x2 pixels)."""
    raw = rng.standard_normal((size + 1, size + 1), dtype=np.float32)
    smooth = (raw[:-1, :-1] + raw[1:, :-1] + raw[:-1, 1:] + raw[1:, 1:]) / 2.0  # unit variance again
    return (TEXTURE_LEVELS * smooth)[..., None]


def add_texture_and_grain(
    frames: Iterable[np.ndarray], pattern: np.ndarray, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Each uint8 RGB frame plus the static pattern and fresh grain, in order (deterministic)."""
    for frame in frames:
        grain = GRAIN_LEVELS * rng.standard_normal(frame.shape[:2] + (1,), dtype=np.float32)
        yield np.clip(frame.astype(np.float32) + pattern + grain, 0, 255).astype(np.uint8)
