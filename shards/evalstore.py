"""Random-access evaluation store (zarr) for val/test splits.

Why a second representation next to the tars: evaluation protocols address items by trial lists
("voice X vs faces Y, Z"), in an order unrelated to the shard order. Scanning tars for every trial
list would be O(dataset) per protocol; a zarr store gives O(1) access to any sample's face crops
(already decoded to uint8, so evaluation never depends on a JPEG decoder's version) and audio.

Layout of `<split>/eval.zarr` (zarr v3 group):

* `faces`: uint8 `[N, F, S, S, 3]`, one chunk per sample, zstd-compressed;
* `audio`: int16 `[total_samples]` (16 kHz mono, all utterances concatenated), with
  `audio_offsets`: int64 `[N + 1]` so sample i is `audio[offsets[i]:offsets[i+1]]`;
* group attributes: `num_faces`, `face_size`, `sample_rate`, `format_version`, and `samples`, a
  column dict (`key`, `identity`, `video`, `clip`, `gender`, `nationality`) of N entries each.

The store is built in `<path>.partial` and renamed into place when complete, like the shards.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from shards.splitinfo import empty_split_message, split_sample_count

FORMAT_VERSION = 1
_COLUMNS = ("key", "identity", "video", "clip", "gender", "nationality")
_AUDIO_CHUNK = 16000 * 30


class EvalStoreWriter:
    """Append samples in order, then `close()` to publish the store atomically."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        num_faces: int,
        face_size: int,
        sample_rate: int = 16000,
        flush_every: int = 64,
    ):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.num_faces, self.face_size, self.sample_rate = num_faces, face_size, sample_rate
        self._root = zarr.open_group(str(self.tmp), mode="w")
        compressor = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
        self._faces = self._root.create_array(
            "faces",
            shape=(0, num_faces, face_size, face_size, 3),
            dtype="uint8",
            chunks=(1, num_faces, face_size, face_size, 3),
            compressors=compressor,
        )
        self._audio = self._root.create_array(
            "audio", shape=(0,), dtype="int16", chunks=(_AUDIO_CHUNK,), compressors=compressor
        )
        self._columns: dict[str, list[str | None]] = {c: [] for c in _COLUMNS}
        self._offsets = [0]
        self._pending_faces: list[np.ndarray] = []
        self._pending_audio: list[np.ndarray] = []
        self._flush_every = flush_every

    def append(
        self,
        *,
        key: str,
        identity: str,
        video: str,
        clip: str,
        faces: np.ndarray,
        audio: np.ndarray,
        gender: str | None = None,
        nationality: str | None = None,
    ) -> None:
        faces = np.asarray(faces)
        expected = (self.num_faces, self.face_size, self.face_size, 3)
        if faces.shape != expected or faces.dtype != np.uint8:
            raise ValueError(f"{key}: faces must be uint8 {expected}, got {faces.dtype} {faces.shape}")
        audio = np.asarray(audio)
        if audio.dtype != np.int16 or audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"{key}: audio must be non-empty 1-D int16, got {audio.dtype} {audio.shape}")
        for col, value in zip(_COLUMNS, (key, identity, video, clip, gender, nationality)):
            self._columns[col].append(value)
        self._offsets.append(self._offsets[-1] + audio.size)
        self._pending_faces.append(faces)
        self._pending_audio.append(audio)
        if len(self._pending_faces) >= self._flush_every:
            self._flush()

    def _flush(self) -> None:
        if not self._pending_faces:
            return
        n0 = self._faces.shape[0]
        block = np.stack(self._pending_faces)
        self._faces.resize((n0 + len(block),) + self._faces.shape[1:])
        self._faces[n0:] = block
        a0 = self._audio.shape[0]
        wave = np.concatenate(self._pending_audio)
        self._audio.resize((a0 + wave.size,))
        self._audio[a0:] = wave
        self._pending_faces, self._pending_audio = [], []

    def close(self) -> Path:
        self._flush()
        if not self._columns["key"]:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise ValueError(f"refusing to publish an empty evaluation store {self.path}")
        self._root.create_array("audio_offsets", data=np.asarray(self._offsets, dtype=np.int64))
        self._root.attrs.update(
            {
                "format_version": FORMAT_VERSION,
                "num_faces": self.num_faces,
                "face_size": self.face_size,
                "sample_rate": self.sample_rate,
                "samples": self._columns,
            }
        )
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class EvalStore:
    """Read side: `len(store)`, column lists, `index_of(key)`, `faces(i)`, `audio(i)`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.exists():
            if split_sample_count(self.path.parent) == 0:  # an empty split gets no store
                raise FileNotFoundError(
                    empty_split_message(
                        self.path.parent,
                        "evaluate or validate on another split (launch.evaluate "
                        "--test-split / --val-split, train.val_data)",
                    )
                )
            raise FileNotFoundError(
                f"no evaluation store at {self.path}; run `python -m pipeline.ingest` for this split "
                "(val/test splits get an eval.zarr)"
            )
        self._root = zarr.open_group(str(self.path), mode="r")
        attrs: dict[str, Any] = dict(self._root.attrs)
        if attrs.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: unsupported eval store version {attrs.get('format_version')}")
        self.num_faces = int(attrs["num_faces"])
        self.face_size = int(attrs["face_size"])
        self.sample_rate = int(attrs["sample_rate"])
        cols = attrs["samples"]
        self.keys: list[str] = list(cols["key"])
        self.identities: list[str] = list(cols["identity"])
        self.videos: list[str] = list(cols["video"])
        self.clips: list[str] = list(cols["clip"])
        self.genders: list[str | None] = list(cols["gender"])
        self.nationalities: list[str | None] = list(cols["nationality"])
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._faces = self._array("faces")
        self._audio = self._array("audio")
        self._offsets = np.asarray(self._array("audio_offsets")[:])

    def _array(self, name: str) -> zarr.Array[Any]:
        node = self._root[name]
        if isinstance(node, zarr.Array):
            return node
        raise ValueError(f"{self.path}: {name!r} is a group, not an array; not an evaluation store")

    def __len__(self) -> int:
        return len(self.keys)

    def index_of(self, key: str) -> int:
        try:
            return self._index[key]
        except KeyError:
            raise KeyError(f"sample {key!r} is not in {self.path}") from None

    def faces(self, i: int) -> np.ndarray:
        """uint8 `[F, S, S, 3]` face crops of sample i."""
        return np.asarray(self._faces[i])

    def audio(self, i: int) -> np.ndarray:
        """int16 `[n]` waveform of sample i (divide by 32768 for float)."""
        return np.asarray(self._audio[self._offsets[i] : self._offsets[i + 1]])
