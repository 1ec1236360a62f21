"""Elastic resume across real processes (issue 12 item 5): loader states saved by a 2-process gloo
run (`accelerate launch`) resume in 1 process, and a 1-process state resumes in 2 processes that
then step in lockstep (a collective per step: unequal counts would hang). No sample used before
the switch is used again after it.

This file is also the script `accelerate launch` runs (see `_phase`).
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate_cpu import launch_command, launch_env

from shards.testing import SyntheticSpec, make_shard_set

STOP = 2


def _cfg(shard_dir: str) -> dict:
    return dict(
        shards=[shard_dir],
        batch_size=3,
        k=2,
        buffer_size=12,
        crop_seconds=0.3,
        num_workers=1,
        seed=7,
        decode_workers="threads",
    )


def _used(batch) -> list[str]:
    return list(batch["anchor_key"]) + [row[lab] for row, lab in zip(batch["candidate_key"], batch["label"].tolist())]


def _phase(shard_dir: str, work: str, name: str, src: str, stop: int) -> None:
    """Resume from every state in `work/src` (if `src` is not "-"), run `stop` batches of epoch 0
    (0: to the end of the epoch) and save this rank's state as `work/name/state_rank{r}.json`."""
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator

    from shards.loader import TupleLoader

    acc = Accelerator(cpu=True)
    rank, world = acc.process_index, acc.num_processes
    loader = TupleLoader(_cfg(shard_dir), rank=rank, world_size=world, device=acc.device)
    work = Path(work)
    if src != "-":
        loader.load_state_dict([json.loads(p.read_text()) for p in sorted((work / src).glob("state_rank*.json"))])
    loader.set_epoch(0)
    used, n = [], 0
    for batch in loader:
        if world > 1:
            dist.all_reduce(torch.ones(1))  # like DDP's gradient all-reduce: unequal counts would hang
        used.append([_used(batch), loader.report()["wrapped_reads"]])
        n += 1
        if n == stop:
            break
    out = work / name
    out.mkdir(exist_ok=True)
    (out / f"state_rank{rank}.json").write_text(json.dumps(loader.state_dict()))
    (out / f"run_rank{rank}.json").write_text(json.dumps({"batches": n, "used": used, "steps": loader.steps_per_epoch}))
    acc.wait_for_everyone()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(processes: int, shard_dir: Path, work: Path, name: str, src: str, stop: int) -> list[dict]:
    env = launch_env()
    cmd = launch_command(
        __file__, str(shard_dir), str(work), name, src, str(stop), processes=processes, port=_free_port()
    )
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{processes}-process run hung (timeout): {exc.stdout} {exc.stderr}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((work / name / f"run_rank{r}.json").read_text()) for r in range(processes)]


@pytest.mark.slow
def test_loader_states_of_gloo_runs_resume_2_to_1_to_2_processes(tmp_path):
    """2 processes run STOP batches; 1 process resumes from both states and runs STOP more; 2
    processes resume from that state and finish the epoch in lockstep."""
    spec = SyntheticSpec(num_identities=8, videos_per_identity=3, clips_per_video=2, shard_sizes=[20, 3, 9, 12, 4])
    shard_dir = make_shard_set(tmp_path / "s", spec)
    work = tmp_path / "w"
    work.mkdir()
    first = _launch(2, shard_dir, work, "a", "-", STOP)
    middle = _launch(1, shard_dir, work, "b", "a", STOP)
    last = _launch(2, shard_dir, work, "c", "b", 0)
    assert all(r["batches"] == STOP for r in first + middle)
    # steps continue at floor(step x W / W'): 2 -> 4 on one process, 2 + 4 -> 3 on two
    one_step, two_steps = middle[0]["steps"], first[0]["steps"]
    assert one_step >= 2 * STOP + 1 and all(r["batches"] == two_steps - (2 * STOP + STOP) // 2 for r in last)
    for runs, before in ((middle, first), (last, first + middle)):
        used = {k for r in before for keys, _ in r["used"] for k in keys}
        for r in runs:  # nothing replayed: a sample used before a switch comes back only as a
            for keys, wrapped in r["used"]:  # counted re-read at the end of the epoch
                assert wrapped > 0 or not used & set(keys)


if __name__ == "__main__":
    _phase(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
