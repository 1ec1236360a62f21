"""Storage faults in words: disk full, read-only, no permission, each naming the path.

torch's ``torch.save`` reports a full disk as ``iostream error`` or ``unexpected pos`` without an
errno, and a raw ``OSError`` traceback hides which of the run's paths failed. ``describe`` turns
either into one line a user can act on; it asks the file system itself (free space, the read-only
flag) when the exception does not say.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.storage import cause


def describe(exc: BaseException, path: str | Path, doing: str) -> str:
    """One line: what failed, where, and why (the storage cause when there is one, else the error)."""
    why = cause(exc, path)
    if why is None:
        text = str(exc).splitlines()
        why = getattr(exc, "strerror", None) or (text[0] if text else type(exc).__name__)
    hint = {
        "disk full": "; free space or move train.output_dir, then resume with train.resume=auto",
        "disk quota exceeded": "; free space or move train.output_dir, then resume with train.resume=auto",
        "read-only file system": "; point train.output_dir at writable storage",
    }.get(why, "")
    return f"cannot {doing} {path}: {why}{hint}"
