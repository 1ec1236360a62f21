"""`python -m pipeline.ingest`: VoxCeleb1 / VoxCeleb2 media -> identity-mixed WebDataset shards.

Flow: parse meta -> split preset -> scan the layout -> deterministic shard plan per split ->
leak check against splits already under `<out>/<dataset>/` -> one shard task per planned shard
(`pipeline.shardtask`), run by an executor (`pipeline.executors`: local processes, Dask, or any
`concurrent.futures` executor), each extracting its clips and publishing its own shard ->
merge: per split `manifest.jsonl`, `report.json`, `eval.zarr` (val/test) and finally
`index.json`. See docs/INGEST.md.

Why shard tasks: a shard is a pure function of its planned clips and the settings, so whoever
extracts them can write it; no single writing process caps throughput, the same task can run on
a laptop, a Dask cluster or a job-array part (`--num-parts N --part i`) and give the same bytes,
and a re-run resumes by skipping the shards whose done-marker is present. A worker that dies (a
decoder crash on a hostile file) costs a re-run of its task; a task that dies when running alone
has its culprit clip skipped and reported (`worker_crash`), and the run goes on.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
import time
import uuid
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from shards.splitinfo import empty_split_message

from .bundled import default_meta
from .executors import (
    ForeignExecutor,
    WorkersCannotStart,
    is_worker_death,
    make_executor,
)
from .extract import AUDIO_ENCODERS, JPEG_QUALITY, MIN_FACE_SIZE, SAMPLE_RATE, ExtractSettings
from .meta import Meta, MetaError, read_meta, warning_lines
from .parts import (
    PartError,
    PartsIncomplete,
    check_parts_complete,
    part_of,
    write_part_marker,
)
from .plan import INGEST_FORMAT_VERSION, SplitPlan, make_split_plan
from .shardset import (
    EVAL_STORE,
    INDEX,
    MANIFEST,
    PLAN,
    REPORT,
    SplitDir,
    build_eval_store,
    existing_split_identities,
    read_json,
    write_json_atomic,
)
from .shardtask import (
    ShardTask,
    StorageError,
    extract_job,
    peak_rss_mb,
    run_shard_task,
    storage_error,
)
from .sources import ClipRecord, ScanResult, Skip, scan_voxceleb1, scan_voxceleb2
from .splits import (
    DEFAULT_PRESET,
    PRESETS,
    SPLITS,
    SplitError,
    assign_splits,
    check_disjoint,
    find_leaks,
)

EVAL_SPLITS = ("val", "test")
#: Consecutive clips that each kill a worker before the run is stopped as a systemic failure.
_MAX_CRASHES_IN_A_ROW = 5
_SKIP_LIST_LIMIT = 10000


class IngestError(RuntimeError):
    """A condition the user must resolve (leak, changed settings, bad arguments); never a bug."""


@dataclass
class IngestConfig:
    dataset: str
    root: Path
    meta: Path
    out: Path
    split_preset: str | None = None
    splits: list[str] | None = None
    workers: int = 2
    shard_samples: int = 1000
    limit: int | None = None
    eval_store: bool = True
    overwrite: bool = False
    faces: Path | None = None
    vox2_audio: str = "auto"
    split_file: Path | None = None
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    progress: bool = True
    executor: str = "local"  # local | dask (see pipeline.executors)
    scheduler: str | None = None  # dask scheduler address; None: a LocalCluster on 127.0.0.1
    num_parts: int = 1  # job arrays: this run writes only the shards of `part` (0-based)
    part: int = 0
    merge_only: bool = False  # write nothing but the merge (index, manifest, reports, eval.zarr)

    def output_settings(self, preset: str) -> dict:
        """Everything that changes which samples are written or their bytes (not --workers,
        --executor or the parts: shards are the same bytes whoever writes them)."""
        return {
            **self.extract.as_dict(),
            "shard_samples": self.shard_samples,
            "limit": self.limit,
            "split_preset": preset,
            "vox2_audio": self.vox2_audio,
            "ingest_format_version": INGEST_FORMAT_VERSION,
        }


# ---------------------------------------------------------------- worker side

#: The per-clip function shard tasks call by default (kept under its old name for callers that
#: wrap it, e.g. the crash tests' jobs).
_extract_job = extract_job


# ---------------------------------------------------------------- main side


@dataclass
class _SplitRun:
    plan: SplitPlan
    dir: SplitDir
    identity_info: dict[str, dict]
    scan_skips: list[dict]
    pending: list = field(default_factory=list)  # ShardPlan
    written_now: int = 0
    seconds: float = 0.0


def _identity_info(meta: Meta) -> dict[str, dict]:
    return {
        i: {"gender": r.gender, "nationality": r.nationality, "name": r.name, "vggface2_id": r.vggface2_id}
        for i, r in meta.identities.items()
    }


def _scan(cfg: IngestConfig, meta: Meta) -> ScanResult:
    if cfg.dataset == "voxceleb2":
        return scan_voxceleb2(cfg.root, audio=cfg.vox2_audio)
    return scan_voxceleb1(cfg.root, meta, faces=cfg.faces)


def _describe_change(old: dict, new: dict) -> str:
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(diffs) if diffs else "the input files changed (clips added, removed or modified)"


def _open_lock(path: Path):
    """(the lock file opened for writing, None), or (None, StorageError) when the output cannot
    be written (read-only, full, no permission): then a finished ingest can still say that
    there is nothing to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+"), None
    except OSError as err:
        fault = storage_error(err, path)
        if fault is None:
            raise
        return None, fault


@contextmanager
def _dataset_lock(dataset_dir: Path, shared: bool = False):
    """One ingest at a time per `<out>/<dataset>`: two writers of the same shards would interleave
    garbage, and the leak check must see a stable set of splits. The parts of one job array hold
    it shared (they write disjoint shards); a whole run holds it exclusive. flock is released by
    the kernel when the holder dies, even by kill -9, so a stale lock never blocks a resume.
    Yields None, or the StorageError when the output cannot be written at all (read-only)."""
    import fcntl

    fh, fault = _open_lock(dataset_dir / ".ingest.lock")
    if fh is None:
        yield fault
        return
    with fh:
        try:
            fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise IngestError(
                f"{dataset_dir} is being written by another ingest ({holder}); wait "
                "for it to finish or stop it, then re-run"
            ) from None
        if not shared:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}\n")
            fh.flush()
        try:
            yield None
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _merge_lock(dataset_dir: Path):
    """Serialises the completion check + merge of job-array parts: the last part to finish (or
    a merge command) sees every other part's shards and merges exactly once."""
    import fcntl

    with open(dataset_dir / ".ingest.merge.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _wait_any(futures: list) -> list:
    """The futures that are done, waiting for at least one. `concurrent.futures` futures are
    waited on; other future types (submitit jobs) are polled through `done()`."""
    if all(isinstance(f, cf.Future) for f in futures):
        return list(cf.wait(futures, return_when=cf.FIRST_COMPLETED).done)
    while True:
        done = [f for f in futures if f.done()]
        if done:
            return done
        time.sleep(0.2)


def _started(task: ShardTask) -> bool:
    """Whether an attempt of this task in this run got as far as its first clip (journal)."""
    journal = read_json(SplitDir(task.out, task.dataset, task.split).state / f"{task.shard}.attempt")
    return bool(journal) and journal.get("run") == task.run_id


class Ingest:
    """One ingest run (or one part of a job array). `job` is the per-clip function shard tasks
    call (a module-level callable with the signature and return value of `_extract_job`);
    replaceable to wrap extraction, e.g. to test crash recovery. `executor`: see `run_ingest`."""

    def __init__(self, cfg: IngestConfig, log=print, job=None, executor=None):
        self.cfg = cfg
        self.log = log
        self.job = job
        self.executor = executor
        self.run_id = uuid.uuid4().hex
        self.storage_fault = None
        self.worker_rss: dict[int, float] = {}
        self.dataset_skips: list[dict] = []
        self.not_selected: Counter = Counter()
        self.meta_warnings: list[dict] = []
        self.timings: dict[str, float] = {}

    # -- planning
    def plan(self) -> list[_SplitRun]:
        cfg = self.cfg
        t0 = time.time()
        try:
            meta = read_meta(cfg.meta, cfg.dataset)
            preset = cfg.split_preset or DEFAULT_PRESET[cfg.dataset]
            assignment = assign_splits(preset, meta, cfg.split_file)
        except (MetaError, SplitError) as err:
            raise IngestError(str(err)) from None
        self.meta_warnings = [w.as_dict() for w in meta.warnings]
        for line in warning_lines(meta.warnings):
            self.log(line)
        available = assignment.splits()
        splits = cfg.splits or available
        unknown = [s for s in splits if s not in available]
        if unknown:
            raise IngestError(f"preset {preset!r} has no identities in split(s) {unknown}; it provides {available}")
        self.preset = preset
        self.log(
            f"meta: {len(meta)} identities in {cfg.meta}; preset {preset}: "
            + ", ".join(f"{s} {n}" for s, n in assignment.counts().items() if n)
        )
        self.log(f"scanning {cfg.root} ...")
        scan = _scan(cfg, meta)
        self.timings["scan_s"] = round(time.time() - t0, 3)
        self.log(
            f"scan: {len(scan.clips)} clips, {len(scan.skipped)} unusable inputs, "
            f"{scan.ignored_count} files outside the layout ({self.timings['scan_s']:.1f} s)"
        )
        info = _identity_info(meta)
        by_split: dict[str, list[ClipRecord]] = {s: [] for s in splits}
        skips_by_split: dict[str, list[dict]] = {s: [] for s in splits}
        for clip in scan.clips:
            if clip.identity not in meta:
                self.dataset_skips.append(
                    Skip(
                        clip.source,
                        "missing_meta_row",
                        f"identity {clip.identity} has no row in {cfg.meta.name}",
                        clip.key,
                        clip.identity,
                    ).as_dict()
                )
                continue
            split = assignment.split_of.get(clip.identity)
            if split in by_split:
                by_split[split].append(clip)
            else:
                self.not_selected[assignment.excluded.get(clip.identity) or f"split {split}"] += 1
        for skip in scan.skipped:
            if skip.identity is not None and skip.identity not in meta:
                self.dataset_skips.append(
                    {
                        **skip.as_dict(),
                        "kind": "missing_meta_row",
                        "reason": f"identity {skip.identity} has no row in {cfg.meta.name} ({skip.reason})",
                    }
                )
                continue
            split = assignment.split_of.get(skip.identity) if skip.identity else None
            if split in skips_by_split:
                skips_by_split[split].append(skip.as_dict())
            elif skip.identity is None:
                self.dataset_skips.append(skip.as_dict())
        self.scan = scan
        settings = cfg.output_settings(preset)
        runs = []
        for split in splits:
            plan = make_split_plan(
                cfg.dataset, split, by_split[split], info, settings, cfg.extract.seed, cfg.shard_samples, cfg.limit
            )
            if plan.num_clips == 0:
                self.log(f"warning: no usable clips found for split {split} under {cfg.root}")
            runs.append(_SplitRun(plan, SplitDir(cfg.out, cfg.dataset, split), info, skips_by_split[split]))
        check_disjoint({r.plan.split: r.plan.identities for r in runs})
        self._check_leaks(runs)
        return runs

    def _check_leaks(self, runs: list[_SplitRun]) -> None:
        dataset_dir = self.cfg.out / self.cfg.dataset
        existing = existing_split_identities(dataset_dir)
        leaks = find_leaks({r.plan.split: r.plan.identities for r in runs}, existing)
        if leaks:
            shown = ", ".join(f"{i} ({new} here, already in {old})" for i, new, old in leaks[:10])
            raise IngestError(
                f"refusing to write: {len(leaks)} identities would be in two splits of "
                f"{dataset_dir}: {shown}{' ...' if len(leaks) > 10 else ''}. The existing splits "
                "were written with another split preset or split file. Use the same "
                "--split-preset as before, or write to a new --out, or delete the conflicting split "
                "folder(s) first."
            )

    # -- state
    def _wants_eval_store(self, split: str, num_samples: int) -> bool:
        """An eval.zarr is written for val/test splits with at least one written sample."""
        return bool(self.cfg.eval_store and split in EVAL_SPLITS and num_samples)

    def _classify(self, run: _SplitRun) -> str:
        """`done` (index.json current), `resume`/`new` (work to do); refuses changed settings."""
        index, plan_state = run.dir.index(), run.dir.plan()
        previous = index or plan_state
        if previous and previous.get("fingerprint") != run.plan.fingerprint:
            if not self.cfg.overwrite:
                before = previous.get("settings") or previous.get("ingest") or {}
                raise IngestError(
                    f"{run.dir.path} was written with different settings or inputs "
                    f"({_describe_change(before, run.plan.settings)}). Re-run with --overwrite to "
                    "rebuild this split from scratch, use the original arguments to resume it, or "
                    "choose another --out."
                )
            self.log(f"{run.dir.path}: settings or inputs changed; --overwrite: rebuilding")
            run.dir.wipe()
            index = plan_state = None
        if index:
            damaged = [
                s["path"]
                for s in index.get("shards", [])
                if not (run.dir.path / s["path"]).exists() or (run.dir.path / s["path"]).stat().st_size != s["bytes"]
            ]
            if damaged:
                self.log(
                    f"{run.dir.path}: {len(damaged)} shard(s) missing or changed since the "
                    f"ingest ({', '.join(damaged[:3])}); rewriting them"
                )
                (run.dir.path / INDEX).unlink()
                return "resume"
            if self._wants_eval_store(run.plan.split, index["num_samples"]) and not (
                index.get("eval_store") and (run.dir.path / EVAL_STORE).exists()
            ):
                return "finalize"
            return "done"
        return "resume" if plan_state else "new"

    # -- execution
    def run(self) -> dict:
        if not 0 <= self.cfg.part < self.cfg.num_parts:
            raise IngestError(f"part must be in 0..{self.cfg.num_parts - 1}, got {self.cfg.part}")
        dataset_dir = self.cfg.out / self.cfg.dataset
        shared = self.cfg.num_parts > 1 or self.cfg.merge_only
        try:
            with _dataset_lock(dataset_dir, shared=shared) as fault:
                self.storage_fault = fault
                return self._run()
        except OSError as err:
            fault = storage_error(err, dataset_dir)
            if fault is None:
                raise
            raise fault from None

    def _owners(self, runs: list[_SplitRun]) -> dict[str, dict[str, int]]:
        """split -> shard -> part: ordinals over the splits in canonical order (whatever
        `--splits` order or which splits are already done), so every part agrees."""
        owners, ordinal = {}, 0
        for run in sorted(runs, key=lambda r: SPLITS.index(r.plan.split)):
            owners[run.plan.split] = {}
            for shard in run.plan.shards:
                owners[run.plan.split][shard.name] = part_of(ordinal, self.cfg.num_parts)
                ordinal += 1
        return owners

    def _run(self) -> dict:
        cfg = self.cfg
        t_start = time.time()
        runs = self.plan()
        states = {}
        for run in runs:
            states[run.plan.split] = self._classify(run)
        if all(s == "done" for s in states.values()):
            self.log(
                "nothing to do: "
                + ", ".join(f"{r.dir.path} is up to date ({r.dir.index()['num_samples']} samples)" for r in runs)
            )
            for r in runs:
                if not r.dir.index()["num_samples"]:
                    self.log(f"warning: {empty_split_message(r.dir.path, 'leave this split out (--splits)')}")
            return {"status": "up_to_date", "splits": {r.plan.split: r.dir.index() for r in runs}}
        if self.storage_fault is not None:
            todo = [r.plan.split for r in runs if states[r.plan.split] != "done"]
            raise StorageError(
                cfg.out / cfg.dataset, f"{self.storage_fault.cause}, and split(s) {', '.join(todo)} still need writing"
            )
        owners = self._owners(runs)
        todo = [r for r in runs if states[r.plan.split] != "done"]
        tasks = []
        for run in todo:
            run.dir.prepare()
            if not cfg.merge_only:
                self._write_plan_state(run)
            run.pending = [
                s
                for s in run.plan.shards
                if (cfg.num_parts == 1 or owners[run.plan.split][s.name] == cfg.part)
                and run.dir.shard_done(s.name, run.plan.fingerprint) is None
            ]
            mine = sum(1 for s in run.plan.shards if cfg.num_parts == 1 or owners[run.plan.split][s.name] == cfg.part)
            done = mine - len(run.pending)
            if done and not cfg.merge_only:
                self.log(f"{run.dir.path}: resuming, {done} of {mine} shards already done")
            if not cfg.merge_only:
                tasks += [self._task(run, shard) for shard in run.pending]
        t0 = time.time()
        if tasks:
            self._execute(tasks, {r.plan.split: r for r in todo})
        self.timings["extract_s"] = round(time.time() - t0, 3)
        if cfg.num_parts > 1 and not cfg.merge_only:
            for run in todo:
                write_part_marker(
                    run.dir,
                    cfg.part,
                    cfg.num_parts,
                    run.plan.fingerprint,
                    run.plan.settings,
                    [n for n, p in owners[run.plan.split].items() if p == cfg.part],
                )
        with _merge_lock(cfg.out / cfg.dataset):
            if cfg.num_parts > 1:  # another part may have merged while this one waited here
                for run in todo:
                    if self._classify(run) == "done":
                        states[run.plan.split] = "done"
                todo = [r for r in todo if states[r.plan.split] != "done"]
                if not todo:
                    self.log(f"part {cfg.part} of {cfg.num_parts} finished; another part merged the set")
                    return {"status": "up_to_date", "splits": {r.plan.split: r.dir.index() for r in runs}}
            waiting = []
            for run in todo:
                try:
                    check_parts_complete(run.dir, run.plan, owners[run.plan.split], cfg.num_parts, _describe_change)
                except PartsIncomplete as err:
                    if cfg.merge_only or cfg.num_parts == 1:
                        raise IngestError(str(err)) from None
                    waiting.append(str(err))
                except PartError as err:
                    raise IngestError(str(err)) from None
            if waiting:
                written = sum(r.written_now for r in todo)
                self.log(
                    f"part {cfg.part} of {cfg.num_parts} finished ({written} shard(s) written "
                    "now); the set is not complete yet, so the last part to finish (or "
                    f"`--merge`) will merge it: {waiting[0]}"
                )
                return {
                    "status": "part_done",
                    "part": cfg.part,
                    "num_parts": cfg.num_parts,
                    "shards_written_this_run": written,
                    "waiting": waiting,
                }
            summaries = {}
            for run in runs:
                if states[run.plan.split] != "done":
                    summaries[run.plan.split] = self._finalize(run)
                else:
                    summaries[run.plan.split] = {"status": "up_to_date", **self._short(run.dir.index())}
            self.timings["total_s"] = round(time.time() - t_start, 3)
            report = self._dataset_report(summaries)
            write_json_atomic(cfg.out / cfg.dataset / REPORT, report)
        self._print_summary(runs, summaries)
        return report

    def _write_plan_state(self, run: _SplitRun) -> None:
        state = {
            "fingerprint": run.plan.fingerprint,
            "settings": run.plan.settings,
            "identities": run.plan.identities,
            "num_clips": run.plan.num_clips,
            "num_shards": len(run.plan.shards),
        }
        if run.dir.plan() != state:  # parts share it: rewrite only when it changes
            write_json_atomic(run.dir.state / PLAN, state)

    def _task(self, run: _SplitRun, shard) -> ShardTask:
        ids = {c.identity for c in shard.clips}
        return ShardTask(
            out=self.cfg.out,
            dataset=self.cfg.dataset,
            split=run.plan.split,
            shard=shard.name,
            fingerprint=run.plan.fingerprint,
            clips=shard.clips,
            identity_info={i: run.identity_info.get(i, {}) for i in sorted(ids)},
            settings=self.cfg.extract,
            rel_bases=(self.cfg.root, self.cfg.faces),
            run_id=self.run_id,
        )

    def _make_executor(self):
        if self.executor is not None:
            return ForeignExecutor(self.executor, self.cfg.workers)
        try:
            return make_executor(self.cfg.executor, self.cfg.workers, self.cfg.scheduler)
        except WorkersCannotStart as err:
            raise IngestError(str(err)) from None

    def _execute(self, tasks: list[ShardTask], runs: dict[str, _SplitRun]) -> None:
        """Run the shard tasks, keeping about two per worker in flight. A worker death (the pool
        breaks, Dask gives up on a task) re-queues the tasks that had started to run alone, one
        at a time, so a second death is pinned on one clip by the task's journal."""
        bar = tqdm(
            total=sum(len(t.clips) for t in tasks),
            unit="clip",
            desc="ingest",
            disable=None if self.cfg.progress else True,
            dynamic_ncols=True,
        )
        queue, solo = deque(tasks), deque()
        in_flight: dict = {}  # future -> (task, executor generation)
        executor = self._make_executor()
        generation, crashes_in_a_row, skipped = 0, 0, 0
        window = 2 * executor.capacity
        try:
            while queue or solo or in_flight:
                if solo:
                    if not in_flight:
                        task = solo.popleft()
                        task.solo = True
                        in_flight[executor.submit(run_shard_task, task, self.job)] = (task, generation)
                else:
                    while queue and len(in_flight) < window:
                        task = queue.popleft()
                        in_flight[executor.submit(run_shard_task, task, self.job)] = (task, generation)
                for future in _wait_any(list(in_flight)):
                    task, gen = in_flight.pop(future)
                    try:
                        result = future.result()
                    except BaseException as err:
                        if not is_worker_death(err):
                            raise
                        if task.solo:
                            crashes_in_a_row += 1
                            if crashes_in_a_row >= _MAX_CRASHES_IN_A_ROW:
                                raise IngestError(
                                    f"{crashes_in_a_row} clips in a row killed their worker "
                                    "process: this is not one bad file but a broken environment "
                                    "(decoder libraries, memory limits). Finished shards are "
                                    "kept; fix the cause and re-run the same command"
                                ) from None
                        if gen == generation:
                            executor.after_worker_death()
                            generation += 1
                        # a task that never started cannot be the culprit: back to the queue
                        (solo if task.solo or _started(task) else queue).append(task)
                        continue
                    if result.ok_clips:
                        crashes_in_a_row = 0
                    if result.written:
                        runs[task.split].written_now += 1
                        self.worker_rss[result.pid] = max(self.worker_rss.get(result.pid, 0.0), result.peak_rss_mb)
                    skipped += result.skipped
                    bar.update(len(task.clips))
                    bar.set_postfix(skipped=skipped, refresh=False)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
        finally:
            bar.close()
            executor.close()

    # -- finalization
    def _finalize(self, run: _SplitRun) -> dict:
        t0 = time.time()
        cfg = self.cfg
        run.dir.clean_leftovers()  # every shard is done: any temp file is a dead attempt's
        # Stream the sidecars into the manifest: memory stays O(#shards + #identities + #skips).
        skipped, dropped, shards = list(run.scan_skips), [], []
        identities: dict[str, dict] = {}
        num_records, total_duration = 0, 0.0
        manifest_tmp = run.dir.path / (MANIFEST + ".partial")
        with open(manifest_tmp, "w", encoding="utf-8") as fh:
            for shard in run.plan.shards:
                side = run.dir.shard_done(shard.name, run.plan.fingerprint)
                if side is None:
                    raise IngestError(
                        f"{run.dir.sidecar(shard.name)} is missing after extraction; "
                        "re-run the same command to finish the split"
                    )
                skipped += side["skipped"]
                dropped += side["dropped"]
                if not side["records"]:
                    continue
                shards.append(
                    {
                        "path": shard.name + ".tar",
                        "index": shard.name + ".idx",
                        "num_samples": len(side["records"]),
                        "bytes": side["bytes"],
                    }
                )
                for row in side["records"]:
                    fh.write(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n")
                    info = run.identity_info.get(row["identity"], {})
                    entry = identities.setdefault(
                        row["identity"],
                        {
                            **{k: v for k, v in info.items() if v is not None},
                            "gender": info.get("gender"),
                            "num_samples": 0,
                        },
                    )
                    entry["num_samples"] += 1
                    total_duration += row["duration"]
                num_records += len(side["records"])
        os.replace(manifest_tmp, run.dir.path / MANIFEST)
        eval_info = None
        if self._wants_eval_store(run.plan.split, num_records):
            te = time.time()
            bar = tqdm(
                total=num_records,
                unit="clip",
                desc=f"eval.zarr {run.plan.split}",
                disable=None if cfg.progress else True,
                dynamic_ncols=True,
            )
            with bar:
                n = build_eval_store(
                    run.dir, [s["path"][:-4] for s in shards], cfg.extract.frames_per_clip, cfg.extract.face_size, bar
                )
            eval_info = {"path": EVAL_STORE, "samples": n, "seconds": round(time.time() - te, 3)}
        kinds = Counter(s["kind"] for s in skipped)
        report = {
            "dataset": cfg.dataset,
            "split": run.plan.split,
            "preset": self.preset,
            "fingerprint": run.plan.fingerprint,
            "counts": {
                "planned": run.plan.num_clips,
                "written": num_records,
                "skipped": len(skipped),
                "skipped_by_kind": dict(sorted(kinds.items())),
                "dropped_inputs": len(dropped),
                "shards": len(shards),
                "shards_written_this_run": run.written_now,
                "identities": len(identities),
            },
            "skipped": skipped[:_SKIP_LIST_LIMIT],
            "dropped_inputs": dropped[:_SKIP_LIST_LIMIT],
            "timings": {**self.timings, "finalize_s": round(time.time() - t0, 3)},
            "workers": cfg.workers,
            "worker_peak_rss_mb": self._rss_table(),
            "eval_store": eval_info,
        }
        write_json_atomic(run.dir.path / REPORT, report)
        index = {
            "format": "voxface-shards/1",
            "dataset": cfg.dataset,
            "split": run.plan.split,
            "fingerprint": run.plan.fingerprint,
            "num_samples": num_records,
            "num_shards": len(shards),
            "shards": shards,
            "num_identities": len(identities),
            "identities": identities,
            "face_size": cfg.extract.face_size,
            "num_faces": cfg.extract.frames_per_clip,
            "sample_rate": SAMPLE_RATE,
            "members": sorted(
                [f"f{i}.jpg" for i in range(cfg.extract.frames_per_clip)] + [cfg.extract.audio_format, "json"]
            ),  # tar order (extract_clip)
            "ingest": run.plan.settings,
            "preset": self.preset,
            "eval_store": {k: v for k, v in eval_info.items() if k != "seconds"} if eval_info else None,
            "total_bytes": sum(s["bytes"] for s in shards),
            "total_duration_s": round(total_duration, 3),
        }
        write_json_atomic(run.dir.path / INDEX, index)
        if not num_records:  # written (a re-run is up to date), but nothing to train or evaluate on
            self.log(f"warning: {empty_split_message(run.dir.path, 'leave this split out (--splits)')}")
        return {
            "status": "written" if num_records else "empty",
            **self._short(index),
            "skipped": len(skipped),
            "skipped_by_kind": dict(kinds),
            "dropped_inputs": len(dropped),
            "shards_written_this_run": run.written_now,
        }

    @staticmethod
    def _short(index: dict) -> dict:
        return {
            "samples": index["num_samples"],
            "shards": index["num_shards"],
            "identities": index["num_identities"],
            "bytes": index["total_bytes"],
        }

    def _rss_table(self) -> dict:
        table = {f"worker{i}": round(v, 1) for i, (_, v) in enumerate(sorted(self.worker_rss.items()))}
        table["main"] = round(peak_rss_mb(), 1)
        return table

    def _dataset_report(self, summaries) -> dict:
        return {
            "dataset": self.cfg.dataset,
            "root": str(self.cfg.root),
            "preset": self.preset,
            "splits": summaries,
            "scan": {
                "clips_found": len(self.scan.clips),
                "ignored_files": self.scan.ignored_count,
                "ignored_examples": self.scan.ignored[:50],
                "not_selected_by_preset": dict(self.not_selected),
            },
            "skipped_outside_splits": self.dataset_skips[:_SKIP_LIST_LIMIT],
            "meta_warnings": self.meta_warnings[:_SKIP_LIST_LIMIT],
            "timings": self.timings,
            "workers": self.cfg.workers,
            "worker_peak_rss_mb": self._rss_table(),
        }

    def _print_summary(self, runs, summaries) -> None:
        lines = [f"{'split':<6} {'status':<11} {'samples':>8} {'skipped':>8} {'shards':>7} {'ids':>6} {'MB':>9}"]
        kinds: Counter = Counter()
        for run in runs:
            s = summaries[run.plan.split]
            kinds.update(s.get("skipped_by_kind", {}))
            lines.append(
                f"{run.plan.split:<6} {s['status']:<11} {s['samples']:>8} "
                f"{s.get('skipped', 0):>8} {s['shards']:>7} {s['identities']:>6} "
                f"{s['bytes'] / 1e6:>9.1f}"
            )
        for skip in self.dataset_skips:
            kinds[skip["kind"]] += 1
        if kinds:
            lines.append("skipped inputs by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        rss = self._rss_table()
        t = self.timings
        lines.append(
            f"time {t.get('total_s', 0):.1f} s (scan {t.get('scan_s', 0):.1f}, "
            f"extract {t.get('extract_s', 0):.1f}); peak RSS MB " + ", ".join(f"{k} {v}" for k, v in rss.items())
        )
        lines.append(f"details: {self.cfg.out / self.cfg.dataset}/<split>/report.json")
        self.log("\n".join(lines))


def run_ingest(cfg: IngestConfig, log=print, job=None, executor=None) -> dict:
    """Programmatic entry point (tests, benchmarks): returns the dataset-level report (or, for a
    job-array part that is not the last, `{"status": "part_done", ...}`). `executor`: any
    `concurrent.futures`-style executor to run the shard tasks on instead of `cfg.executor`
    (Ray, submitit, a thread pool; see docs/INGEST.md), kept `cfg.workers` tasks busy."""
    return Ingest(cfg, log, job, executor).run()


def _parse_splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise argparse.ArgumentTypeError(f"splits must be a comma list of train,val,test; got {text!r}")
    return splits


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.ingest",
        description="Convert VoxCeleb1/VoxCeleb2 media into identity-mixed WebDataset shards "
        "(<out>/<dataset>/<split>/shard-NNNNNN.{tar,idx}, index.json, manifest.jsonl, "
        "report.json, eval.zarr for val/test). Restartable: re-run the same command "
        "after an interruption and it continues. See docs/INGEST.md.",
    )
    p.add_argument(
        "--dataset",
        required=True,
        choices=("voxceleb1", "voxceleb2"),
        help="which release --root holds (decides the layout reader and split presets)",
    )
    p.add_argument(
        "--root",
        required=True,
        type=Path,
        help="dataset folder: VoxCeleb2 with [dev|test/]mp4 (+aac, txt); VoxCeleb1 with "
        "wav/ and unzippedIntervalFaces/ (or --faces), txt/",
    )
    p.add_argument(
        "--meta",
        type=Path,
        default=None,
        help="vox1_meta.csv / vox2_meta.csv (TAB or comma, BOM and padding tolerated); "
        "default: <root>/vox1_meta.csv or <root>/vox2_meta.csv when present, else the "
        "official table bundled with voxface",
    )
    p.add_argument("--out", required=True, type=Path, help="output root; shards go to <out>/<dataset>/<split>/")
    p.add_argument(
        "--split-preset",
        choices=sorted(PRESETS),
        default=None,
        help="identity split: wen1251 (A/B val, C/D/E test, F-Z train; 116/193/942), "
        "wen1225 (the 1,225-identity variant), pins (Learnable PINs 901/100/250) for "
        "voxceleb1; vox2 (dev->train, test->test) or vox2test (118 released test "
        "ids) for voxceleb2. Default: wen1251 / vox2",
    )
    p.add_argument(
        "--split-file",
        type=Path,
        default=None,
        help="replace the packaged list of wen1225 (derived csv) or pins (identity_splits.txt)",
    )
    p.add_argument(
        "--splits",
        type=_parse_splits,
        default=None,
        help="comma list of splits to write (default: every split of the preset)",
    )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, cpus or 1),
        help="local executor: worker processes, each extracting and writing whole shards "
        "(default: the CPUs this process may use); dask without --scheduler: "
        "worker processes of the LocalCluster",
    )
    p.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="where shard tasks run: local processes (default) or a dask.distributed "
        "cluster (pip install 'voxface[dask]'); see docs/INGEST.md",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="--executor dask: the scheduler to use (default: start a LocalCluster on "
        "127.0.0.1 with --workers processes)",
    )
    p.add_argument(
        "--num-parts",
        type=int,
        default=1,
        help="job arrays (SLURM/PBS): split the shards into N parts run as separate "
        "jobs on a shared --out; each part writes its own shards and the last to "
        "finish merges (default 1)",
    )
    p.add_argument(
        "--part", type=int, default=None, help="which part this job writes, 0..N-1 (e.g. $SLURM_ARRAY_TASK_ID)"
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="write nothing but the merge (index.json, manifest, reports, eval.zarr) "
        "once every part is done; refuses, naming the part, if one is missing "
        "or was made with other settings",
    )
    p.add_argument("--frames-per-clip", type=int, default=4, help="face crops per clip (default 4)")
    p.add_argument(
        "--face-size", type=int, default=224, help="face crop side in pixels (default 224, VoxCeleb2's native crop)"
    )
    p.add_argument(
        "--frame-selection",
        choices=("even", "random"),
        default="even",
        help="even: evenly spaced over the clip; random: seeded by (--seed, clip key)",
    )
    p.add_argument(
        "--shard-samples",
        type=int,
        default=1000,
        help="samples per shard (default 1000: VoxCeleb2 dev -> ~1092 shards, >= 8 per "
        "GPU x worker on an 8-GPU node with 8 workers)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the shard assignment and random frames")
    p.add_argument(
        "--limit", type=int, default=None, help="at most N clips per split (a seeded random subset over all identities)"
    )
    p.add_argument(
        "--eval-store",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write eval.zarr for val/test splits (default on)",
    )
    p.add_argument(
        "--faces",
        type=Path,
        default=None,
        help="VoxCeleb1 face folder (default: <root>/unzippedIntervalFaces/data or another "
        "known name); per-utterance, per-video or per-identity (VGGFace-style) images",
    )
    p.add_argument(
        "--vox2-audio",
        choices=("auto", "m4a", "mp4"),
        default="auto",
        help="VoxCeleb2 audio: auto = the aac/*.m4a when present else the mp4 track",
    )
    p.add_argument(
        "--video-backend",
        choices=("pyav", "decord"),
        default="pyav",
        help="mp4/m4a decoder: pyav (default; sequential decode, ~85 MB per worker) or "
        "decord (seeking reader, ~625 MB per worker); same frames, see docs/INGEST.md",
    )
    p.add_argument(
        "--audio-format",
        choices=sorted(AUDIO_ENCODERS),
        default=ExtractSettings().audio_format,
        help="audio member: flac (default; lossless, ~0.74 of the PCM bytes, with a seek table "
        "so the loader cuts crop windows without decoding) or wav (16-bit PCM, larger, "
        "no decode at all); see docs/LOADER.md, Compact audio",
    )
    p.add_argument(
        "--crop-boxes",
        action="store_true",
        help="crop frames by the txt boxes (only for full, uncropped frames; the released "
        "VoxCeleb crops must not be re-cropped)",
    )
    p.add_argument(
        "--min-face-size",
        type=int,
        default=MIN_FACE_SIZE,
        help=f"skip faces whose square is smaller than this many pixels before resizing "
        f"(reason small_face; default {MIN_FACE_SIZE}, 0 = keep any size)",
    )
    p.add_argument(
        "--jpeg-quality", type=int, default=JPEG_QUALITY, help=f"JPEG quality of face crops (default {JPEG_QUALITY})"
    )
    p.add_argument(
        "--min-audio-seconds", type=float, default=0.5, help="skip clips with less audio than this (default 0.5)"
    )
    p.add_argument(
        "--silence-dbfs",
        type=float,
        default=-60.0,
        help="skip clips whose audio RMS is below this level (default -60 dBFS)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rebuild a split whose existing shards were written with other settings/inputs",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    return p


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    meta = args.meta or default_meta(args.dataset, args.root)
    if args.workers < 1:
        raise IngestError("--workers must be >= 1")
    if args.num_parts < 1:
        raise IngestError("--num-parts must be >= 1")
    if args.part is None:
        if args.num_parts > 1 and not args.merge:
            raise IngestError(f"--num-parts {args.num_parts} needs --part 0..{args.num_parts - 1} (or --merge)")
        args.part = 0
    if not 0 <= args.part < args.num_parts:
        raise IngestError(f"--part must be in 0..{args.num_parts - 1}, got {args.part}")
    if args.scheduler and args.executor != "dask":
        raise IngestError("--scheduler needs --executor dask")
    if args.limit is not None and args.limit < 1:
        raise IngestError("--limit must be >= 1")
    if args.shard_samples < 1:
        raise IngestError("--shard-samples must be >= 1")
    try:
        settings = ExtractSettings(
            frames_per_clip=args.frames_per_clip,
            face_size=args.face_size,
            frame_selection=args.frame_selection,
            seed=args.seed,
            crop_boxes=args.crop_boxes,
            jpeg_quality=args.jpeg_quality,
            min_audio_seconds=args.min_audio_seconds,
            silence_dbfs=args.silence_dbfs,
            video_backend=args.video_backend,
            audio_format=args.audio_format,
            min_face_size=args.min_face_size,
        )
    except ValueError as err:
        raise IngestError(str(err)) from None
    if not args.root.is_dir():
        raise IngestError(f"--root {args.root} is not a folder")
    return IngestConfig(
        dataset=args.dataset,
        root=args.root.resolve(),
        meta=meta,
        out=args.out.resolve(),
        split_preset=args.split_preset,
        splits=args.splits,
        workers=args.workers,
        shard_samples=args.shard_samples,
        limit=args.limit,
        eval_store=args.eval_store,
        overwrite=args.overwrite,
        faces=args.faces.resolve() if args.faces else None,
        vox2_audio=args.vox2_audio,
        split_file=args.split_file,
        extract=settings,
        progress=not args.no_progress,
        executor=args.executor,
        scheduler=args.scheduler,
        num_parts=args.num_parts,
        part=args.part,
        merge_only=args.merge,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_ingest(config_from_args(args))
    except (IngestError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StorageError as err:
        print(
            f"error: {err}. Finished shards are kept; free space or make the output writable, "
            "then re-run the same command to continue",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished shards are kept; re-run the same command to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
