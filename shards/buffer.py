"""The identity-aware buffer: a bounded FIFO of encoded samples, indexed by identity.

Positives for a tuple (another clip of the anchor's identity, from the same or a different video)
must come from somewhere without random access: the stream fills this buffer, the tuple planner
takes pairs out of it. It holds where each sample's face and audio members lie in their shard
(`data.member_reads: workers`, ~1 KB per sample: the decode workers read the bytes) or their
*encoded* bytes (`stream`: one JPEG + the audio clip, window or crop, see `SampleParser`), never
decoded tensors, so its memory is `capacity x` that, fixed by config (WebDataset #439).

For checkpoints only the samples' locations `(shard, offset, size)` and insertion order are saved;
`load_state_dict` in the loader re-reads them with `read_sample_at` (Megatron-Energon's
`SavableSampleBuffer` idea), so resume costs O(capacity) reads wherever the epoch stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

from shards.stream import Sample

__all__ = ["IdentityBuffer"]


class IdentityBuffer:
    def __init__(self, capacity: int):
        if capacity < 2:
            raise ValueError(f"buffer capacity must be >= 2, got {capacity}")
        self.capacity = capacity
        self._fifo: dict[int, Sample] = {}
        self._by_identity: dict[str, dict[int, Sample]] = {}
        # identity -> video -> buffered clips: how many partners an anchor has, without a scan
        self._videos: dict[str, dict[str, int]] = {}
        self.next_seq = 0

    def __len__(self) -> int:
        return len(self._fifo)

    @property
    def full(self) -> bool:
        return len(self._fifo) >= self.capacity

    def add(self, sample: Sample, seq: int | None = None) -> None:
        if self.full:
            raise RuntimeError(f"buffer full ({self.capacity} samples): evict before adding")
        sample.seq = self.next_seq if seq is None else seq
        self.next_seq = max(self.next_seq, sample.seq + 1)
        self._fifo[sample.seq] = sample
        self._by_identity.setdefault(sample.identity, {})[sample.seq] = sample
        videos = self._videos.setdefault(sample.identity, {})
        videos[sample.video] = videos.get(sample.video, 0) + 1

    def remove(self, sample: Sample) -> None:
        del self._fifo[sample.seq]
        same = self._by_identity[sample.identity]
        del same[sample.seq]
        videos = self._videos[sample.identity]
        videos[sample.video] -= 1
        if not videos[sample.video]:
            del videos[sample.video]
        if not same:
            del self._by_identity[sample.identity]
            del self._videos[sample.identity]

    def oldest(self) -> Sample:
        return next(iter(self._fifo.values()))

    def fifo(self) -> Iterator[Sample]:
        """Samples oldest first (a snapshot: safe to remove while iterating)."""
        return iter(list(self._fifo.values()))

    def of_identity(self, identity: str) -> list[Sample]:
        """This identity's buffered samples, oldest first."""
        return list(self._by_identity.get(identity, {}).values())

    def num_partners(self, sample: Sample, same_video: bool) -> int:
        """How many other buffered clips of `sample`'s identity come from the same video
        (`same_video`) or from another one: O(1), so a planner can reject anchors cheaply."""
        videos = self._videos[sample.identity]
        if same_video:
            return videos[sample.video] - 1
        return len(self._by_identity[sample.identity]) - videos[sample.video]

    @property
    def num_identities(self) -> int:
        return len(self._by_identity)

    def clear(self) -> None:
        self._fifo.clear()
        self._by_identity.clear()
        self._videos.clear()
        self.next_seq = 0

    def locations(self) -> list[list[int]]:
        """`[shard, offset, size, seq]` per sample, oldest first: the buffer's checkpoint."""
        return [[*s.loc, s.seq] for s in self._fifo.values()]

    def encoded_bytes(self) -> int:
        return sum(len(s.face) + len(s.audio) for s in self._fifo.values())
