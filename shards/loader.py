"""`TupleLoader`: streaming k-candidate tuple batches for one rank (docs/LOADER.md).

Data path per rank:

    index.json --partition(seed, epoch)--> read_streams PieceStreams (sequential tar reads)
        --round robin--> IdentityBuffer (encoded crop windows, bounded) --plan_batch(rng)--> BatchPlan
        --decode workers (PIL, FLAC crop, faces_to_tensor + LogMel; shards/assemble.py)--> batch

Sampling (cheap: tar reads and bookkeeping) runs in the consuming thread, `num_workers + prefetch`
batches ahead. Each planned batch goes whole to the next of `num_workers` decode worker
*processes* in turn (`shards/workers.py`: started once from a fork server, kept across epochs),
which leave faces (normalised float32 for a CPU loader, uint8 for a CUDA one) and log-mel arrays
in a shared-memory slot; this process copies them out (normalising uint8 faces on the GPU),
builds the index tensors and moves everything to `device` (`finish_batch`). Batches are handed out in plan order. With DALI face decoding (or `decode_workers: threads`) the batch is
decoded by a thread pool in this process instead, features on `device`. Every random choice comes
from an RNG seeded by (seed, epoch, rank, plan number), and decoding is a pure function of a plan,
so worker timing never changes a batch.

State for resume (`state_dict`) is the state right after the last *yielded* batch was planned:
stream cursors (byte offsets), the round-robin position, the plan counter and the buffer's sample
locations. Loading it seeks the streams and re-reads only the buffered samples: O(buffer), the
same at 10% or 90% of an epoch. Every rank's state together also resumes on another world size
(`shards/elastic.py`).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch

from shards.assemble import (
    Assembled,
    AssembleSpec,
    assemble_batch,
    face_bytes,
    finish_batch,
    log_mel_for,
    take_from_slot,
)
from shards.batch import DIRECTIONS
from shards.buffer import IdentityBuffer
from shards.config import LoaderConfig
from shards.decode import decode_face
from shards.device_stage import DeviceStage
from shards.elastic import check_states, pieces_from_state, pieces_to_state, regroup, saved_streams_per_rank
from shards.format import ShardFormatError, read_sample_at, read_sample_refs_at
from shards.partition import Piece, ShardCatalog, partition_pieces
from shards.stream import BadSample, PieceStream, Sample, SampleParser, SkipLog
from shards.tuples import BatchPlan, plan_batch, samples_per_batch
from shards.workers import DecodeWorkers

__all__ = ["TupleLoader", "STATE_FORMAT", "STATE_FORMATS"]

STATE_FORMAT = "voxface-loader-state/2"  # /2 added `streams_per_rank`, `pieces`, `backlog`
STATE_FORMATS = ("voxface-loader-state/1", STATE_FORMAT)  # what load_state_dict reads


def _decode_face_or_bad(jpeg: bytes, key: str):
    """PIL pixels of one face, or the BadSample saying why not (counted by the caller)."""
    try:
        return decode_face(jpeg, key)
    except BadSample as exc:
        return exc


def _face_bytes_or_bad(sample: Sample):
    try:
        return face_bytes(sample)
    except BadSample as exc:
        return exc


class TupleLoader:
    """Iterate tuple batches (ARCHITECTURE.md §3) for `rank` of `world_size`, on `device`.

    Usage::

        loader = TupleLoader(cfg["data"], rank=acc.process_index, world_size=acc.num_processes,
                             device=acc.device)
        for epoch in range(start_epoch, epochs):
            loader.set_epoch(epoch)
            for batch in loader:            # exactly loader.steps_per_epoch batches on every rank
                ...

    Do not pass it to `accelerator.prepare()` or wrap it in a `torch.utils.data.DataLoader`: it
    already shards by rank and places tensors on `device` (see docs/LOADER.md).
    """

    def __init__(
        self,
        data_cfg: dict[str, Any] | LoaderConfig,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ):
        self.cfg = LoaderConfig.from_dict(data_cfg)
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        # device work on the loader's own CUDA streams: one for the assembler thread (thread mode:
        # DALI, log-mel), one for the copies here, so a hand-over never waits for the next batch
        self._decode_stage, self._device_stage = DeviceStage(self.device), DeviceStage(self.device)
        self.catalog = ShardCatalog(self.cfg.shards)
        identities = len(self.catalog.genders)
        if self.cfg.positive != "same_clip" and self.cfg.buffer_size < 0.6 * identities:
            # benchmarks/bench_loader_buffer.py: below ~0.58 x identities, clips start leaving the
            # buffer before another clip of their identity arrives (8.8% at 0.5x, 40% at 0.33x)
            warnings.warn(
                f"data.buffer_size={self.cfg.buffer_size} is small for {identities} identities: many clips "
                f"will be evicted before a positive arrives (see report()['unpaired_evicted']); use "
                f">= {int(0.7 * identities) + 1} (docs/LOADER.md, buffer sizing)",
                stacklevel=2,
            )
        self.sample_rate = self.catalog.sample_rate
        self.face_size = self.cfg.face_size or self.catalog.face_size
        self.crop_samples = int(round(self.cfg.crop_seconds * self.sample_rate))
        self.log = SkipLog(self.cfg.strict)
        self.stats: Counter[str] = Counter()
        self._by_reference = self.cfg.member_reads == "workers"
        self.parser = SampleParser(
            self.catalog.num_faces,
            self.cfg.frame,
            self.cfg.seed,
            self.catalog.genders,
            window_samples=self._window_samples(),
            fixed_crop=self.cfg.buffer_audio == "crop",
            shard_paths=[str(sh.path) for sh in self.catalog.shards] if self._by_reference else None,
        )
        self.buffer = IdentityBuffer(self.cfg.buffer_size)
        self.streams_per_rank = self.cfg.read_streams or self.cfg.num_workers
        self._num_streams = world_size * self.streams_per_rank
        self._face_decoder_kind = self._choose_face_decoder()
        self.decode_workers = self._choose_decode_workers()
        self._face_decoder = self._start_face_decoder()
        self._spec = AssembleSpec(
            crop_samples=self.crop_samples,
            sample_rate=self.sample_rate,
            face_size=self.face_size,
            k=self.cfg.k,
            gender_matched=self.cfg.gender_matched_negatives,
            log_mel=tuple(sorted(self.cfg.log_mel.items())),
            float_faces=self.device.type == "cpu",
            window_samples=self._window_samples(),
        )
        log_mel = log_mel_for(self._spec, self.device)  # bad data.log_mel values fail here, not in a decode worker
        # bytes a worker's arrays take per item, to size shared-memory slots (float32 faces at
        # the output size for a CPU loader, else uint8 crops at the shards' size; float32 log-mel
        # of one crop)
        face_bytes = 12 * self.face_size**2 if self._spec.float_faces else 3 * self.catalog.face_size**2
        out_bytes = (face_bytes, 4 * log_mel.n_mels * log_mel.num_frames(self.crop_samples))
        self._workers = DecodeWorkers(
            self.decode_workers,
            self.cfg.num_workers,
            self.cfg.prefetch,
            self._spec,
            out_bytes,
            thread_job=self._assemble_in_threads,
        )
        self.decoded_by: Counter[int] = Counter()  # decode worker pid -> batches it decoded (not resumed)
        self._streams: list[PieceStream] = []
        self._backlog: deque[list[int]] = deque()  # samples to read before the streams (elastic resume)
        self._regrouped: list[dict] | None = None  # this epoch's pieces when not the standard partition
        self._sampler_ahead = False
        self.epoch = 0
        self._start_epoch(0)

    # ----------------------------------------------------------------------------- epochs
    @property
    def steps_per_epoch(self) -> int:
        """Batches every rank yields per epoch: all samples once, split over ranks, unless set."""
        return self.steps_per_epoch_at(self.world_size)

    def steps_per_epoch_at(self, world_size: int) -> int:
        """`steps_per_epoch` of this data and batch settings on `world_size` ranks (what an elastic
        resume compares with the saved run's, to tell a world-size change from a batch change)."""
        if self.cfg.steps_per_epoch is not None:
            return self.cfg.steps_per_epoch
        per_batch = samples_per_batch(self.cfg.batch_size, self.cfg.positive)
        return max(1, self.catalog.total_samples // (world_size * per_batch))

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate. A no-op if `epoch` is the current, unfinished epoch (so
        calling it after `load_state_dict` resumes mid-epoch); otherwise starts `epoch` afresh."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        if epoch == self.epoch and self._step < self.steps_per_epoch:
            return
        self._start_epoch(epoch)

    def _start_epoch(
        self, epoch: int, pieces: list[list[Piece]] | None = None, wrap: list[list[Piece]] | None = None
    ) -> None:
        """Start `epoch` with the standard partition, or with `pieces` per stream (an elastic
        resume's regrouped rest of the epoch, read once) and `wrap` (what re-reads cycle)."""
        for s in self._streams:
            s.close()
        self.epoch = epoch
        self.parser.epoch = epoch
        if pieces is None:
            parts = partition_pieces(self.catalog, self.cfg.seed, epoch, self._num_streams)
            mine = parts[self.rank * self.streams_per_rank : (self.rank + 1) * self.streams_per_rank]
            wrap = [None] * len(mine)
            self._regrouped = None
        else:
            mine = pieces
            self._regrouped = pieces_to_state(pieces, wrap)
        self._streams = [
            PieceStream(self.catalog, ps, self.parser, self.log, cycle, by_reference=self._by_reference)
            for ps, cycle in zip(mine, wrap)
        ]
        self._rank_samples = sum(p.num_samples for ps in mine for p in ps)  # read once this epoch (coverage)
        # what the streams cycle when re-reading: bounds the reads spent looking for a batch
        self._cycle_samples = sum(p.num_samples for ps, cycle in zip(mine, wrap) for p in (cycle or ps))
        self._backlog = deque()
        self.buffer.clear()
        self._rr = 0
        self._plan_no = 0
        self._step = 0
        self._sampler_ahead = False
        self._state = self._snapshot()
        self._state["step"] = 0

    # ----------------------------------------------------------------------------- sampling
    def _add(self, sample: Sample) -> None:
        if self.buffer.full:
            self.buffer.remove(self.buffer.oldest())
            self.stats["unpaired_evicted"] += 1
        self.buffer.add(sample)

    def _read_at(self, loc: list[int] | tuple[int, int, int]) -> Sample | None:
        """The sample at `(shard, offset, size)`, or None (skipped and counted) when it cannot be read."""
        shard, offset, size = map(int, loc)
        path = self.catalog.shards[shard].path
        try:
            key, members = (read_sample_refs_at if self._by_reference else read_sample_at)(path, offset, size)
            return self.parser(key, members, (shard, offset, size))
        except (OSError, ShardFormatError) as exc:
            self.log.skip("restore_failed", f"cannot re-read buffered sample at {path}:{offset} ({exc!r})")
        except BadSample as exc:
            self.log.skip(exc.reason, str(exc))
        return None

    def _read_into_buffer(self) -> bool:
        """Add one sample: the backlog first (samples buffered by another rank before an elastic
        resume), then streams still in their first pass. False if none was read."""
        while self._backlog:
            sample = self._read_at(self._backlog.popleft())
            if sample is not None:
                self._add(sample)
                return True
        n = len(self._streams)
        for wrap in (False, True):
            for _ in range(n):
                stream = self._streams[self._rr]
                self._rr = (self._rr + 1) % n
                if not wrap and stream.first_pass_done:
                    continue
                sample = stream.next(wrap=wrap)
                if sample is None:
                    continue
                if wrap:
                    self.stats["wrapped_reads"] += 1
                self._add(sample)
                return True
        return False

    def _direction(self, plan_no: int) -> str:
        if self.cfg.direction == "both":
            return DIRECTIONS[plan_no % 2]
        return self.cfg.direction

    def _plan_next(self) -> BatchPlan:
        """Fill the buffer with unread samples, then plan; read on (re-reading if needed) until a
        batch can be formed. Raises if the data cannot ever supply one."""
        while not self.buffer.full and (self._backlog or any(not s.first_pass_done for s in self._streams)):
            if not self._read_into_buffer():
                break
        rng = np.random.default_rng([self.cfg.seed, self.epoch, self.rank, self._plan_no])
        direction = self._direction(self._plan_no)
        kwargs = dict(
            batch_size=self.cfg.batch_size,
            k=self.cfg.k,
            direction=direction,
            positive=self.cfg.positive,
            gender_matched=self.cfg.gender_matched_negatives,
            rng=rng,
        )
        plan = plan_batch(self.buffer, **kwargs)
        limit = 2 * (max(self._rank_samples, self._cycle_samples) + self.cfg.buffer_size + len(self._backlog)) + 64
        reads = 0
        chunk = max(1, self.cfg.batch_size // 2)
        while plan is None:
            for _ in range(chunk):
                self._read_into_buffer()
            reads += chunk
            if reads > limit:
                raise RuntimeError(
                    f"rank {self.rank}: cannot form a batch of {self.cfg.batch_size} tuples with K={self.cfg.k} "
                    f"(positive={self.cfg.positive}, gender_matched={self.cfg.gender_matched_negatives}) from "
                    f"{self.buffer.num_identities} identities in a {self.cfg.buffer_size}-sample buffer after "
                    f"reading {reads} samples. Lower data.batch_size / data.k, raise data.buffer_size, or use a "
                    f"positive policy the data supports (skips: {dict(self.log.counts)})"
                )
            plan = plan_batch(self.buffer, **kwargs)
        self._plan_no += 1
        return plan

    def _snapshot(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "plan_no": self._plan_no,
            "rr": self._rr,
            "streams": [s.state_dict() for s in self._streams],
            "buffer": self.buffer.locations(),
            "next_seq": self.buffer.next_seq,
            "stats": dict(self.stats),
            "skips": dict(self.log.counts),
            "world_size": self.world_size,
            "rank": self.rank,
            "streams_per_rank": self.streams_per_rank,
            "seed": self.cfg.seed,
            "buffer_size": self.cfg.buffer_size,
            "data": self.catalog.fingerprint(),
            "pieces": self._regrouped,
            "backlog": [list(loc) for loc in self._backlog],
        }

    # ----------------------------------------------------------------------------- decoding
    def _window_samples(self) -> int | None:
        """Audio samples the buffer keeps per sample (`data.buffer_audio`), None for whole clips."""
        seconds = self.cfg.window_seconds()
        if seconds is None:
            return None
        return max(self.crop_samples, int(round(seconds * self.sample_rate)))

    def _choose_face_decoder(self) -> str:
        want = self.cfg.face_decoder
        if want == "pil":
            return "pil"
        from shards.dali_decode import dali_available

        if want == "dali":
            if not dali_available():
                raise ValueError(
                    "data.face_decoder is 'dali' but nvidia.dali is not installed "
                    "(pip install nvidia-dali-cuda130) - or use 'pil'"
                )
            return "dali-gpu" if self.device.type == "cuda" else "dali-cpu"
        return "dali-gpu" if self.device.type == "cuda" and dali_available() else "pil"

    def _choose_decode_workers(self) -> str:
        want = self.cfg.decode_workers
        if want == "processes" and self._face_decoder_kind != "pil":
            raise ValueError(
                f"data.decode_workers 'processes' needs PIL face decoding, but face_decoder resolves "
                f"to {self._face_decoder_kind!r}: set data.face_decoder: pil or decode_workers: threads"
            )
        if want == "auto":
            return "processes" if self._face_decoder_kind == "pil" else "threads"
        return want

    def _start_face_decoder(self):
        """The DALI decoder behind its CPU safety net (shards/dali_decode.py), or None for PIL.
        Built here, at start-up: a forced `dali` that cannot start fails now, `auto` warns once."""
        if self._face_decoder_kind == "pil":
            return None
        from shards.dali_decode import DaliFaceDecoder, GuardedFaceDecoder

        gpu = self._face_decoder_kind == "dali-gpu"

        def build():
            return DaliFaceDecoder(
                "gpu" if gpu else "cpu",
                max_batch_size=max(64, 2 * self.cfg.batch_size + self.cfg.k),
                num_threads=self.cfg.num_workers,
                device_id=self.device.index if gpu else None,
            )

        return GuardedFaceDecoder(self._face_decoder_kind, self.cfg.face_decoder == "dali", build)

    def _decode_faces_dali(self, samples: list[Sample]) -> list | None:
        """Pixels (or BadSample) for every face, by DALI or, where DALI failed, by PIL; None: PIL
        decodes in `assemble_batch`."""
        guard = self._face_decoder
        if guard is None or guard.kind == "pil":
            return None

        pool = self._workers.item_pool
        # samples read by reference: read the JPEGs first; one that cannot be read is that face's
        # result (a data error, never DALI's: DALI only sees what was read)
        jpegs = list(pool.map(_face_bytes_or_bad, samples)) if self._by_reference else [s.face for s in samples]
        ok = [i for i, j in enumerate(jpegs) if not isinstance(j, BadSample)]

        def cpu_decode() -> list:
            return list(pool.map(_decode_face_or_bad, [jpegs[i] for i in ok], [samples[i].key for i in ok]))

        before = guard.fallback_batches
        # nothing readable: nothing for DALI (an empty batch would count as a DALI failure)
        decoded = guard.decode([jpegs[i] for i in ok], cpu_decode)[0] if ok else []
        self.stats["dali_fallback_batches"] += guard.fallback_batches - before
        faces = list(jpegs)
        for i, px in zip(ok, decoded):
            faces[i] = px
        return faces

    def _assemble_in_threads(self, plan: BatchPlan) -> Assembled:
        """Thread mode (DALI, or `decode_workers: threads`): items decoded by a thread pool in this
        process, features computed on `device`."""
        with self._decode_stage.side_stream():  # DALI, normalisation, log-mel off the training stream
            done = assemble_batch(
                plan,
                self._spec,
                faces=self._decode_faces_dali(plan.faces),
                device=self.device,
                item_map=self._workers.item_pool.map,
            )
        done.ready = self._decode_stage.mark()
        return done

    # ----------------------------------------------------------------------------- iteration
    def _guard_distributed(self) -> None:
        """Catch the two ways this loader is commonly misused under Accelerate/torchrun."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            ws, r = torch.distributed.get_world_size(), torch.distributed.get_rank()
            if (ws, r) != (self.world_size, self.rank):
                raise RuntimeError(
                    f"TupleLoader built for rank {self.rank} of {self.world_size} but this process is rank {r} of "
                    f"{ws}: build it with rank=accelerator.process_index, world_size=accelerator.num_processes "
                    "(and do not pass it to accelerator.prepare()), otherwise ranks read the same samples"
                )
        else:
            env_ws = os.environ.get("WORLD_SIZE")
            if env_ws is not None and env_ws.isdigit() and int(env_ws) != self.world_size:
                warnings.warn(
                    f"WORLD_SIZE={env_ws} in the environment but TupleLoader(world_size={self.world_size}); "
                    "pass rank/world_size from the accelerator",
                    stacklevel=3,
                )

    def __getitem__(self, index):
        raise TypeError(
            "TupleLoader is an iterator of ready batches, not a Dataset: iterate it directly. Do not wrap "
            "it in torch.utils.data.DataLoader or pass it to accelerator.prepare(); it shards by "
            "rank itself (docs/LOADER.md)"
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._guard_distributed()
        if self._step >= self.steps_per_epoch:
            self._start_epoch(self.epoch)
        if self._sampler_ahead:  # a previous iteration stopped early: rewind to the last yielded batch
            self.load_state_dict(self._state)
        self._workers.start()
        steps = self.steps_per_epoch
        pending: deque[tuple[Future, int | None, dict]] = deque()
        try:
            while self._step < steps:
                while len(pending) < self._workers.in_flight and self._step + len(pending) < steps:
                    plan = self._plan_next()
                    self._sampler_ahead = True
                    pending.append((*self._workers.submit(plan), self._snapshot()))
                future, slot, snapshot = pending.popleft()
                try:
                    batch = self._receive(future.result(), slot)
                except BrokenProcessPool as exc:
                    raise RuntimeError(
                        "a TupleLoader decode worker process died. Workers start from a fork server that "
                        "re-imports your main script: guard its top-level code with "
                        '`if __name__ == "__main__":` (as for DataLoader workers), or set '
                        "data.decode_workers: threads (see docs/LOADER.md, Decode workers)"
                    ) from exc
                if batch is None:
                    self.stats["dropped_batches"] += 1
                    continue
                self._step += 1
                self.stats["batches"] += 1
                self.stats["tuples"] += len(batch["label"])
                self.stats["decoded_items"] += batch["faces"].shape[0] + batch["voices"].shape[0]
                self._state = {
                    **snapshot,
                    "step": self._step,
                    "stats": dict(self.stats),
                    "skips": dict(self.log.counts),
                }
                self._sampler_ahead = bool(pending)  # planned batches not yet handed out
                yield batch
        finally:
            for future, _, _ in pending:
                future.cancel()
            for future, slot, _ in pending:
                if not future.cancelled():
                    try:
                        future.result()
                    except Exception:
                        pass
                self._workers.release(slot)  # the worker is done with it (or never started)

    def _receive(self, done: Assembled, slot: int | None = None) -> dict[str, Any] | None:
        """Count a decoded batch's skips here, in batch order (strict mode raises here), and put
        tensors from a worker process on `device` (copied out of its slot, which is then free)."""
        stage = self._device_stage
        try:
            batch = done.batch
            stage.wait(done.ready)
            with stage.side_stream():
                if batch is not None and slot is not None:
                    batch = finish_batch(
                        take_from_slot(batch, self._workers.slot_buf(slot, done.slot_bytes_needed)),
                        self.device,
                        self.face_size,
                    )
                elif batch is not None:
                    batch = finish_batch(batch, self.device, self.face_size)
            if batch is not None:
                batch = stage.hand_over(batch)
        finally:
            self._workers.release(slot)
        self.decoded_by[done.worker_pid] += 1
        for reason, message in done.skips:
            self.log.skip(reason, message)
        self.stats["dropped_tuples"] += done.dropped_tuples
        return batch

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Position after the last yielded batch (plain ints/strings/lists: JSON- and
        `torch.load(weights_only=True)`-safe). Per rank: save one per rank."""
        return {k: (list(map(list, v)) if k == "buffer" else v) for k, v in self._state.items()}

    def load_state_dict(self, state: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Resume where `state` was taken: seek the streams, re-read the buffered samples.

        `state` is this rank's saved state, or the list of *every* rank's state of the saved run:
        then the world size and `data.read_streams` may differ from the saved run's (elastic
        resume, `shards/elastic.py`: the rest of the epoch is regrouped over this run's ranks,
        nothing replayed or lost)."""
        expected = {"seed": self.cfg.seed, "buffer_size": self.cfg.buffer_size, "data": self.catalog.fingerprint()}
        if isinstance(state, (list, tuple)):
            check_states(list(state), expected, STATE_FORMATS)
            same = [
                s
                for s in state
                if s["world_size"] == self.world_size
                and s["rank"] == self.rank
                and saved_streams_per_rank(s) == self.streams_per_rank
            ]
            if same:  # same layout: this rank's own state resumes exactly
                return self.load_state_dict(same[0])
            return self._load_elastic(list(state))
        if state.get("format") not in STATE_FORMATS:
            raise ValueError(f"not a TupleLoader state (format {state.get('format')!r}, expected {STATE_FORMAT!r})")
        expected.update(world_size=self.world_size, rank=self.rank, streams_per_rank=self.streams_per_rank)
        saved = {**state, "streams_per_rank": saved_streams_per_rank(state)}
        diff = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
        if diff:
            raise ValueError(
                f"loader state does not match this loader (saved, now): {diff}; resume with the same "
                "data, seed, world size, rank, data.read_streams (default: num_workers) and buffer_size, "
                "or pass the list of every rank's state to change world size or streams (elastic)"
            )
        pieces, wrap = pieces_from_state(state["pieces"]) if state.get("pieces") else (None, None)
        self._start_epoch(int(state["epoch"]), pieces, wrap)
        for stream, s in zip(self._streams, state["streams"], strict=True):
            stream.load_state_dict(s)
        for shard, offset, size, seq in state["buffer"]:
            sample = self._read_at((shard, offset, size))
            if sample is not None:
                self.buffer.add(sample, seq=seq)
        self._backlog = deque(list(loc) for loc in state.get("backlog", []))
        self.buffer.next_seq = int(state["next_seq"])
        self._rr, self._plan_no, self._step = int(state["rr"]), int(state["plan_no"]), int(state["step"])
        self.stats = Counter(state.get("stats", {}))
        self.log.counts = Counter(state.get("skips", {}))
        self._sampler_ahead = False
        self._state = {**state}

    def _load_elastic(self, states: list[dict[str, Any]]) -> None:
        """Continue the saved run's epoch on this run's layout (see `shards/elastic.py`)."""
        old_spe = self.steps_per_epoch_at(int(states[0]["world_size"]))
        start = regroup(
            states,
            self.catalog,
            self.cfg.seed,
            self.world_size,
            self.rank,
            self.streams_per_rank,
            self.steps_per_epoch,
            old_spe,
        )
        self._start_epoch(start.epoch, start.pieces, start.wrap)
        self._backlog = deque(start.backlog)
        # a plan number no old rank used, the same on every new rank (RNG streams stay distinct)
        self._plan_no = max(int(s["plan_no"]) for s in states)
        self._step = start.step
        self.stats, self.log.counts = Counter(start.stats), Counter(start.skips)
        self.stats["elastic_resumes"] += 1
        self._sampler_ahead = False
        self._state = {**self._snapshot(), "step": self._step}

    # ----------------------------------------------------------------------------- reporting
    @property
    def skip_counts(self) -> dict[str, int]:
        """Bad data skipped so far, by reason (what training logs and reports)."""
        return dict(self.log.counts)

    def report(self) -> dict[str, Any]:
        """Counters for logs: skips, coverage of this epoch, decoded items per tuple, buffer use."""
        tuples = self.stats["tuples"]
        return {
            "epoch": self.epoch,
            "step": self._step,
            "steps_per_epoch": self.steps_per_epoch,
            "skips": self.skip_counts,
            "skip_messages": list(self.log.messages),
            "coverage": sum(s.fresh for s in self._streams) / max(1, self._rank_samples),
            "decoded_items_per_tuple": self.stats["decoded_items"] / tuples if tuples else None,
            "buffer_samples": len(self.buffer),
            "buffer_encoded_bytes": self.buffer.encoded_bytes(),
            "member_reads": self.cfg.member_reads,
            "face_decoder": self._face_decoder_kind,
            "decode_workers": self.decode_workers,
            **(self._face_decoder.report() if self._face_decoder is not None else {}),
            "decode_worker_batches": sorted(self.decoded_by.values(), reverse=True),
            **{
                k: self.stats[k]
                for k in (
                    "batches",
                    "tuples",
                    "dropped_tuples",
                    "dropped_batches",
                    "unpaired_evicted",
                    "wrapped_reads",
                    "dali_fallback_batches",
                    "elastic_resumes",
                )
            },
        }

    def close(self) -> None:
        for s in self._streams:
            s.close()
        self._workers.close()

    def __enter__(self) -> TupleLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    """`python -m shards.loader DIR [DIR ...]`: stream one epoch, check every batch, report."""
    import argparse
    import json
    import time

    from tqdm import tqdm

    from shards.batch import check_tuple_batch

    ap = argparse.ArgumentParser(
        prog="python -m shards.loader",
        description="Stream one epoch of k-candidate tuple batches from shard sets, check every batch "
        "against the tuple invariants (ARCHITECTURE.md §3) and print the loader report "
        "(throughput, skips, coverage). Useful to validate a fresh ingest before training.",
    )
    ap.add_argument("shards", nargs="+", help="shard-set folders (<out>/<dataset>/<split> with index.json)")
    ap.add_argument("--k", type=int, default=2, help="candidates per tuple (1 = verification pairs)")
    ap.add_argument("--batch-size", type=int, default=50, help="tuples per batch")
    ap.add_argument("--direction", default="v2f", choices=["v2f", "f2v", "both"], help="anchor modality")
    ap.add_argument("--positive", default="different_video", choices=["same_clip", "same_video", "different_video"])
    ap.add_argument("--buffer-size", type=int, default=2000, help="encoded samples in the identity buffer")
    ap.add_argument("--num-workers", type=int, default=2, help="reader streams and decode worker processes")
    ap.add_argument("--max-batches", type=int, default=None, help="stop after this many batches")
    ap.add_argument("--epoch", type=int, default=0, help="which epoch's order to stream")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strict", action="store_true", help="stop at the first bad sample instead of skipping it")
    ap.add_argument("--device", default="cpu", help="where tensors are put (cpu, cuda, cuda:1)")
    args = ap.parse_args(argv)
    cfg = dict(
        shards=args.shards,
        k=args.k,
        batch_size=args.batch_size,
        direction=args.direction,
        positive=args.positive,
        buffer_size=args.buffer_size,
        num_workers=args.num_workers,
        seed=args.seed,
        strict=args.strict,
    )
    try:
        loader = TupleLoader(cfg, device=args.device)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    loader.set_epoch(args.epoch)
    total = min(loader.steps_per_epoch, args.max_batches or loader.steps_per_epoch)
    t0 = time.perf_counter()
    tuples = 0
    with loader:
        try:
            for i, batch in enumerate(tqdm(loader, total=total, unit="batch", desc="tuples", disable=None)):
                check_tuple_batch(batch, k=args.k)
                tuples += len(batch["label"])
                if i + 1 >= total:
                    break
        except RuntimeError as exc:  # ShardReadError (strict) or data that cannot form batches
            raise SystemExit(f"error: {exc}") from None
        seconds = time.perf_counter() - t0
        report = loader.report()
    print(f"{total} batches, {tuples} tuples in {seconds:.1f} s ({tuples / seconds:.1f} tuples/s), all invariants hold")
    print(
        f"samples in index: {loader.catalog.total_samples} in {len(loader.catalog.shards)} shards; "
        f"steps per epoch: {loader.steps_per_epoch}"
    )
    print(json.dumps({k: v for k, v in report.items() if k != "skip_messages"}, indent=1))
    for msg in report["skip_messages"]:
        print("skipped:", msg)


if __name__ == "__main__":
    main()
