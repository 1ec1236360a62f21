"""Process hygiene and storage faults of training: one owner per run folder (stale locks taken over),
ranks that stop when their launcher dies, disk-full / read-only checkpoint writes as one line with
nothing lost, and a damaged latest checkpoint skipped for the previous intact one."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from accelerate_cpu import launch_command, launch_env
from train_fakes import fake_config, run_fake

from launch import checkpoint as ckpt
from launch.runguard import RunLock, RunLockError
from launch.storage import describe

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _holder(run_dir: Path) -> subprocess.Popen:
    """Another process that owns `run_dir` until killed (prints 'held' once it does)."""
    code = (
        f"from launch.runguard import RunLock; import time; RunLock({str(run_dir)!r}).acquire(); "
        f"print('held', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_run_folder_is_refused_naming_its_holder_and_a_dead_one_is_taken_over(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunLockError, match=rf"in use by another run \(pid {proc.pid} on "):
            RunLock(tmp_path / "run").acquire()
        with pytest.raises(RunLockError):  # the trainer refuses before touching the folder
            run_fake(fake_config(tmp_path))
        assert not (tmp_path / "run" / "checkpoints").exists()
    finally:
        proc.kill()
        proc.wait()
    lock = RunLock(tmp_path / "run").acquire()  # kill -9 left the file: stale, taken over
    assert lock.stale_holder["pid"] == proc.pid
    lock.release()
    again = RunLock(tmp_path / "run").acquire()  # a clean release leaves no stale holder
    assert again.stale_holder is None
    again.release()


def test_runs_in_one_process_one_after_the_other_keep_working(tmp_path):
    run_fake(fake_config(tmp_path, max_steps=2))
    summary = run_fake(fake_config(tmp_path, resume="auto"))
    assert summary["steps"] > 2 and (tmp_path / "run" / "run.lock").read_text() == ""


def test_a_rank_gets_sigterm_when_its_launcher_is_killed(tmp_path):
    marker = tmp_path / "got-sigterm"
    rank = textwrap.dedent(f"""
        import os, signal, time
        from launch.runguard import stop_with_launcher
        signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, "w").close(), os._exit(0)))
        assert stop_with_launcher()
        print("armed", flush=True)
        time.sleep(60)
        """)
    launcher = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {rank!r}], env={{**__import__("os").environ,
                                 "LOCAL_RANK": "0"}}, stdout=sys.stdout)
        print(child.pid, flush=True)
        time.sleep(60)
        """)
    parent = subprocess.Popen([sys.executable, "-c", launcher], env=ENV, stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "armed"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the rank kept running after its launcher died"
    time.sleep(0.2)
    assert not Path(f"/proc/{child_pid}").exists() or "zombie" in Path(f"/proc/{child_pid}/status").read_text().lower()


def test_a_plain_single_process_run_is_not_tied_to_its_shell(monkeypatch):
    from launch.runguard import stop_with_launcher

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert stop_with_launcher() is False


def _writer(root: Path) -> ckpt.CheckpointWriter:
    return ckpt.CheckpointWriter(root, 0, 1, lambda: None, keep_last=3)


def _save(writer, name):
    return writer.save(
        name,
        model={"w": torch.ones(3)},
        trainer={"step": 1, "world_size": 1},
        rank_state={"rng": torch.zeros(2)},
        meta={"step": 1},
    )


@pytest.mark.parametrize(
    "fault, free, expected",
    [
        (
            RuntimeError(
                "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                "data/0: file write failed / iostream error"
            ),
            0,
            "disk full",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), 10 << 30, "disk full"),
        (OSError(errno.EROFS, "Read-only file system"), 10 << 30, "read-only file system"),
    ],
)
def test_a_storage_fault_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, fault, free, expected
):
    writer = _writer(tmp_path / "checkpoints")
    first = _save(writer, "step-000000001")
    real_save, real_statvfs = torch.save, os.statvfs

    def failing_save(obj, path, *a, **k):
        raise fault

    class Stats:
        def __init__(self, path):
            real = real_statvfs(path)
            self.f_flag, self.f_frsize, self.f_bavail = real.f_flag, 1, free

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(os, "statvfs", Stats)
    with pytest.raises(ckpt.CheckpointError) as err:
        _save(writer, "step-000000002")
    message = str(err.value)
    assert "\n" not in message and expected in message and "step-000000002" in message
    monkeypatch.setattr(torch, "save", real_save)
    assert ckpt.read_latest(tmp_path / "checkpoints") == first and not ckpt.unreadable_files(first)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_describe_names_path_and_cause_and_the_way_out():
    line = describe(OSError(errno.ENOSPC, "No space left on device"), "/runs/x/train_log.jsonl", "write")
    assert line == (
        "cannot write /runs/x/train_log.jsonl: disk full; free space or move train.output_dir, "
        "then resume with train.resume=auto"
    )


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_intact_one(tmp_path):
    writer = _writer(tmp_path / "checkpoints")
    first = _save(writer, "step-000000001")
    second = _save(writer, "step-000000002")
    path = second / "model.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    warnings = []
    assert ckpt.resolve_resume("auto", tmp_path / "checkpoints", warn=warnings.append) == first
    assert len(warnings) == 1 and "step-000000002 is damaged (model.pt" in warnings[0]
    (first / "trainer.pt").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="no intact checkpoint"):
        ckpt.resolve_resume("auto", tmp_path / "checkpoints", warn=warnings.append)
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint file"):  # named explicitly
        ckpt.load_trainer_state(second, 0, 1)


@pytest.mark.slow
def test_killing_accelerate_launch_stops_both_ranks_with_a_checkpoint(tmp_path):
    import psutil
    import yaml

    from launch.config import MODULE_GROUPS

    cfg = {
        "data": {"k": 2, "batch_size": 8, "batches_per_epoch": 5, "identities": 20, "direction": "v2f"},
        "model": {"name": "fake"},
        "optim": {"lr": {g: 1e-2 for g in MODULE_GROUPS}},
        "train": {
            "epochs": 100000,
            "output_dir": str(tmp_path / "run"),
            "log_every": 1,
            "progress": False,
            "log_with": [],
            "cpu": True,
            "val_data": None,
            "checkpoint_every": 0,
        },
    }
    (tmp_path / "fake.yaml").write_text(yaml.safe_dump(cfg))
    cmd = launch_command(str(ROOT / "tests" / "train_fakes.py"), "--config", str(tmp_path / "fake.yaml"))
    env = launch_env()
    output = (tmp_path / "output.txt").open("w")  # the launcher's and the ranks' output, shown on failure
    launcher = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    log = tmp_path / "run" / "train_log.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 3):
        time.sleep(0.5)
    assert log.exists(), "the run did not start"
    ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "train_fakes" in " ".join(p.cmdline())]
    assert len(ranks) == 2
    launcher.kill()
    launcher.wait()
    gone, alive = psutil.wait_procs(ranks, timeout=90)
    output.close()
    said = (tmp_path / "output.txt").read_text()[-3000:]
    assert not alive, f"ranks outlived their launcher: {[p.pid for p in alive]}\n{said}"
    rows = log.read_text()
    assert '"event": "preempted"' in rows, f"no preempted row; the ranks said:\n{said}"
    latest = ckpt.read_latest(tmp_path / "run" / "checkpoints")
    assert latest is not None and not ckpt.unreadable_files(latest)
    RunLock(tmp_path / "run").acquire().release()  # the folder is free again
