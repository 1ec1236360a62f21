"""Shared-memory batch slots between the loader and its decode worker processes.

Why: a batch's encoded items (~1.4 MB of JPEGs and WAV crops for B = 20) and its decoded arrays
(~1.4 MB of uint8 faces and log-mel features) went through the process pool's pipe, pickled on
one side and unpickled on the other, in 64 KB pipe writes. Measured on the 2-core box with a
1-worker `ProcessPoolExecutor` echoing bytes: 1.4 MB each way cost 3.7 ms of CPU per round trip
(main 1.45 + worker 2.25), 2.8 MB each way 15 ms, against 0.5 ms for a 10 KB job; the whole
loader spends ~20 ms of CPU per such batch. With a slot, the loader copies the item bytes into
shared memory once, the worker decodes from it and writes its arrays back into it, and only a
small plan (keys, offsets, shapes) goes through the pipe. `benchmarks/bench_loader.py` measures
the loader end to end.

One slot per batch in flight (`num_workers + prefetch`, `shards.workers`). The loader acquires a
slot when it submits a batch and releases it once `finish_batch` has copied the arrays out, so a
worker never writes into memory the consumer still reads. A slot that is too small is replaced by a larger segment
(they never shrink), so the first batches size them. Segments are unlinked by `close()`; if the
training process is killed, Python's resource tracker unlinks them. Pages are reserved when a
segment is created, so a full /dev/shm (e.g. a container's default 64 MB) is an error the loader
catches, falling back to the pipe, never a SIGBUS in a worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

__all__ = ["SlotRef", "ShmArray", "BatchSlots", "attach", "put_array", "take_array"]


@dataclass(frozen=True)
class SlotRef:
    """What a worker needs to find a slot: the segment's name and usable size."""

    name: str
    size: int


@dataclass(frozen=True)
class ShmArray:
    """An array a worker left in a slot (sent through the pipe instead of the array itself)."""

    offset: int
    shape: tuple[int, ...]
    dtype: str


class BatchSlots:
    """Owner side: `count` reusable segments, handed out one per batch in flight."""

    def __init__(self, count: int):
        self._segments: list[shared_memory.SharedMemory | None] = [None] * count
        self._free = list(range(count))

    def acquire(self, need: int) -> int | None:
        """A free slot with at least `need` bytes (replaced by a bigger segment if needed), or None
        when all are in flight (e.g. two live iterators over one loader: that batch uses the pipe).
        Raises OSError when shared memory cannot be created."""
        if not self._free:
            return None
        index = self._free[-1]
        seg = self._segments[index]
        if seg is None or seg.size < need:
            size = max(need + need // 4, 1 << 20)  # headroom: batch sizes vary a little
            new = _reserved_segment(size)
            if seg is not None:
                _close(seg, unlink=True)
            self._segments[index] = new
        self._free.pop()
        return index

    def _segment(self, index: int) -> shared_memory.SharedMemory:
        seg = self._segments[index]
        if seg is None:
            raise ValueError(f"slot {index} has no segment (never acquired, or closed)")
        return seg

    def size(self, index: int) -> int:
        return self._segment(index).size

    def release(self, index: int) -> None:
        self._free.append(index)

    def ref(self, index: int) -> SlotRef:
        seg = self._segment(index)
        return SlotRef(seg.name, seg.size)

    def buf(self, index: int) -> memoryview:
        return _mapped(self._segment(index))

    def close(self) -> None:
        for i, seg in enumerate(self._segments):
            if seg is not None:
                _close(seg, unlink=True)
                self._segments[i] = None


def _reserved_segment(size: int) -> shared_memory.SharedMemory:
    """A new segment whose pages are allocated now. /dev/shm is a tmpfs and `SharedMemory` only
    sets its size, so a full /dev/shm (Docker's default is 64 MB) would surface later as SIGBUS
    when a worker writes into it, killing the process; `posix_fallocate` fails with ENOSPC here
    instead, and the loader falls back to the pipe (PyTorch's shared tensors do the same)."""
    seg = shared_memory.SharedMemory(create=True, size=size)
    try:
        if hasattr(os, "posix_fallocate"):
            # SharedMemory exposes no public fd (nor do its stubs declare the private one)
            os.posix_fallocate(seg._fd, 0, size)  # type: ignore[attr-defined]  # noqa: SLF001
    except OSError:
        _close(seg, unlink=True)
        raise
    return seg


def _mapped(seg: shared_memory.SharedMemory) -> memoryview:
    """The segment's memory (`buf` is None only once the segment is closed)."""
    if seg.buf is None:
        raise ValueError(f"shared-memory segment {seg.name} is closed")
    return seg.buf


def _close(seg: shared_memory.SharedMemory, unlink: bool) -> None:
    try:
        seg.close()
    except BufferError:  # a numpy view still points into it: the mapping goes when that view does
        pass
    if unlink:
        try:
            seg.unlink()
        except FileNotFoundError:
            pass


_ATTACHED: dict[str, shared_memory.SharedMemory] = {}


def attach(ref: SlotRef) -> memoryview:
    """Worker side: the slot's memory, mapped once per segment and kept (segments are reused for
    many batches). Attaching registers the name with the resource tracker the workers share with
    the loader's process (a set: no second entry), so nothing is unregistered here: that would
    drop the owner's entry and the tracker could no longer clean up after a killed run."""
    seg = _ATTACHED.get(ref.name)
    if seg is None:
        if len(_ATTACHED) >= 16:  # the owner replaced slots with bigger ones: drop stale mappings
            for name in list(_ATTACHED)[:8]:
                _close(_ATTACHED.pop(name), unlink=False)
        seg = shared_memory.SharedMemory(name=ref.name)
        _ATTACHED[ref.name] = seg
    return _mapped(seg)


def put_array(buf: memoryview, offset: int, arr: np.ndarray) -> ShmArray | None:
    """Copy `arr` into `buf` at `offset` (8-byte aligned by the caller); None if it does not fit."""
    arr = np.ascontiguousarray(arr)
    if offset + arr.nbytes > len(buf):
        return None
    np.frombuffer(buf, dtype=arr.dtype, count=arr.size, offset=offset)[:] = arr.reshape(-1)
    return ShmArray(offset, tuple(arr.shape), arr.dtype.str)


def take_array(buf: memoryview, ref: ShmArray) -> np.ndarray:
    """A view of an array a worker left in the slot: valid until the slot is released, so the
    caller copies (or converts) it before releasing."""
    count = int(np.prod(ref.shape))
    return np.frombuffer(buf, dtype=np.dtype(ref.dtype), count=count, offset=ref.offset).reshape(ref.shape)
