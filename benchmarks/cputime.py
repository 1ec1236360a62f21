"""CPU seconds of this process and every process it started, live or finished.

Why not `os.times()` / `RUSAGE_CHILDREN` alone: those count only children this process has
reaped. Worker processes started through a `forkserver` (the loader's decode workers, the
synthetic corpus writers) are children of the fork server, and while a pool is alive its
workers are not reaped at all. Reading `/proc` for the live descendants covers both; a finished
fork-server child shows up in the fork server's `cutime`.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

__all__ = ["tree_cpu_seconds", "live_children"]


def live_children(pid: int | str = "self") -> list[int]:
    pids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def _proc_cpu(pid: int, tick: float) -> float:
    """utime + stime of a live process plus cutime + cstime of its reaped children, and the same
    for its live descendants."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = sum(int(f) for f in fields[11:15]) / tick
    except (OSError, IndexError, ValueError):
        return 0.0
    return own + sum(_proc_cpu(c, tick) for c in live_children(pid))


def tree_cpu_seconds() -> float:
    """This process + reaped children (`RUSAGE_CHILDREN`) + live descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime + sum(_proc_cpu(pid, tick) for pid in live_children())
