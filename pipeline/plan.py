"""The deterministic shard plan: which clip goes into which shard of a split.

Why a plan derived purely from inputs + settings (and not from the order work happens to finish):
a killed ingest must be able to continue by recomputing the same plan and redoing only the shards
whose completion sidecar is missing; and a shard must hold the same samples in the same order
whatever the number of workers, so that resumed and uninterrupted runs give identical bytes.

Clips are sorted by key, then permuted with a generator seeded by (seed, split): every shard mixes
many identities and an identity's clips spread over many shards, which is what the streaming
loader's identity-aware buffer needs (no identity blocks). `limit` keeps the first N clips of the
permutation, i.e. a random subset over all identities rather than the first few identities.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass

import numpy as np

from .sources import ClipRecord

#: Bump when the bytes written for the same inputs and settings change.
INGEST_FORMAT_VERSION = 1


@dataclass
class ShardPlan:
    index: int
    clips: list[ClipRecord]

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}"


@dataclass
class SplitPlan:
    dataset: str
    split: str
    shards: list[ShardPlan]
    settings: dict
    fingerprint: str
    identities: list[str]

    @property
    def num_clips(self) -> int:
        return sum(len(s.clips) for s in self.shards)


def shuffle_clips(clips: list[ClipRecord], seed: int, split: str) -> list[ClipRecord]:
    ordered = sorted(clips, key=lambda c: c.key)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(split.encode())])
    return [ordered[i] for i in rng.permutation(len(ordered))]


def make_split_plan(
    dataset: str,
    split: str,
    clips: list[ClipRecord],
    identity_info: dict[str, dict],
    settings: dict,
    seed: int,
    shard_samples: int,
    limit: int | None,
) -> SplitPlan:
    """Assign clips to shards; `settings` must hold everything that changes the output bytes."""
    if shard_samples < 1:
        raise ValueError(f"shard_samples must be >= 1, got {shard_samples}")
    order = shuffle_clips(clips, seed, split)
    if limit is not None:
        order = order[:limit]
    shards = [
        ShardPlan(i, order[start : start + shard_samples])
        for i, start in enumerate(range(0, len(order), shard_samples))
    ]
    sha = hashlib.sha1()
    sha.update(
        json.dumps(
            {"version": INGEST_FORMAT_VERSION, "dataset": dataset, "split": split, "settings": settings}, sort_keys=True
        ).encode()
    )
    for clip in order:
        info = json.dumps(identity_info.get(clip.identity, {}), sort_keys=True)
        sha.update(f"{clip.key}\0{clip.fingerprint}\0{clip.source}\0{info}\n".encode())
    identities = sorted({c.identity for c in order})
    return SplitPlan(dataset, split, shards, settings, sha.hexdigest(), identities)
