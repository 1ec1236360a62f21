"""Which rank x worker stream reads which shard pieces in which epoch.

Start-up reads only each shard set's `index.json` (O(#shards + #identities), never the manifest),
so memory and start-up time do not grow with the number of samples.

Every epoch the pieces are permuted with an RNG seeded by `(seed, epoch)` and dealt greedily to
the stream that has the fewest samples so far: the partition changes every epoch (unlike
WebDataset's fixed split-then-shuffle), is identical on every rank without communication, and
keeps per-stream sample counts within one piece of each other even with uneven shards. When there
are fewer shards than streams, shards are cut into contiguous sample ranges (the DALI `.idx`
written at ingest gives the byte offset of any sample), so no stream is ever empty — the classic
cause of DDP hangs.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shards.format import BLOCK, read_dali_index
from shards.splitinfo import empty_split_message, split_sample_count

__all__ = [
    "ShardSetError",
    "EmptyShardSetError",
    "ShardInfo",
    "ShardCatalog",
    "Piece",
    "partition_pieces",
    "sample_offset",
]


class ShardSetError(ValueError):
    """`data.shards` cannot be used as given (unreadable index.json, shard sets that disagree,
    too little data for the reader streams); the message says what to do. Training's entry point
    reports it as one line."""


class EmptyShardSetError(ShardSetError):
    """The named shard sets hold no sample (e.g. an ingest that skipped every clip of the split)."""


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    num_samples: int
    bytes: int


@dataclass(frozen=True)
class Piece:
    """Samples `[start, stop)` of shard `shard` (an index into `ShardCatalog.shards`). `offset`,
    when known, is the byte offset of sample `start` (an elastic resume's cut, `shards/elastic.py`);
    otherwise the shard's `.idx` gives it."""

    shard: int
    start: int
    stop: int
    offset: int | None = None

    @property
    def num_samples(self) -> int:
        return self.stop - self.start


class ShardCatalog:
    """The shard sets named in the config, merged: shard list, identity genders, face geometry."""

    def __init__(self, folders: list[str]):
        self.shards: list[ShardInfo] = []
        self.genders: dict[str, str | None] = {}
        geometry = set()
        self.folders = [Path(f) for f in folders]
        for folder in self.folders:
            index_path = folder / "index.json"
            if not index_path.is_file():
                raise FileNotFoundError(
                    f"{index_path} not found: data.shards must name folders written by "
                    f"`python -m pipeline.ingest` (<out>/<dataset>/<split> with index.json)"
                )
            try:
                index = json.loads(index_path.read_text())
                entries = index["shards"]
                for entry in entries:
                    self.shards.append(
                        ShardInfo(folder / entry["path"], int(entry["num_samples"]), int(entry.get("bytes", 0)))
                    )
                for ident, info in index.get("identities", {}).items():
                    self.genders[ident] = (info or {}).get("gender")
                geometry.add((int(index["num_faces"]), int(index["face_size"]), int(index["sample_rate"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise ShardSetError(
                    f"{index_path} does not follow ARCHITECTURE.md §2 ({exc!r}); re-run the ingest"
                ) from exc
        empty = [f for f in self.folders if split_sample_count(f) == 0]
        if not self.shards or self.total_samples == 0:
            if empty:
                raise EmptyShardSetError(empty_split_message(empty[0], "point data.shards at a split that has samples"))
            raise EmptyShardSetError(f"no samples listed in the index.json of {folders}")
        for folder in empty:  # the other folders still train; say which one contributes nothing
            warnings.warn(empty_split_message(folder, "drop it from data.shards"), stacklevel=2)
        if len(geometry) != 1:
            raise ShardSetError(
                f"shard sets disagree on (num_faces, face_size, sample_rate): {sorted(geometry)}; "
                "load them with separate loaders or re-ingest with the same settings"
            )
        self.num_faces, self.face_size, self.sample_rate = geometry.pop()

    @property
    def total_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    def fingerprint(self) -> str:
        """Identifies the shard list (names + counts): a checkpoint only resumes on the same data."""
        h = hashlib.sha1()
        for s in self.shards:
            h.update(f"{s.path.name}:{s.num_samples};".encode())
        return h.hexdigest()[:16]


def _pieces(catalog: ShardCatalog, num_streams: int) -> list[Piece]:
    shards = catalog.shards
    cuts = max(1, math.ceil(num_streams / len(shards)))
    pieces: list[Piece] = []
    for i, s in enumerate(shards):
        n = min(cuts, s.num_samples)
        bounds = [round(j * s.num_samples / n) for j in range(n + 1)]
        pieces.extend(Piece(i, a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a)
    if len(pieces) < num_streams:
        raise ShardSetError(
            f"{catalog.total_samples} samples cannot feed {num_streams} reader streams "
            "(world_size x num_workers); use fewer workers or more data"
        )
    return pieces


def partition_pieces(catalog: ShardCatalog, seed: int, epoch: int, num_streams: int) -> list[list[Piece]]:
    """Deal this epoch's permuted pieces to `num_streams` streams (greedy fewest-samples-first)."""
    pieces = _pieces(catalog, num_streams)
    rng = np.random.default_rng([seed, epoch, 0x5A4D])
    order = rng.permutation(len(pieces))
    streams: list[list[Piece]] = [[] for _ in range(num_streams)]
    load = [0] * num_streams
    for p in order:
        target = min(range(num_streams), key=lambda s: (load[s], s))
        streams[target].append(pieces[p])
        load[target] += pieces[p].num_samples
    # Balancing leaves few choices when shards are large; shuffling which stream (hence which
    # rank/worker) gets each group keeps a rank from seeing the same shards epoch after epoch.
    return [streams[i] for i in rng.permutation(num_streams)]


def sample_offset(shard: ShardInfo, sample: int) -> int:
    """Byte offset of sample `sample`'s first tar header, from the shard's DALI `.idx`."""
    if sample == 0:
        return 0
    index = read_dali_index(shard.path.with_suffix(".idx"))
    return min(off for off, _ in index[sample].values()) - BLOCK
