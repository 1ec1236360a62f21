"""Storage faults in words: disk full, read-only, no permission, each naming the path.

torch's ``torch.save`` reports a full disk as ``iostream error`` or ``unexpected pos`` without an
errno, and a raw ``OSError`` traceback hides which of the run's paths failed. ``describe`` turns
either into one line a user can act on; it asks the file system itself (free space, the read-only
flag) when the exception does not say.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
#: Below this much free space a failed write is put down to a full disk.
_NEARLY_FULL = 64 << 20


def _existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def cause(exc: BaseException, path: str | Path) -> str | None:
    """The storage cause of ``exc`` at ``path`` ("disk full", "read-only file system", ...), or None."""
    code = getattr(exc, "errno", None)
    if code in _CAUSES:
        return _CAUSES[code]
    try:
        stats = os.statvfs(_existing(Path(path)))
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if stats.f_bavail * stats.f_frsize < _NEARLY_FULL:
        return "disk full"
    return None


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
