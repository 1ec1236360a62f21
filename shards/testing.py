"""Small synthetic shard sets in the real on-disk format, for tests and benchmarks.

Why this lives in the package and not under tests/: the loader tests, the training tests and the
loader benchmark all need shard sets with controlled identities, videos, genders, shard sizes and
damage, long before (and independently of) the ingest pipeline. Samples are written with
`shards.format.ShardWriter`, so the bytes are exactly what ingest writes (ARCHITECTURE.md §1-2):
`f{i}.jpg` face-like JPEG crops, 16 kHz PCM_16 audio as a `wav` (default, as ingest) or `flac`
member, and the `json` record.

Content is cheap but not trivial: each identity has its own colour/shape and voice pitch, so a
model can actually learn something from it in a smoke test.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

from shards.flac import encode_flac_seekable
from shards.format import AUDIO_MEMBERS, ShardWriter, make_key
from shards.wav import encode_pcm16_wav

__all__ = ["SyntheticSpec", "make_shard_set", "face_jpeg", "voice_flac", "voice_wav", "truncate_file", "corrupt_member"]


@dataclass
class SyntheticSpec:
    """What to generate. `shard_sizes` fixes the number of samples per shard (uneven on purpose
    in tests); samples are shuffled across shards with `seed`, as ingest does."""

    num_identities: int = 8
    videos_per_identity: int = 3
    clips_per_video: int = 2
    num_faces: int = 2
    face_size: int = 32
    seconds: tuple[float, float] = (0.6, 1.6)
    shard_sizes: Sequence[int] | None = None  # None -> shards of `shard_samples`
    shard_samples: int = 16
    dataset: str = "voxceleb2"
    split: str = "train"
    seed: int = 0
    sample_rate: int = 16000
    audio_format: str = "wav"  # the audio member: "wav" (PCM_16) or "flac"
    flac_seektable: bool = True  # FLAC with a per-frame seek table (ingest's); False: as older shards

    def __post_init__(self):
        if self.audio_format not in AUDIO_MEMBERS:
            raise ValueError(f"audio_format must be one of {AUDIO_MEMBERS}, got {self.audio_format!r}")

    @property
    def num_samples(self) -> int:
        return self.num_identities * self.videos_per_identity * self.clips_per_video


def face_jpeg(identity_index: int, variant: int, size: int, rng: np.random.Generator) -> bytes:
    """A face-like RGB JPEG: identity-coloured ellipse + eyes on a gradient, with noise."""
    hue = (identity_index * 47) % 256
    base = np.linspace(0, 1, size, dtype=np.float32)
    bg = np.stack(
        [
            np.outer(base, np.ones(size)) * 120 + 60,
            np.outer(np.ones(size), base) * 80 + 40,
            np.full((size, size), hue * 0.5 + 30),
        ],
        -1,
    )
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    m = size // 8 + (variant % 3)
    draw.ellipse([m, m, size - m, size - m // 2], fill=(hue, 255 - hue, (hue * 3) % 256))
    e = max(1, size // 16)
    for cx in (size // 3, 2 * size // 3):
        draw.ellipse([cx - e, size // 3 - e, cx + e, size // 3 + e], fill=(20, 20, 20))
    arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, size=(size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def voice_int16(identity_index: int, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A voice-like int16 waveform: identity-specific pitch with harmonics, syllable envelope, noise."""
    n = max(1, int(round(seconds * sample_rate)))
    t = np.arange(n) / sample_rate
    f0 = 90.0 + 12.0 * (identity_index % 17)
    wave = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.28)) / h for h in (1, 2, 3))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6.28)) ** 2
    y = 0.25 * wave * env + 0.02 * rng.standard_normal(n)
    return np.clip(np.round(np.clip(y, -1, 1) * 32768.0), -32768, 32767).astype(np.int16)


def voice_flac(
    identity_index: int, seconds: float, sample_rate: int, rng: np.random.Generator, seektable: bool = True
) -> bytes:
    """`voice_int16` as a PCM_16 FLAC, with a per-frame seek table as ingest writes it
    (`seektable=False`: as older shards and other tools wrote it)."""
    pcm = voice_int16(identity_index, seconds, sample_rate, rng)
    if seektable:
        return encode_flac_seekable(pcm, sample_rate)
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def voice_wav(identity_index: int, seconds: float, sample_rate: int, rng: np.random.Generator) -> bytes:
    """`voice_int16` as a PCM_16 WAV (the same samples `voice_flac` stores for the same rng)."""
    return encode_pcm16_wav(voice_int16(identity_index, seconds, sample_rate, rng), sample_rate)


def make_shard_set(out_dir: str | os.PathLike, spec: SyntheticSpec | None = None) -> Path:
    """Write `<out_dir>/shard-*.tar/.idx` + `index.json` (+ `manifest.jsonl`) and return the folder.

    Identities alternate gender m/f. Identity `i` is `id{10000+i:05d}`, videos `v{i}x{j}`.
    """
    spec = spec or SyntheticSpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    plan = [
        (i, v, c)
        for i in range(spec.num_identities)
        for v in range(spec.videos_per_identity)
        for c in range(spec.clips_per_video)
    ]
    order = rng.permutation(len(plan))
    sizes = list(spec.shard_sizes) if spec.shard_sizes is not None else []
    if not sizes:
        full, rest = divmod(len(plan), spec.shard_samples)
        sizes = [spec.shard_samples] * full + ([rest] if rest else [])
    if sum(sizes) != len(plan) or min(sizes) < 1:
        raise ValueError(f"shard_sizes {sizes} must be positive and sum to {len(plan)} samples")
    identities: dict[str, dict] = {}
    shards, manifest = [], []
    pos = 0
    for s, n in enumerate(sizes):
        path = out / f"shard-{s:06d}.tar"
        with ShardWriter(path) as writer:
            for p in order[pos : pos + n]:
                i, v, c = plan[p]
                ident, video, clip = f"id{10000 + i:05d}", f"v{i}x{v}", f"{c:05d}"
                gender = "m" if i % 2 == 0 else "f"
                key = make_key(spec.dataset, ident, video, clip)
                seconds = float(rng.uniform(*spec.seconds))
                members = {f"f{f}.jpg": face_jpeg(i, v * 7 + c + f, spec.face_size, rng) for f in range(spec.num_faces)}
                if spec.audio_format == "wav":
                    members["wav"] = voice_wav(i, seconds, spec.sample_rate, rng)
                else:
                    members["flac"] = voice_flac(i, seconds, spec.sample_rate, rng, spec.flac_seektable)
                meta = {
                    "key": key,
                    "dataset": spec.dataset,
                    "identity": ident,
                    "video": video,
                    "clip": clip,
                    "split": spec.split,
                    "gender": gender,
                    "nationality": None,
                    "name": None,
                    "duration": seconds,
                    "num_faces": spec.num_faces,
                    "face_size": spec.face_size,
                    "sample_rate": spec.sample_rate,
                    "source": f"synthetic/{ident}/{video}/{clip}",
                }
                members["json"] = json.dumps(meta).encode()
                rec = writer.add(key, members)
                identities.setdefault(ident, {"gender": gender, "num_samples": 0})["num_samples"] += 1
                manifest.append(
                    {
                        "key": key,
                        "identity": ident,
                        "video": video,
                        "clip": clip,
                        "gender": gender,
                        "shard": path.name,
                        "offset": rec.offset,
                        "size": rec.size,
                        "members": rec.members,
                        "sha1": rec.sha1,
                    }
                )
        shards.append({"path": path.name, "num_samples": n, "bytes": path.stat().st_size})
        pos += n
    index = {
        "format": "voxface-shards/1",
        "dataset": spec.dataset,
        "split": spec.split,
        "num_samples": len(plan),
        "face_size": spec.face_size,
        "num_faces": spec.num_faces,
        "sample_rate": spec.sample_rate,
        "shards": shards,
        "identities": identities,
        "ingest": {"generator": "shards.testing", "seed": spec.seed},
    }
    (out / "index.json").write_text(json.dumps(index, indent=1))
    with open(out / "manifest.jsonl", "w") as fh:
        for row in manifest:
            fh.write(json.dumps(row) + "\n")
    return out


def truncate_file(path: str | os.PathLike, keep_fraction: float) -> None:
    """Cut a file short in place (simulates an interrupted copy)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * keep_fraction))


def corrupt_member(shard_dir: str | os.PathLike, key: str, ext: str, payload: bytes) -> None:
    """Rewrite one member's payload in place, keeping its size (tar stays structurally valid).

    Used to plant undecodable JPEG/WAV/FLAC bytes; `payload` is repeated/cut to the member's size.
    """
    shard_dir = Path(shard_dir)
    for line in (shard_dir / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["key"] != key:
            continue
        offset = row["offset"]
        for e, size in row["members"].items():
            if e == ext:
                data = (payload * (size // max(1, len(payload)) + 1))[:size]
                with open(shard_dir / row["shard"], "r+b") as fh:
                    fh.seek(offset + 512)
                    fh.write(data)
                return
            offset += 512 + size + (-size % 512)
    raise KeyError(f"{key}.{ext} not found in {shard_dir}/manifest.jsonl")
