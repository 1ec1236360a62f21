"""One shard task: extract a fixed, planned list of clips and publish their shard. Runs wherever the
executor puts it (a local worker process, a Dask worker, a job-array task).

Why the worker that extracts also writes: the shard is a pure function of (clips, settings), so
the task can publish it itself - tar and DALI index by rename (`shards.format.ShardWriter`), then
the done-marker `.ingest/<shard>.json` (manifest rows, skips, byte size, plan fingerprint) by
rename. No single writing process caps throughput, and a task that runs twice (a retry, a second
part) either finds the done-marker and returns, or writes the same bytes again.

Why a journal: a worker killed by a hostile file (decoder segfault) takes the whole task with it.
Before each clip the task records `(run id, solo, clip index)` in `.ingest/<shard>.attempt`. When
the ingest re-runs a task *alone* after a worker death (nothing else in flight that could have
been the cause) and that solo attempt dies too, the next attempt reads the journal, skips exactly
that clip as `worker_crash`, and goes on. Journals of other runs (an ingest killed with kill -9)
are ignored: the parent's death is not the clip's fault.
"""

from __future__ import annotations

import json
import os
import resource
import threading
from dataclasses import dataclass
from pathlib import Path

from shards.format import ShardWriter

from .extract import ClipError, ExtractSettings, extract_clip
from .shardset import SplitDir, write_json_atomic
from .sources import ClipRecord
from .storage import STORAGE_CAUSES

#: Test hook only (tests/test_ingest_distributed.py): a marker-file path; the first shard task that
#: can create it kills its own worker process mid-task, as an OOM kill or node loss would.
_KILL_ONCE_ENV = "VOXFACE_TEST_KILL_WORKER_ONCE"


class StorageError(RuntimeError):
    """Output storage refused a write (disk full, read-only, quota): one line naming the path and
    the cause. Picklable, so it crosses process and cluster boundaries intact."""

    def __init__(self, path, cause: str):
        super().__init__(f"cannot write {path}: {cause}")
        self.path, self.cause = str(path), cause

    def __reduce__(self):
        return StorageError, (self.path, self.cause)


def storage_error(err: OSError, path) -> StorageError | None:
    """The StorageError for an OSError that is a storage fault, else None (a real bug)."""
    cause = STORAGE_CAUSES.get(err.errno)
    if cause is None:
        return None
    return StorageError(err.filename or path, f"{cause} ({os.strerror(err.errno)})")


@dataclass
class ShardTask:
    """Everything a worker needs to make one shard; small and picklable."""

    out: Path
    dataset: str
    split: str
    shard: str
    fingerprint: str
    clips: list[ClipRecord]
    identity_info: dict[str, dict]  # only the identities of these clips
    settings: ExtractSettings
    rel_bases: tuple  # input roots; report paths relative to them
    run_id: str
    solo: bool = False


@dataclass
class ShardResult:
    shard: str
    split: str
    written: bool  # False: it was already done (a retry or an earlier run)
    samples: int = 0
    skipped: int = 0
    ok_clips: int = 0  # clips the extractor returned (written or skipped for an input reason)
    crash_skips: int = 0  # clips skipped because a solo attempt died on them
    pid: int = 0
    peak_rss_mb: float = 0.0


_WORKER_READY = False
#: One shard task at a time per process: PyAV decoding from two threads of one process crashes
#: (measured: segfault within seconds), and engines such as Dask may give a worker several
#: threads. Parallelism comes from processes; extra threads just queue here.
_ONE_TASK_PER_PROCESS = threading.Lock()


def _prepare_worker(backend: str) -> None:
    """Once per process: keep FFmpeg's per-frame complaints about corrupt inputs off the
    progress bar, and load decord only when it is used (~550 MB of RSS)."""
    global _WORKER_READY
    if _WORKER_READY:
        return
    import av

    av.logging.set_level(av.logging.PANIC)
    if backend == "decord":
        import decord

        decord.logging.set_level(decord.logging.QUIET)
    _WORKER_READY = True


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB. VmHWM, not ru_maxrss: Linux carries ru_maxrss across
    fork+exec, so a spawned worker would report its parent's peak instead of its own."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def extract_job(record: ClipRecord, split: str, identity_info: dict, settings: ExtractSettings):
    """The per-clip function: a sample, or a skip dict for an unusable input. Never raises for
    input problems; an unexpected exception becomes an `extract_error` skip naming it."""
    try:
        return extract_clip(record, split, identity_info, settings)
    except ClipError as err:
        return {"path": err.path, "kind": err.kind, "reason": err.reason, "key": record.key}
    except Exception as err:  # noqa: BLE001 - a bug or an unforeseen input problem: report it, do not lose the run
        return {
            "path": record.source,
            "kind": "extract_error",
            "reason": f"{type(err).__name__}: {err}",
            "key": record.key,
        }


def _rel(path: str, bases) -> str:
    for base in bases:
        if base is not None:
            try:
                return Path(path).relative_to(base).as_posix()
            except ValueError:
                pass
    return path


class _Journal:
    """`.ingest/<shard>.attempt`: which clip this attempt is on. Overwritten in place (one
    syscall per clip, no file creation or rename: cheap on network file systems); a torn write
    only makes the next attempt treat the journal as absent, which is safe."""

    def __init__(self, path: Path, run_id: str, solo: bool):
        self.path, self.run_id, self.solo = path, run_id, solo
        self.culprits: list[int] = []
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old and old.get("run") == run_id:
            self.culprits = list(old.get("culprits", []))
            if old.get("solo") and old.get("clip") is not None and old["clip"] not in self.culprits:
                self.culprits.append(old["clip"])
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._size = 0

    def at(self, clip: int) -> None:
        # padded with spaces to the longest record so far: one pwrite, never a stale tail
        data = (
            json.dumps({"run": self.run_id, "solo": self.solo, "clip": clip, "culprits": self.culprits})
            .encode()
            .ljust(self._size)
        )
        os.pwrite(self._fd, data, 0)
        self._size = len(data)

    def close(self, remove: bool) -> None:
        os.close(self._fd)
        if remove:
            self.path.unlink(missing_ok=True)


def _maybe_kill_for_test(split_dir: SplitDir) -> None:
    marker = os.environ.get(_KILL_ONCE_ENV)
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(137)


def run_shard_task(task: ShardTask, job=None) -> ShardResult:
    """Extract the task's clips in plan order and publish the shard + done-marker. Idempotent:
    a finished shard (done-marker matching the fingerprint and the tar's size) is left alone.
    Storage faults raise `StorageError`; nothing half-written is ever visible."""
    with _ONE_TASK_PER_PROCESS:
        return _run_shard_task(task, job or extract_job)


def _run_shard_task(task: ShardTask, job) -> ShardResult:
    split_dir = SplitDir(task.out, task.dataset, task.split)
    if split_dir.shard_done(task.shard, task.fingerprint) is not None:
        return ShardResult(task.shard, task.split, written=False, pid=os.getpid())
    _prepare_worker(task.settings.video_backend)
    tar = split_dir.tar(task.shard)
    current = tar
    try:
        for leftover in (
            tar.with_name(tar.name + ".partial"),
            tar.with_suffix(".idx").with_name(tar.stem + ".idx.partial"),
        ):
            leftover.unlink(missing_ok=True)
        journal = _Journal(split_dir.state / f"{task.shard}.attempt", task.run_id, task.solo)
        records, skips, dropped = [], [], []
        writer = None
        ok = crash = 0
        published = False
        try:
            for i, clip in enumerate(task.clips):
                current = journal.path
                journal.at(i)
                if i in journal.culprits:
                    skips.append(
                        {
                            "path": _rel(clip.source, task.rel_bases),
                            "kind": "worker_crash",
                            "reason": "the worker process died while decoding this clip (decoder crash)",
                            "key": clip.key,
                        }
                    )
                    crash += 1
                    continue
                if i == len(task.clips) // 2:
                    _maybe_kill_for_test(split_dir)
                result = job(clip, task.split, task.identity_info.get(clip.identity, {}), task.settings)
                ok += 1
                if isinstance(result, dict):
                    skips.append({**result, "path": _rel(result["path"], task.rel_bases)})
                    continue
                current = tar
                if writer is None:
                    writer = ShardWriter(tar)
                rec = writer.add(result.key, result.members)
                info = task.identity_info.get(clip.identity, {})
                records.append(
                    {
                        "key": rec.key,
                        "identity": clip.identity,
                        "video": clip.video,
                        "clip": clip.clip,
                        "gender": info.get("gender"),
                        "shard": task.shard + ".tar",
                        "offset": rec.offset,
                        "size": rec.size,
                        "members": rec.members,
                        "sha1": rec.sha1,
                        "duration": round(result.duration, 6),
                        "source": clip.source,
                    }
                )
                for d in result.dropped:
                    dropped.append({**d, "path": _rel(d["path"], task.rel_bases), "key": clip.key})
            nbytes = 0
            if writer is not None:
                current = tar
                writer.close()
                writer = None
                nbytes = tar.stat().st_size
            current = split_dir.sidecar(task.shard)
            write_json_atomic(
                current,
                {
                    "shard": task.shard,
                    "fingerprint": task.fingerprint,
                    "bytes": nbytes,
                    "records": records,
                    "skipped": skips,
                    "dropped": dropped,
                },
                indent=None,
            )
            published = True
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            journal.close(remove=published)
    except OSError as err:
        fault = storage_error(err, current)
        if fault is None:
            raise
        raise fault from None
    return ShardResult(task.shard, task.split, True, len(records), len(skips), ok, crash, os.getpid(), peak_rss_mb())
