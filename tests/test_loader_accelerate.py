"""A real 2-process gloo run through `accelerate launch`: equal batch counts (no hang), disjoint
samples per rank, and the guard that catches a loader built without rank/world_size.

This file is also the worker script that `accelerate launch` runs (see `_worker`).
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate_cpu import launch_command, launch_env

from shards.testing import SyntheticSpec, make_shard_set


def _worker(shard_dir: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator

    from shards.batch import check_tuple_batch
    from shards.loader import TupleLoader

    acc = Accelerator(cpu=True)
    cfg = dict(shards=[shard_dir], batch_size=3, k=2, buffer_size=12, crop_seconds=0.3, num_workers=2, seed=7)
    loader = TupleLoader(cfg, rank=acc.process_index, world_size=acc.num_processes, device=acc.device)
    counts, keys = [], []
    for epoch in range(2):
        loader.set_epoch(epoch)
        n = 0
        for batch in loader:
            check_tuple_batch(batch, k=2)
            # a collective per step, like DDP's gradient all-reduce: unequal counts would hang here
            t = torch.ones(1)
            dist.all_reduce(t)
            n += 1
            keys.append((epoch, sorted(set(batch["anchor_key"]) | {k for r in batch["candidate_key"] for k in r})))
        counts.append(n)
    wrong = TupleLoader(cfg)  # forgot rank/world_size
    try:
        next(iter(wrong))
        guard = None
    except RuntimeError as exc:
        guard = str(exc)
    gathered = [None] * acc.num_processes
    dist.all_gather_object(
        gathered,
        {"counts": counts, "steps": loader.steps_per_epoch, "keys": keys, "guard": guard, "rank": acc.process_index},
    )
    if acc.is_main_process:
        Path(out).write_text(json.dumps(gathered))
    acc.wait_for_everyone()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run_has_equal_steps_and_disjoint_ranks(tmp_path):
    # 5 uneven shards: a static split would give ranks different batch counts
    spec = SyntheticSpec(num_identities=8, videos_per_identity=3, clips_per_video=2, shard_sizes=[20, 3, 9, 12, 4])
    shard_dir = make_shard_set(tmp_path / "s", spec)
    out = tmp_path / "result.json"
    env = launch_env()
    cmd = launch_command(__file__, str(shard_dir), str(out), port=_free_port())
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"2-process run hung (timeout): {exc.stdout} {exc.stderr}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = json.loads(out.read_text())
    assert [r["rank"] for r in ranks] == [0, 1]
    steps = ranks[0]["steps"]
    assert steps == 48 // (2 * 6)
    assert all(r["counts"] == [steps, steps] for r in ranks)
    for epoch in (0, 1):
        a = {k for e, ks in ranks[0]["keys"] if e == epoch for k in ks}
        b = {k for e, ks in ranks[1]["keys"] if e == epoch for k in ks}
        assert a and b and not a & b
    for r in ranks:
        assert "rank=accelerator.process_index" in r["guard"]


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
