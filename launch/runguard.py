"""Process hygiene for training runs: one owner per run folder, and ranks that stop with their launcher.

Why a lock: two runs writing one ``train.output_dir`` (say a second ``train.resume=auto`` started
beside a running one) interleave checkpoints and logs, and each resumes from the other's state.
The main process holds an exclusive ``flock`` on ``<output_dir>/run.lock`` for the whole run and
writes its pid, host and start time into it. The kernel drops a flock when its holder dies (even by
``kill -9``), so a lock file whose flock can be taken is stale: it is taken over with a warning that
names the dead holder. A live holder makes the second run stop at once with one line naming it.

Why a parent-death signal: ``accelerate launch`` starts the ranks as its children. If the launcher
is killed with SIGKILL it cannot tell them, and they would train (and checkpoint) to the end with no
one watching. Each rank asks the kernel for SIGTERM when its launcher dies (Linux
``PR_SET_PDEATHSIG``); SIGTERM is the preemption signal the loop already handles, so the ranks
agree on a step, write a checkpoint and exit. The kernel can send it more than once: a rank is
handed to the launcher's next live thread each time one of its threads exits during the kill, and
each hand-over signals again (seen here: 1 child in 5 of a 7-thread parent got two). So the
training loop keeps the signals caught until its last write (``launch.train.run_training``); a
late second SIGTERM used to hit the default handler and kill a rank in the middle of it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from pipeline.executors import die_with_parent

LOCK_FILE = "run.lock"


class RunLockError(RuntimeError):
    """The run folder is in use by another live run; the message names it."""


class RunLock:
    """Exclusive ownership of a run folder for the life of this process (see the module docstring)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        self.stale_holder: dict | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunLockError(
                f"{self.path.parent} is in use by another run (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, started {holder.get('started', '?')}); stop it first or "
                f"choose another train.output_dir"
            ) from None
        previous = _read_holder(fd)
        if previous.get("pid") is not None:
            self.stale_holder = previous
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
            ).encode(),
            0,
        )
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        """Give the folder up: empty the file (so the next run sees no stale holder), drop the flock."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass  # e.g. the disk went read-only; the flock still goes with the descriptor
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {"pid": "unknown"}


def launched_by_a_launcher() -> bool:
    """True for a rank started by ``accelerate launch`` / ``torchrun`` (they set these variables)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def stop_with_launcher(sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when the parent (the launcher) dies; True when armed.

    Only for ranks of a launcher: a plain ``python launch/train.py`` keeps running when the shell
    that started it exits (nohup, tmux). Linux only; elsewhere a no-op returning False."""
    if not launched_by_a_launcher() or not sys.platform.startswith("linux"):
        return False
    return die_with_parent(os.getppid(), sig)
