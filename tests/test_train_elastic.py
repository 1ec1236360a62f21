"""Elastic resume of training (issue 12 item 5): a checkpoint written by W processes continues on
W' != W (launch/trainer/elastic.py). Fast unit checks of the counter and LR mappings, and one slow
chain through real processes with the real TupleLoader: 1 process -> 2 gloo processes (accelerate
launch of launch/train.py) -> 1 process, to the planned end."""

import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from accelerate_cpu import ACCELERATE, ROOT, launch_command, launch_env

from launch import checkpoint as ckpt
from launch.config import MODULE_GROUPS, check_owned_sections, validate
from launch.logging_utils import read_log
from launch.optim import MilestoneDecay, build_schedulers, move_schedulers
from launch.train import train
from launch.trainer.elastic import lr_step_at, map_batches_done
from launch.trainer.state import Schedule
from shards.loader import TupleLoader
from shards.testing import SyntheticSpec, make_shard_set

# ----------------------------------------------------------------------------- unit


def test_batches_done_maps_whole_epochs_to_whole_epochs_and_the_rest_like_the_loader():
    # 2 -> 1: 10 per rank per epoch becomes 20; mid-epoch 3 batches of 2 ranks = 6 of one rank
    assert map_batches_done(13, 10, 2, 20, 1) == 20 + 6
    # 1 -> 2: 7 batches of one rank = 3.5 of two: floor, so half a batch per rank is skipped
    assert map_batches_done(27, 20, 1, 10, 2) == 10 + 3
    # a checkpoint at an epoch end starts the next epoch afresh on the new world size
    assert map_batches_done(40, 20, 1, 10, 2) == 20 and map_batches_done(20, 10, 2, 20, 1) == 40
    # never past the new epoch's end (the loader clamps the same way)
    assert map_batches_done(9, 10, 3, 13, 2) == 13
    for b in range(0, 61):  # the epoch position moves back by less than one new batch, never forward
        new = map_batches_done(b, 20, 1, 10, 2)
        assert 0 <= b / 20 - new / 10 < 1 / 10


def test_lr_step_counts_whole_epochs_and_the_closed_accumulation_groups():
    sched = Schedule.of(steps_per_epoch=7, grad_accum_steps=3, epochs=4)  # groups 3+3+1: 3 steps
    assert sched.optimizer_steps_per_epoch == 3
    assert [lr_step_at(b, sched) for b in (0, 3, 5, 6, 7, 9, 10, 14)] == [0, 1, 1, 2, 3, 3, 4, 6]


def _rates(optimizer):
    return [g["lr"] for g in optimizer.param_groups]


def test_moved_scheduler_continues_the_lr_curve_over_epochs():
    """A scheduler of a 1-process run (20 steps per epoch) moved to the equivalent position of a
    2-process schedule (10 per epoch) gives, from there on, exactly the rates of a scheduler that
    always ran on the 2-process schedule; unmoved, it would decay at the wrong epoch."""
    cfg = {"milestones": [1, 2.5], "gamma": 0.1}

    def fresh(steps_per_epoch):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        return opt, build_schedulers([opt], cfg, steps_per_epoch)[0]

    old_opt, old = fresh(20)
    for _ in range(27):  # epoch 1.35: past the first milestone
        old_opt.step()
        old.step()
    restored_opt, restored = fresh(10)
    restored_opt.load_state_dict(old_opt.state_dict())
    restored.load_state_dict(old.state_dict())
    position = map_batches_done(27, 20, 1, 10, 2)
    move_schedulers([restored], position, 10)
    ref_opt, ref = fresh(10)
    for _ in range(position):
        ref_opt.step()
        ref.step()
    assert _rates(restored_opt) == _rates(old_opt) == _rates(ref_opt) == [pytest.approx(0.05)]
    for _ in range(20):  # through the 2.5 milestone, at the 2-process step 25
        assert _rates(restored_opt) == _rates(ref_opt)
        restored_opt.step(), restored.step(), ref_opt.step(), ref.step()
    assert _rates(restored_opt) == [pytest.approx(0.005)]
    assert isinstance(restored.lr_lambdas[0], MilestoneDecay) and restored.lr_lambdas[0].steps_per_epoch == 10
    saved = restored.state_dict()  # a later exact resume reads the moved schedule back
    _, again = fresh(10)
    again.load_state_dict(saved)
    assert again.last_epoch == restored.last_epoch and again.lr_lambdas[0].steps_per_epoch == 10


# ----------------------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    spec = SyntheticSpec(num_identities=8, videos_per_identity=3, clips_per_video=2, shard_sizes=[20, 3, 9, 12, 4])
    return make_shard_set(tmp_path_factory.mktemp("elastic") / "s", spec)


def _config(shard_dir: Path, out: Path, **train_overrides) -> dict:
    return {
        "data": {
            "shards": [str(shard_dir)],
            "k": 2,
            "batch_size": 3,
            "buffer_size": 12,
            "crop_seconds": 0.3,
            "num_workers": 1,
            "decode_workers": "threads",
            "direction": "both",
        },
        "model": {
            "name": "baseline",
            "face_backbone": "tiny",
            "voice_backbone": "tiny",
            "embed_dim": 16,
            "generator_hidden": 32,
        },
        "optim": {"lr": {g: 1e-3 for g in MODULE_GROUPS}, "milestones": [1], "gamma": 0.1},
        "train": {
            "epochs": 2,
            "output_dir": str(out),
            "log_every": 1,
            "progress": False,
            "log_with": [],
            "cpu": True,
            "val_data": None,
            "keep_last": 5,
            **train_overrides,
        },
    }


def _checked(cfg: dict, **data) -> dict:
    cfg = validate({**cfg, "data": {**cfg["data"], **data}})
    cfg["model"] = check_owned_sections(cfg)
    return cfg


def _train_here(shard_dir, out, **overrides) -> dict:
    return train(_checked(_config(shard_dir, out, **overrides)))


def _train_on_two(shard_dir, out, tmp_path, *overrides) -> str:
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(_config(shard_dir, out)))
    cmd = launch_command(ROOT / "launch" / "train.py", "--config", str(config), *overrides, processes=2)
    proc = subprocess.run(cmd, env=launch_env(), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _loader_positions(ckpt_dir: Path) -> list[tuple[int, int, bool]]:
    """(epoch, in-epoch step, resumed elastically) of every rank's saved loader state."""
    states = [torch.load(p, weights_only=True)["loader"] for p in sorted(ckpt_dir.glob("rank-*.pt"))]
    return [(s["epoch"], s["step"], s["stats"].get("elastic_resumes", 0) > 0) for s in states]


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate CLI not installed in this environment")
def test_training_resumes_1_to_2_to_1_processes_to_the_planned_end(shard_dir, tmp_path, capsys):
    out = tmp_path / "run"
    spe = {w: TupleLoader(_config(shard_dir, out)["data"], world_size=w).steps_per_epoch for w in (1, 2)}
    assert spe == {1: 8, 2: 4}  # 48 samples, 6 per batch
    assert TupleLoader(_config(shard_dir, out)["data"]).steps_per_epoch_at(2) == 4  # what W=2 would have

    # 1 process, 4 updates: mid-epoch 0 (batch 4 of 8)
    first = _train_here(shard_dir, out, max_steps=4)
    assert first["steps"] == 4 and _loader_positions(ckpt.read_latest(out / "checkpoints")) == [(0, 4, False)]

    # 2 processes: 4 of one rank's batches = 2 per rank; on through the epoch end to update 8
    stdout = _train_on_two(shard_dir, out, tmp_path, "train.resume=auto", "train.max_steps=8")
    assert "elastic resume: 1 -> 2 processes; batches per process 4 -> 2 of 8 -> 4 per epoch" in stdout
    latest = ckpt.read_latest(out / "checkpoints")
    assert latest.name == "step-000000008"
    trainer = torch.load(latest / "trainer.pt", weights_only=True)
    assert (trainer["world_size"], trainer["batches_done"], trainer["steps_per_epoch"]) == (2, 6, 4)
    # both ranks' loaders stand where the trainer's counter says: epoch 1, batch 2 (6 - 4)
    assert _loader_positions(latest) == [(1, 2, True), (1, 2, True)]
    rng = [torch.load(latest / f"rank-0000{r}.pt", weights_only=True)["rng"]["torch"] for r in (0, 1)]
    assert not torch.equal(*rng)  # rank 1, new at the switch, got its own fresh stream

    # a batch-size change cannot be mapped: refused in one line, nothing written
    with pytest.raises(ckpt.CheckpointError, match=r"data.batch_size 3 -> 4") as err:
        train(_checked(_config(shard_dir, out, resume="auto"), batch_size=4))
    assert "\n" not in str(err.value) and ckpt.read_latest(out / "checkpoints") == latest
    # ... and another loader seed is what the loader itself refuses, in one line too
    with pytest.raises(ckpt.CheckpointError, match=r"the loader cannot continue .*'seed'") as err:
        train(_checked(_config(shard_dir, out, resume="auto"), seed=3))
    assert "\n" not in str(err.value) and ckpt.read_latest(out / "checkpoints") == latest

    # back to 1 process, now with 2 micro-batches per update (the 2-process global batch): 2
    # batches of 2 ranks = 4 of one, in epoch 1: 8 + 4; on to the planned end
    capsys.readouterr()
    final = _train_here(shard_dir, out, resume="auto", grad_accum_steps=2)
    assert (
        "elastic resume: 2 -> 1 processes; batches per process 6 -> 12 of 4 -> 8 per epoch" in capsys.readouterr().out
    )
    assert final["epochs"] == 2.0 and final["steps"] == 8 + (16 - 12) // 2
    assert _loader_positions(ckpt.read_latest(out / "checkpoints")) == [(1, 8, True)]

    rows = read_log(out / "train_log.jsonl", event=None)
    resumes = [r for r in rows if r["event"] == "resume"]
    assert [(r["processes_before"], r["processes"]) for r in resumes] == [(1, 2), (2, 1)]
    assert [(r["batches_done_before"], r["batches_done"]) for r in resumes] == [(4, 2), (6, 12)]
    assert [(r["epoch_before"], r["epoch"]) for r in resumes] == [(0.5, 0.5), (1.5, 1.5)]
    # the lr schedule's step: epoch 0.5 is update 4 of 8 per epoch on 1 process, update 2 of 4 on
    # 2; epoch 1.5 is update 6 on 2 processes and on 1 process with 2 micro-batches per update
    assert [(r["lr_step_before"], r["lr_step"]) for r in resumes] == [(4, 2), (6, 6)]
    train_rows = [r for r in rows if r["event"] == "train"]
    # one row per update, steps counting updates across both switches (names and logs increase)
    assert [r["step"] for r in train_rows] == list(range(1, final["steps"] + 1))
    # the lr over epochs: 1e-3 before the milestone at epoch 1, 1e-4 from it on, on every world size
    for r in train_rows:
        assert r["lr/face_encoder"] == pytest.approx(1e-3 * (0.1 if r["epoch"] >= 1 else 1.0)), r
    assert [r["epoch"] for r in train_rows] == [0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
