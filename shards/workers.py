"""The loader's decode workers: who decodes a planned batch, and how its bytes travel there.

Why a module of its own: `TupleLoader` samples (streams, buffer, planner, resume state); this
pool only turns plans into decoded batches, and its lifetime rules (fork server, shared-memory
slots, clean-up when the loader is dropped or its process killed) are independent of sampling.

Why one single-process executor per worker, fed round robin, rather than one shared
`ProcessPoolExecutor`: batches are handed out in plan order anyway, so batch i waits for batch
i - 1; dealing plan i to worker `i mod num_workers` guarantees that every configured worker
decodes (tested), makes which worker decoded what reproducible, and keeps each worker's queue at
`in_flight / num_workers` batches. The loader keeps `num_workers + prefetch` batches in flight
(`in_flight_batches`): one decoding on every worker plus `prefetch` ready or queued. Before, it
kept `1 + prefetch` = 3, so with `num_workers: 8` at most 3 workers ever had work.

Thread mode (DALI faces, or `decode_workers: threads`) runs `thread_job(plan)` on one assembler
thread in the training process; its items are decoded by `num_workers` threads (the job's own
`item_map`), so batches in flight stay `1 + prefetch` there.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
import weakref
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

from shards.assemble import (
    AssembleSpec,
    assemble_batch,
    assemble_in_slot,
    lean_plan,
    pack_into_slot,
    slot_bytes,
    worker_init,
)
from shards.shm import BatchSlots
from shards.tuples import BatchPlan

__all__ = ["DecodeWorkers", "in_flight_batches", "worker_context"]


def in_flight_batches(mode: str, num_workers: int, prefetch: int) -> int:
    """Batches planned and not yet handed out: one per decode process plus `prefetch` (processes),
    or `1 + prefetch` with the single assembler thread of thread mode."""
    return num_workers + prefetch if mode == "processes" else 1 + prefetch


def worker_context() -> multiprocessing.context.BaseContext:
    """forkserver where available: a plain fork of a training process that has run torch's
    OpenMP pool can leave the child spinning forever in its first parallel op (we saw a decode
    worker hang this way in tests), while the fork server is a clean process that imported only
    `shards.assemble`; workers are forked from it in milliseconds."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["shards.assemble"])
        return ctx
    return multiprocessing.get_context("spawn")


class DecodeWorkers:
    """Submit planned batches for decoding; started lazily, kept across epochs, `close()`d once.

    `submit(plan)` returns `(future, slot)`: the future gives an `Assembled`, the slot (or None when
    the batch went through the pipe) must be given back with `release(slot)` once its arrays were
    copied out (`slot_buf`)."""

    def __init__(
        self,
        mode: str,
        num_workers: int,
        prefetch: int,
        spec: AssembleSpec,
        out_bytes: tuple[int, int],
        thread_job: Callable[[BatchPlan], object] | None = None,
    ):
        if mode not in ("processes", "threads"):
            raise ValueError(f"decode mode must be 'processes' or 'threads', got {mode!r}")
        self.mode, self.num_workers, self.spec = mode, num_workers, spec
        self.in_flight = in_flight_batches(mode, num_workers, prefetch)
        self._out_bytes = out_bytes  # (bytes per face item, bytes per voice item) of the workers' arrays
        self._thread_job = thread_job
        self._executors: list[Executor] = []
        self.item_pool: ThreadPoolExecutor | None = None  # thread mode: per-item decodes
        self.slots: BatchSlots | None = None
        self._slots_failed = False
        self._slot_floor = 0  # raised when a worker's arrays did not fit the `_out_bytes` estimate
        self._submitted = 0
        self.batches_per_worker: Counter[int] = Counter()  # worker index -> batches it was dealt
        self._finalizer: weakref.finalize | None = None

    @property
    def started(self) -> bool:
        return bool(self._executors)

    def start(self) -> None:
        """Start the workers (idempotent). A dropped pool must not leave processes behind, hence
        the finalizer (it holds the executors, not `self`)."""
        if self._executors:
            return
        if self.mode == "processes":
            ctx = worker_context()
            self._executors = [
                ProcessPoolExecutor(1, initializer=worker_init, initargs=(os.getpid(),), mp_context=ctx)
                for _ in range(self.num_workers)
            ]
            self.slots = BatchSlots(self.in_flight)  # one per batch in flight
        else:
            self.item_pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="tuple-decode")
            self._executors = [ThreadPoolExecutor(1, thread_name_prefix="tuple-assemble")]
        self._finalizer = weakref.finalize(self, _shutdown, list(self._executors), self.item_pool, self.slots)

    def pids(self) -> list[int]:
        """Process ids of the decode workers started so far (processes mode)."""
        return [pid for ex in self._executors for pid in getattr(ex, "_processes", {}) or {}]

    def submit(self, plan: BatchPlan) -> tuple[Future, int | None]:
        """Start decoding a planned batch on the next worker in turn."""
        self.start()
        worker = self._submitted % len(self._executors)
        self._submitted += 1
        self.batches_per_worker[worker] += 1
        pool = self._executors[worker]
        if self.mode != "processes":
            return pool.submit(self._thread_job, plan), None
        lean = lean_plan(plan, self.spec.crop_samples)
        slot = None
        if self.slots is not None and not self._slots_failed:
            out = len(lean.faces) * self._out_bytes[0] + len(lean.voices) * self._out_bytes[1]
            try:
                slot = self.slots.acquire(max(slot_bytes(lean, out), self._slot_floor))
            except OSError as exc:  # e.g. a container's small /dev/shm: use the pipe from now on
                warnings.warn(
                    f"TupleLoader: no shared memory for batch slots ({exc}); decoded batches go through "
                    "pipes (slower). In Docker, raise --shm-size.",
                    stacklevel=4,
                )
                self._slots_failed = True
        if slot is not None:
            bare, face_spans, voice_spans, out_offset = pack_into_slot(lean, self.slots.buf(slot))
            return pool.submit(
                assemble_in_slot, bare, self.spec, self.slots.ref(slot), face_spans, voice_spans, out_offset
            ), slot
        return pool.submit(assemble_batch, lean, self.spec), None

    def slot_buf(self, slot: int, needed: int) -> memoryview:
        """The slot's memory, to copy a worker's arrays out of; `needed` (what the worker reported)
        grows later slots when this one was too small."""
        if needed > self.slots.size(slot):  # e.g. faces larger than index.json says
            self._slot_floor = max(self._slot_floor, needed + 4096)
        return self.slots.buf(slot)

    def release(self, slot: int | None) -> None:
        if slot is not None and self.slots is not None:
            self.slots.release(slot)

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            _shutdown(self._executors, self.item_pool, self.slots)
        self._executors, self.item_pool, self.slots, self._finalizer = [], None, None, None


def _shutdown(executors: list[Executor], item_pool: Executor | None, slots: BatchSlots | None) -> None:
    for pool in [*executors, item_pool]:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if slots is not None:  # after the workers stopped writing into them
        slots.close()
