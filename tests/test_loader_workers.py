"""Decode worker processes (data.decode_workers): same batches as decoding in threads, bad data
counted the same way, and no worker process outlives its loader."""

import gc
import json
import os
import re
import shutil
import time

import pytest
import torch

from shards.batch import check_tuple_batch
from shards.loader import TupleLoader
from shards.stream import ShardReadError
from shards.testing import SyntheticSpec, corrupt_member, make_shard_set


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    spec = SyntheticSpec(num_identities=8, videos_per_identity=3, clips_per_video=3, shard_sizes=[18, 18, 18, 18])
    return make_shard_set(tmp_path_factory.mktemp("workers") / "s", spec)


def _cfg(d, **kw):
    base = dict(shards=[str(d)], batch_size=4, k=3, buffer_size=24, crop_seconds=0.3, seed=11, direction="both")
    base.update(kw)
    return base


def _children(pid="self") -> set[int]:
    pids = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                pids |= {int(p) for p in fh.read().split()}
        except OSError:
            pass
    return pids


def _workers() -> set[int]:
    """Decode workers are forked by the fork server, a child of this process."""
    return {w for child in _children() for w in _children(child)}


def _epoch(cfg):
    with TupleLoader(cfg) as loader:
        batches = list(loader)
        return batches, loader.report()


def _assert_same_batches(a, b):
    """Same keys, labels, indices and pixels; log-mel features equal to float32 rounding, because
    thread mode computes them in this process with its torch threads and a worker with one, and
    LogMel's GEMMs may block differently (~5e-7 apart). Runs of one mode are bit-identical
    (test_resume_mid_epoch_with_worker_processes_equals_uninterrupted)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if key == "voices":
                torch.testing.assert_close(x[key], y[key], rtol=0, atol=1e-5)
            elif isinstance(x[key], torch.Tensor):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


def test_processes_and_threads_give_identical_batches(shard_dir):
    procs, rep_p = _epoch(_cfg(shard_dir, decode_workers="processes"))
    threads, rep_t = _epoch(_cfg(shard_dir, decode_workers="threads"))
    assert rep_p["decode_workers"] == "processes" and rep_t["decode_workers"] == "threads"
    for b in procs:
        check_tuple_batch(b, k=3)
    _assert_same_batches(procs, threads)  # keys and pixels bit for bit, features to rounding
    assert rep_p["decoded_items_per_tuple"] == rep_t["decoded_items_per_tuple"] <= 2


def test_resume_mid_epoch_with_worker_processes_equals_uninterrupted(shard_dir):
    cfg = _cfg(shard_dir, decode_workers="processes")
    full, _ = _epoch(cfg)
    with TupleLoader(cfg) as first:
        it = iter(first)
        head = [next(it) for _ in range(2)]
        state = json.loads(json.dumps(first.state_dict()))
        it.close()
    with TupleLoader(cfg) as second:
        second.load_state_dict(state)
        tail = list(second)
    _assert_same_batches(head + tail, full)
    assert all(torch.equal(x["voices"], y["voices"]) for x, y in zip(head + tail, full))  # one mode: bit for bit


def test_bad_items_are_counted_in_batch_order_like_threads(tmp_path, shard_dir):
    d = shutil.copytree(shard_dir, tmp_path / "s")
    keys = [json.loads(line)["key"] for line in open(d / "manifest.jsonl")]
    for key in keys[:6]:
        corrupt_member(d, key, "wav", b"\x00garbage\xff")
    for key in keys[6:10]:
        corrupt_member(d, key, "f0.jpg", b"\x00garbage\xff")
    procs, rep_p = _epoch(_cfg(d, decode_workers="processes", frame="first"))
    threads, rep_t = _epoch(_cfg(d, decode_workers="threads", frame="first"))
    assert rep_p["skips"].get("undecodable_audio", 0) >= 1 and rep_p["dropped_tuples"] >= 1
    for field in ("skips", "dropped_tuples", "dropped_batches"):
        assert rep_p[field] == rep_t[field], field

    def addresses(msgs):  # PIL names its BytesIO by address
        return [re.sub(r"0x[0-9a-f]+", "0x?", m) for m in msgs]

    assert addresses(rep_p["skip_messages"]) == addresses(rep_t["skip_messages"])
    _assert_same_batches(procs, threads)
    with pytest.raises(ShardReadError, match="does not decode"):
        _epoch(_cfg(d, decode_workers="processes", frame="first", strict=True))


def test_no_worker_process_outlives_its_loader(shard_dir):
    before = _workers()
    with TupleLoader(_cfg(shard_dir, decode_workers="processes", num_workers=2)) as loader:
        next(iter(loader))
        workers = _workers() - before
        assert len(workers) == 2
    assert not (_workers() & workers)  # close() joined them

    dropped = TupleLoader(_cfg(shard_dir, decode_workers="processes"))
    next(iter(dropped))
    workers = _workers() - before
    assert workers
    del dropped
    gc.collect()
    deadline = time.monotonic() + 10
    while _workers() & workers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (_workers() & workers)  # a loader dropped without close() does not leak workers


def test_decode_workers_setting_is_validated(shard_dir):
    with pytest.raises(ValueError, match="decode_workers"):
        TupleLoader(_cfg(shard_dir, decode_workers="fibers"))
    with pytest.raises(ValueError, match="decode_workers 'processes' needs PIL"):
        TupleLoader(_cfg(shard_dir, decode_workers="processes", face_decoder="dali"))


def test_mixed_crop_sizes_decode_alike_in_a_worker_and_in_threads():
    # the worker returns float faces when crop sizes differ (uint8 only when they can be stacked);
    # both paths must end in the same resized, normalised batch
    import numpy as np

    from shards.assemble import AssembleSpec, assemble_batch, finish_batch
    from shards.stream import Sample
    from shards.testing import face_jpeg, voice_flac
    from shards.tuples import BatchPlan

    rng = np.random.default_rng(0)
    items = [
        Sample(f"k{i}", f"id{i}", "v", "c", None, face_jpeg(i, 0, size, rng), voice_flac(i, 0.5, 16000, rng), (0, 0, 0))
        for i, size in enumerate((32, 40, 48))
    ]
    plan = BatchPlan(
        "v2f",
        faces=items,
        voices=items,
        voice_crop=[0.1, 0.2, 0.3],
        anchor_index=[0, 1, 2],
        candidate_index=[[0, 1], [2, 1], [0, 2]],
        label=[0, 1, 1],
    )
    spec = AssembleSpec(crop_samples=8000, sample_rate=16000, face_size=32, k=2, gender_matched=False, log_mel=())
    cpu = torch.device("cpu")
    worker = finish_batch(assemble_batch(plan, spec).batch, cpu, 32)
    threads = finish_batch(assemble_batch(plan, spec, device=cpu).batch, cpu, 32)
    assert worker["faces"].shape == (3, 3, 32, 32)
    _assert_same_batches([worker], [threads])
    check_tuple_batch(worker, k=2)


def test_cpu_loader_workers_send_normalised_faces_equal_to_the_uint8_path():
    """For a CPU loader the workers normalise faces (`float_faces`), through a shared-memory slot;
    the consuming process then only copies them out. Same values and the same memory layout as
    normalising the uint8 pixels in the consuming process (what a CUDA loader does, on the GPU)."""
    import dataclasses

    import numpy as np

    from shards.assemble import (
        AssembleSpec,
        assemble_batch,
        assemble_in_slot,
        finish_batch,
        pack_into_slot,
        take_from_slot,
    )
    from shards.shm import BatchSlots
    from shards.stream import Sample
    from shards.testing import face_jpeg, voice_wav
    from shards.tuples import BatchPlan

    rng = np.random.default_rng(1)
    items = [
        Sample(f"k{i}", f"id{i}", "v", "c", None, face_jpeg(i, 0, 40, rng), voice_wav(i, 0.5, 16000, rng), (0, 0, 0))
        for i in range(3)
    ]
    plan = BatchPlan(
        "v2f", faces=items, voices=items, voice_crop=[0.1, 0.2, 0.3], anchor_index=[0, 1, 2],
        candidate_index=[[0, 1], [2, 1], [0, 2]], label=[0, 1, 1],
    )  # fmt: skip
    uint8_spec = AssembleSpec(crop_samples=4000, sample_rate=16000, face_size=32, k=2, gender_matched=False, log_mel=())
    float_spec = dataclasses.replace(uint8_spec, float_faces=True)
    cpu = torch.device("cpu")
    sent_uint8 = assemble_batch(plan, uint8_spec).batch
    assert sent_uint8["faces"].dtype == np.uint8
    reference = finish_batch(sent_uint8, cpu, 32)
    slots = BatchSlots(1)
    slot = slots.acquire(4 << 20)
    try:
        bare, face_spans, voice_spans, out_offset = pack_into_slot(plan, slots.buf(slot))
        done = assemble_in_slot(bare, float_spec, slots.ref(slot), face_spans, voice_spans, out_offset)
        batch = finish_batch(take_from_slot(done.batch, slots.buf(slot)), cpu, 32)
        slots.buf(slot)[:] = bytes(slots.size(slot))  # the slot is reused: the batch must not depend on it
    finally:
        slots.release(slot)
        slots.close()
    assert batch["faces"].dtype == torch.float32 and batch["faces"].shape == (3, 3, 32, 32)
    assert torch.equal(batch["faces"], reference["faces"])
    assert batch["faces"].stride() == reference["faces"].stride()  # channels-last memory, as before
    assert set(batch) == set(reference)  # no transport marker left in the batch
    _assert_same_batches([batch], [reference])


_KILLED_OWNER = """
import os, signal, sys
from shards.loader import TupleLoader
if __name__ == "__main__":
    loader = TupleLoader(dict(shards=[sys.argv[1]], batch_size=4, k=3, buffer_size=24, crop_seconds=0.3,
                              seed=11, num_workers=2, decode_workers="processes"))
    loader.set_epoch(0)
    next(iter(loader))
    print(" ".join(str(p) for p in loader._workers.pids()), flush=True)
    print(" ".join(seg.name for seg in loader._workers.slots._segments if seg is not None), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup at all, like the OOM killer or preemption
"""


def test_workers_exit_when_their_training_process_is_killed(shard_dir, tmp_path):
    """`kill -9` of a training run must not leave decode workers (and their fork server) behind."""
    import subprocess
    import sys

    script = tmp_path / "owner.py"
    script.write_text(_KILLED_OWNER)
    proc = subprocess.run(
        [sys.executable, str(script), str(shard_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    pids, segments = proc.stdout.splitlines()
    workers = [int(p) for p in pids.split()]
    assert len(workers) == 2 and segments.split()

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
        except FileNotFoundError:
            return False

    deadline = time.time() + 20
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(alive(p) for p in workers), f"decode workers {workers} outlived their killed owner"
    # the batch slots' shared memory goes too (the resource tracker unlinks it when all users are gone)
    while time.time() < deadline and any(os.path.exists(f"/dev/shm/{n}") for n in segments.split()):
        time.sleep(0.2)
    assert not [n for n in segments.split() if os.path.exists(f"/dev/shm/{n}")], "shared memory leaked"


def _segments(loader):
    return [f"/dev/shm/{seg.name}" for seg in loader._workers.slots._segments if seg is not None]


def test_batches_travel_in_shared_memory_slots_that_are_removed_on_close(shard_dir):
    with TupleLoader(_cfg(shard_dir, decode_workers="processes")) as loader:
        batches = list(loader)
        names = _segments(loader)
        assert 1 <= len(names) <= loader._workers.in_flight and all(os.path.exists(n) for n in names)
        assert sorted(loader._workers.slots._free) == list(range(loader._workers.in_flight))  # every slot returned
    assert not any(os.path.exists(n) for n in names)
    for b in batches:  # yielded tensors own their memory: nothing points into a removed segment
        assert torch.isfinite(b["voices"]).all() and b["faces"].abs().max() <= 1

    dropped = TupleLoader(_cfg(shard_dir, decode_workers="processes"))
    next(iter(dropped))
    names = _segments(dropped)
    del dropped
    gc.collect()
    assert names and not any(os.path.exists(n) for n in names)  # a loader dropped without close()


def test_without_shared_memory_batches_go_through_the_pipe_unchanged(shard_dir, monkeypatch):
    from shards.shm import BatchSlots

    with TupleLoader(_cfg(shard_dir, decode_workers="processes")) as loader:
        reference = list(loader)

    def no_shm(self, need):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BatchSlots, "acquire", no_shm)
    with pytest.warns(UserWarning, match="shm-size"):
        with TupleLoader(_cfg(shard_dir, decode_workers="processes")) as loader:
            piped = list(loader)
    _assert_same_batches(piped, reference)


def test_a_full_dev_shm_is_an_error_at_acquire_not_a_crash_later(monkeypatch):
    import errno

    import shards.shm
    from shards.shm import BatchSlots

    before = set(os.listdir("/dev/shm"))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.shm.os, "posix_fallocate", full)
    slots = BatchSlots(1)
    with pytest.raises(OSError, match="No space"):
        slots.acquire(1000)
    assert not {n for n in set(os.listdir("/dev/shm")) - before if n.startswith("psm")}  # nothing left behind
    slots.close()


def test_slot_round_trip_grows_and_reports_full():
    import numpy as np

    from shards.shm import BatchSlots, attach, put_array, take_array

    slots = BatchSlots(2)
    try:
        a = slots.acquire(100)
        small = slots.ref(a)
        slots.release(a)
        a = slots.acquire(small.size + 1)  # too small now: replaced by a bigger segment
        assert slots.ref(a).size > small.size and not os.path.exists(f"/dev/shm/{small.name}")
        b = slots.acquire(10)
        assert slots.acquire(10) is None  # both in flight
        arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        ref = put_array(attach(slots.ref(b)), 64, arr)
        assert np.array_equal(take_array(slots.buf(b), ref), arr)
        assert put_array(slots.buf(b), slots.ref(b).size - 8, arr) is None  # does not fit: caller uses the pipe
    finally:
        slots.close()


def test_items_sent_to_workers_keep_every_sample_field():
    """`_with_bytes` builds Samples field by field (for speed): a field added to Sample later must
    not be dropped on the way to a decode worker."""
    import dataclasses

    from shards.assemble import _with_bytes
    from shards.format import MemberSpan
    from shards.stream import MemberRefs, Sample

    s = Sample(
        "k", "id1", "v", "c", "f", b"jpg", b"wav", (1, 2, 3), seq=7, audio_start=3, audio_span=5, crop_fraction=0.25,
        refs=MemberRefs("shard.tar", MemberSpan(512, 9), MemberSpan(1536, 44)), window_fraction=0.5,
    )  # fmt: skip
    assert all(
        getattr(s, f.name) != f.default for f in dataclasses.fields(Sample)
    )  # every field set, none left default
    out = _with_bytes(s, b"J", b"A")
    for f in dataclasses.fields(Sample):
        expected = {"face": b"J", "audio": b"A"}.get(f.name, getattr(s, f.name))
        assert getattr(out, f.name) == expected, f.name


def test_slots_grow_when_a_workers_arrays_are_larger_than_estimated(tmp_path):
    """Slots are sized from an estimate of the workers' arrays (uint8 crops at index.json's
    face_size for a CUDA loader, float faces at the output size on CPU); if the arrays are larger
    (e.g. JPEGs larger than the index says), that batch's arrays come back through the pipe, later
    slots are sized from what the worker needed, and the batches are the same."""
    from shards.testing import SyntheticSpec, make_shard_set

    spec = SyntheticSpec(num_identities=12, videos_per_identity=2, clips_per_video=2, face_size=192, num_faces=1)
    d = make_shard_set(tmp_path / "s", spec)
    cfg = dict(
        shards=[str(d)],
        batch_size=12,
        k=2,
        buffer_size=48,
        crop_seconds=0.3,
        seed=5,
        num_workers=2,
        decode_workers="processes",
        face_size=192,
    )
    reference, _ = _epoch(cfg)  # 12 faces of 192 px: 5.3 MB of float pixels per batch, more than a 1 MB slot
    with TupleLoader(cfg) as loader:
        loader._workers._out_bytes = (16, 16)  # an estimate far too small, as from a wrong index.json
        lied = list(loader)
        assert loader._workers._slot_floor > 1 << 20
    _assert_same_batches(lied, reference)


def test_every_decode_worker_decodes_and_the_batches_do_not_depend_on_how_many(shard_dir):
    """Item 4 of issue 12: with num_workers=N each of the N worker processes decodes batches
    (more than N are in flight), and the batches are bit-identical to one worker's (the reader
    streams are fixed by data.read_streams, so only the decoding is spread)."""
    one, report_one = _epoch(_cfg(shard_dir, decode_workers="processes", num_workers=1, read_streams=2))
    three, report_three = _epoch(_cfg(shard_dir, decode_workers="processes", num_workers=3, read_streams=2))
    assert len(one) == len(three) >= 6
    counts = report_three["decode_worker_batches"]
    assert len(counts) == 3 and min(counts) >= 1 and sum(counts) == len(three)  # 3 distinct pids
    assert report_one["decode_worker_batches"] == [len(one)]
    for x, y in zip(one, three):
        assert x.keys() == y.keys()
        for name in x:
            if isinstance(x[name], torch.Tensor):
                assert torch.equal(x[name], y[name]), name
            else:
                assert x[name] == y[name], name
