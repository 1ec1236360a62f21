"""Elastic resume across real processes (issue 12 item 5): loader states saved by a 2-process gloo
run (`accelerate launch`) resume in 1 process, and a 1-process state resumes in 2 processes that
then step in lockstep (a collective per step: unequal counts would hang). No sample used before
the switch is used again after it.

This file is also the script `accelerate launch` runs (see `_phase`).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shards.testing import SyntheticSpec, make_shard_set

STOP = 2


def _cfg(shard_dir: str) -> dict:
    return dict(shards=[shard_dir], batch_size=3, k=2, buffer_size=12, crop_seconds=0.3, num_workers=1, seed=7,
                decode_workers="threads")


def _used(batch) -> list[str]:
    return list(batch["anchor_key"]) + [row[lab] for row, lab in zip(batch["candidate_key"], batch["label"].tolist())]


def _phase(shard_dir: str, work: str, mode: str) -> None:
    """`save`: run STOP batches of epoch 0 and save this rank's state; `finish`: resume from every
    saved state and run the rest of epoch 0."""
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator

    from shards.loader import TupleLoader

    acc = Accelerator(cpu=True)
    rank, world = acc.process_index, acc.num_processes
    loader = TupleLoader(_cfg(shard_dir), rank=rank, world_size=world, device=acc.device)
    work = Path(work)
    if mode == "finish":
        loader.load_state_dict([json.loads(p.read_text()) for p in sorted(work.glob("state_rank*.json"))])
    loader.set_epoch(0)
    used, n = [], 0
    for batch in loader:
        if world > 1:
            dist.all_reduce(torch.ones(1))  # like DDP's gradient all-reduce
        used.append([_used(batch), loader.report()["wrapped_reads"]])
        n += 1
        if mode == "save" and n == STOP:
            break
    if mode == "save":
        (work / f"state_rank{rank}.json").write_text(json.dumps(loader.state_dict()))
    (work / f"{mode}_rank{rank}.json").write_text(json.dumps({"batches": n, "used": used,
                                                              "steps": loader.steps_per_epoch}))
    acc.wait_for_everyone()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(processes: int, shard_dir: Path, work: Path, mode: str) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    multi = ["--multi_gpu"] if processes > 1 else []
    cmd = [str(accelerate), "launch", *multi, "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           __file__, str(shard_dir), str(work), mode]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{processes}-process run hung (timeout): {exc.stdout} {exc.stderr}")
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("world,new_world", [(2, 1), (1, 2)])
def test_loader_state_of_a_gloo_run_resumes_on_another_world_size(tmp_path, world, new_world):
    spec = SyntheticSpec(num_identities=8, videos_per_identity=3, clips_per_video=2, shard_sizes=[20, 3, 9, 12, 4])
    shard_dir = make_shard_set(tmp_path / "s", spec)
    work = tmp_path / "w"
    work.mkdir()
    _launch(world, shard_dir, work, "save")
    _launch(new_world, shard_dir, work, "finish")
    saved = [json.loads((work / f"save_rank{r}.json").read_text()) for r in range(world)]
    done = [json.loads((work / f"finish_rank{r}.json").read_text()) for r in range(new_world)]
    assert all(s["batches"] == STOP for s in saved)
    steps = done[0]["steps"]
    # every new rank finishes the epoch at the same step: floor(STOP x W / W')
    assert all(d["batches"] == steps - STOP * world // new_world for d in done)
    before = {k for s in saved for keys, _ in s["used"] for k in keys}
    assert before and all(d["used"] for d in done)
    for d in done:  # nothing replayed: a sample used before the switch comes back only as a
        for keys, wrapped in d["used"]:  # counted re-read at the end of the epoch
            assert wrapped > 0 or not before & set(keys)


if __name__ == "__main__":
    _phase(sys.argv[1], sys.argv[2], sys.argv[3])
