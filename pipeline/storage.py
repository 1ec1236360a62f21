"""Storage faults in words: which cause (disk full, read-only, quota, permissions) stopped a write.

One owner for ingest (`pipeline.shardtask`) and training (`launch.storage`). torch's `torch.save`
reports a full disk as `iostream error` without an errno, so `cause` also asks the file system
itself (free space, the read-only flag) when the exception does not say.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

#: errno -> the storage cause named in one-line errors
STORAGE_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EROFS: "read-only file system",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "I/O error",
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
    if code in STORAGE_CAUSES:
        return STORAGE_CAUSES[code]
    try:
        stats = os.statvfs(_existing(Path(path)))
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if stats.f_bavail * stats.f_frsize < _NEARLY_FULL:
        return "disk full"
    return None
