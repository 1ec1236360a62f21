"""`python -m pipeline.ingest`: VoxCeleb1 / VoxCeleb2 media -> identity-mixed WebDataset shards.

Flow: parse meta -> split preset -> scan the layout -> deterministic shard plan per split ->
leak check against splits already under `<out>/<dataset>/` -> extract clips in `--workers`
processes while the main process writes shards in plan order -> per split `manifest.jsonl`,
`report.json`, `eval.zarr` (val/test) and finally `index.json`. See docs/INGEST.md.

Why workers extract clips while one process writes: extraction (video decode, JPEG, FLAC) is the
cost; writing is cheap. Clip-level parallelism keeps all workers busy even when a split has fewer
shards than workers, and writing in plan order makes the bytes independent of scheduling. A
worker that dies (a decoder crash on a hostile file) is replaced; the clips that were in flight are
retried one at a time so the culprit is identified, skipped and reported, and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter, deque
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from shards.format import ShardWriter

from .extract import AUDIO_ENCODERS, JPEG_QUALITY, SAMPLE_RATE, ClipError, ExtractSettings, extract_clip
from .meta import Meta, MetaError, read_meta
from .plan import INGEST_FORMAT_VERSION, SplitPlan, make_split_plan
from .shardset import (EVAL_STORE, INDEX, MANIFEST, PLAN, REPORT, SplitDir, build_eval_store,
                       existing_split_identities, write_json_atomic)
from .sources import ClipRecord, ScanResult, Skip, scan_voxceleb1, scan_voxceleb2
from .splits import (DEFAULT_PRESET, PRESETS, SPLITS, SplitError, assign_splits, check_disjoint,
                     find_leaks)

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

    def output_settings(self, preset: str) -> dict:
        """Everything that changes which samples are written or their bytes (not --workers)."""
        return {**self.extract.as_dict(), "shard_samples": self.shard_samples, "limit": self.limit,
                "split_preset": preset, "vox2_audio": self.vox2_audio,
                "ingest_format_version": INGEST_FORMAT_VERSION}


# ---------------------------------------------------------------- worker side

def _init_worker(backend: str) -> None:
    """Die with the parent (a kill -9 of the ingest must not leave decoders running) and keep
    FFmpeg's per-frame complaints about corrupt inputs off the progress bar."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import av

    av.logging.set_level(av.logging.PANIC)
    if backend == "decord":  # importing decord costs ~550 MB RSS: only when it is used
        import decord

        decord.logging.set_level(decord.logging.QUIET)


def _peak_rss_mb() -> float:
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


def _extract_job(record: ClipRecord, split: str, identity_info: dict, settings: ExtractSettings):
    """Runs in a worker: returns (sample | skip dict, pid, peak RSS MB). Never raises for input
    problems; an unexpected exception becomes an `extract_error` skip naming the exception."""
    try:
        result = extract_clip(record, split, identity_info, settings)
    except ClipError as err:
        result = {"path": err.path, "kind": err.kind, "reason": err.reason, "key": record.key}
    except Exception as err:  # a bug or an unforeseen input problem: report, do not lose the run
        result = {"path": record.source, "kind": "extract_error",
                  "reason": f"{type(err).__name__}: {err}", "key": record.key}
    return result, os.getpid(), _peak_rss_mb()


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


def _rel(path: str, cfg: IngestConfig) -> str:
    for base in (cfg.root, cfg.faces):
        if base is not None:
            try:
                return Path(path).relative_to(base).as_posix()
            except ValueError:
                pass
    return path


def _identity_info(meta: Meta) -> dict[str, dict]:
    return {i: {"gender": r.gender, "nationality": r.nationality, "name": r.name,
                "vggface2_id": r.vggface2_id} for i, r in meta.identities.items()}


def _scan(cfg: IngestConfig, meta: Meta) -> ScanResult:
    if cfg.dataset == "voxceleb2":
        return scan_voxceleb2(cfg.root, audio=cfg.vox2_audio)
    return scan_voxceleb1(cfg.root, meta, faces=cfg.faces)


def _describe_change(old: dict, new: dict) -> str:
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k)]
    return "; ".join(diffs) if diffs else "the input files changed (clips added, removed or modified)"


@contextmanager
def _dataset_lock(dataset_dir: Path):
    """One ingest at a time per `<out>/<dataset>`: two writers of the same shards would interleave
    garbage, and the leak check must see a stable set of splits. flock is released by the kernel
    when the holder dies, even by kill -9, so a stale lock never blocks a resume."""
    import fcntl

    dataset_dir.mkdir(parents=True, exist_ok=True)
    with open(dataset_dir / ".ingest.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise IngestError(f"{dataset_dir} is being written by another ingest ({holder}); wait "
                              "for it to finish or stop it, then re-run") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Ingest:
    """One ingest run. `job` is the per-clip worker function (a module-level callable with the
    signature and return value of `_extract_job`); replaceable to wrap extraction, e.g. to test
    crash recovery."""

    def __init__(self, cfg: IngestConfig, log=print, job=None):
        self.cfg = cfg
        self.log = log
        self.job = job or _extract_job
        self.worker_rss: dict[int, float] = {}
        self.dataset_skips: list[dict] = []
        self.not_selected: Counter = Counter()
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
        available = assignment.splits()
        splits = cfg.splits or available
        unknown = [s for s in splits if s not in available]
        if unknown:
            raise IngestError(f"preset {preset!r} has no identities in split(s) {unknown}; it "
                              f"provides {available}")
        self.preset = preset
        self.log(f"meta: {len(meta)} identities in {cfg.meta}; preset {preset}: "
                 + ", ".join(f"{s} {n}" for s, n in assignment.counts().items() if n))
        self.log(f"scanning {cfg.root} ...")
        scan = _scan(cfg, meta)
        self.timings["scan_s"] = round(time.time() - t0, 3)
        self.log(f"scan: {len(scan.clips)} clips, {len(scan.skipped)} unusable inputs, "
                 f"{scan.ignored_count} files outside the layout ({self.timings['scan_s']:.1f} s)")
        info = _identity_info(meta)
        by_split: dict[str, list[ClipRecord]] = {s: [] for s in splits}
        skips_by_split: dict[str, list[dict]] = {s: [] for s in splits}
        for clip in scan.clips:
            if clip.identity not in meta:
                self.dataset_skips.append(Skip(clip.source, "missing_meta_row",
                                               f"identity {clip.identity} has no row in {cfg.meta.name}",
                                               clip.key, clip.identity).as_dict())
                continue
            split = assignment.split_of.get(clip.identity)
            if split in by_split:
                by_split[split].append(clip)
            else:
                self.not_selected[assignment.excluded.get(clip.identity) or f"split {split}"] += 1
        for skip in scan.skipped:
            if skip.identity is not None and skip.identity not in meta:
                self.dataset_skips.append({**skip.as_dict(), "kind": "missing_meta_row",
                                           "reason": f"identity {skip.identity} has no row in "
                                                     f"{cfg.meta.name} ({skip.reason})"})
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
            plan = make_split_plan(cfg.dataset, split, by_split[split], info, settings,
                                   cfg.extract.seed, cfg.shard_samples, cfg.limit)
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
                "folder(s) first.")

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
                    "choose another --out.")
            self.log(f"{run.dir.path}: settings or inputs changed; --overwrite: rebuilding")
            run.dir.wipe()
            index = plan_state = None
        if index:
            damaged = [s["path"] for s in index.get("shards", [])
                       if not (run.dir.path / s["path"]).exists()
                       or (run.dir.path / s["path"]).stat().st_size != s["bytes"]]
            if damaged:
                self.log(f"{run.dir.path}: {len(damaged)} shard(s) missing or changed since the "
                         f"ingest ({', '.join(damaged[:3])}); rewriting them")
                (run.dir.path / INDEX).unlink()
                return "resume"
            if self._wants_eval_store(run.plan.split, index["num_samples"]) and not (index.get("eval_store") and (run.dir.path / EVAL_STORE).exists()):
                return "finalize"
            return "done"
        return "resume" if plan_state else "new"

    # -- execution
    def run(self) -> dict:
        with _dataset_lock(self.cfg.out / self.cfg.dataset):
            return self._run()

    def _run(self) -> dict:
        cfg = self.cfg
        t_start = time.time()
        runs = self.plan()
        states = {}
        for run in runs:
            states[run.plan.split] = self._classify(run)
        if all(s == "done" for s in states.values()):
            self.log("nothing to do: " + ", ".join(
                f"{r.dir.path} is up to date ({r.dir.index()['num_samples']} samples)" for r in runs))
            return {"status": "up_to_date", "splits": {r.plan.split: r.dir.index() for r in runs}}
        for run in runs:
            if states[run.plan.split] == "done":
                continue
            run.dir.prepare()
            write_json_atomic(run.dir.state / PLAN, {
                "fingerprint": run.plan.fingerprint, "settings": run.plan.settings,
                "identities": run.plan.identities, "num_clips": run.plan.num_clips,
                "num_shards": len(run.plan.shards)})
            run.pending = [s for s in run.plan.shards
                           if run.dir.shard_done(s.name, run.plan.fingerprint) is None]
            done = len(run.plan.shards) - len(run.pending)
            if done:
                self.log(f"{run.dir.path}: resuming, {done} of {len(run.plan.shards)} shards already done")
        t0 = time.time()
        self._extract_all([r for r in runs if r.pending])
        self.timings["extract_s"] = round(time.time() - t0, 3)
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

    def _executor(self) -> ProcessPoolExecutor:
        """A fresh pool, checked with a no-op task: if workers cannot even start (e.g. the caller
        runs from stdin, which spawned processes cannot re-import), say so instead of reporting
        every clip as a crash."""
        import multiprocessing

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        pool = ProcessPoolExecutor(max_workers=max(1, self.cfg.workers),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self.cfg.extract.video_backend,))
        try:
            pool.submit(os.getpid).result()
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            raise IngestError(
                "the extraction worker processes die on start-up. Spawned workers re-import the "
                "caller's __main__: run `python -m pipeline.ingest ...`, or call run_ingest from a "
                "script file under `if __name__ == '__main__':` (not from stdin); then re-run the "
                "same command to continue") from None
        return pool

    def _extract_all(self, runs: list[_SplitRun]) -> None:
        total = sum(len(s.clips) for r in runs for s in r.pending)
        if not total:
            return
        items = ((run, shard, i) for run in runs for shard in run.pending for i in range(len(shard.clips)))
        window = max(2, 4 * self.cfg.workers)
        bar = tqdm(total=total, unit="clip", desc="ingest", disable=not self.cfg.progress,
                   dynamic_ncols=True)
        state = {"writer": None, "records": [], "skips": [], "dropped": [], "skipped": 0}
        pool = self._executor()
        in_flight: deque = deque()
        retry: deque = deque()  # items to run one at a time after a worker crash
        crashes_in_a_row = 0
        try:
            while True:
                while not retry and len(in_flight) < window:
                    item = next(items, None)
                    if item is None:
                        break
                    in_flight.append((item, self._submit(pool, item, solo=False)))
                if not in_flight and retry:
                    item = retry.popleft()
                    in_flight.append((item, self._submit(pool, item, solo=True)))
                if not in_flight:
                    break
                item, future = in_flight.popleft()
                try:
                    result, pid, rss = future.result()
                except BrokenProcessPool:
                    solo = future.solo
                    pool.shutdown(wait=False, cancel_futures=True)
                    crashes_in_a_row += solo
                    if crashes_in_a_row >= _MAX_CRASHES_IN_A_ROW:  # before starting a pool only to drop it
                        raise IngestError(
                            f"{crashes_in_a_row} clips in a row killed their worker process: "
                            "this is not one bad file but a broken environment (decoder "
                            "libraries, memory limits). Finished shards are kept; fix the "
                            "cause and re-run the same command")
                    pool = self._executor()
                    if solo:
                        run, shard, i = item
                        clip = shard.clips[i]
                        result, pid, rss = {"path": clip.source, "kind": "worker_crash",
                                            "reason": "the worker process died while decoding this "
                                                      "clip (decoder crash)", "key": clip.key}, None, 0.0
                    else:
                        # Retry the crashed item and everything in flight, one by one, in order.
                        retry.extendleft(reversed([item] + [it for it, _ in in_flight]))
                        in_flight.clear()
                        continue
                if pid is not None:
                    crashes_in_a_row = 0
                    self.worker_rss[pid] = max(self.worker_rss.get(pid, 0.0), rss)
                self._consume(item, result, state)
                bar.update(1)
                bar.set_postfix(skipped=state["skipped"], refresh=False)
        except BaseException:
            if state["writer"] is not None:
                state["writer"].abort()
            raise
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, pool: ProcessPoolExecutor, item, solo: bool):
        """Submit one clip; `solo` marks a retry running alone, so a crash identifies it."""
        run, shard, i = item
        clip = shard.clips[i]
        future = pool.submit(self.job, clip, run.plan.split, run.identity_info.get(clip.identity, {}),
                             self.cfg.extract)
        future.solo = solo
        return future

    def _consume(self, item, result, state) -> None:
        run, shard, i = item
        if i == 0:
            state.update(writer=None, records=[], skips=[], dropped=[])
        if isinstance(result, dict):
            result["path"] = _rel(result["path"], self.cfg)
            state["skips"].append(result)
            state["skipped"] += 1
        else:
            if state["writer"] is None:
                state["writer"] = ShardWriter(run.dir.tar(shard.name))
            rec = state["writer"].add(result.key, result.members)
            clip = shard.clips[i]
            info = run.identity_info.get(clip.identity, {})
            state["records"].append({
                "key": rec.key, "identity": clip.identity, "video": clip.video, "clip": clip.clip,
                "gender": info.get("gender"), "shard": shard.name + ".tar", "offset": rec.offset,
                "size": rec.size, "members": rec.members, "sha1": rec.sha1,
                "duration": round(result.duration, 6), "source": clip.source})
            for d in result.dropped:
                state["dropped"].append({**d, "path": _rel(d["path"], self.cfg), "key": clip.key})
        if i == len(shard.clips) - 1:
            nbytes = 0
            if state["writer"] is not None:
                state["writer"].close()
                nbytes = run.dir.tar(shard.name).stat().st_size
                state["writer"] = None
            write_json_atomic(run.dir.sidecar(shard.name), {
                "shard": shard.name, "fingerprint": run.plan.fingerprint, "bytes": nbytes,
                "records": state["records"], "skipped": state["skips"], "dropped": state["dropped"]},
                indent=None)
            run.written_now += 1

    # -- finalization
    def _finalize(self, run: _SplitRun) -> dict:
        t0 = time.time()
        cfg = self.cfg
        # Stream the sidecars into the manifest: memory stays O(#shards + #identities + #skips).
        skipped, dropped, shards = list(run.scan_skips), [], []
        identities: dict[str, dict] = {}
        num_records, total_duration = 0, 0.0
        manifest_tmp = run.dir.path / (MANIFEST + ".partial")
        with open(manifest_tmp, "w", encoding="utf-8") as fh:
            for shard in run.plan.shards:
                side = run.dir.shard_done(shard.name, run.plan.fingerprint)
                if side is None:
                    raise IngestError(f"{run.dir.sidecar(shard.name)} is missing after extraction; "
                                      "re-run the same command to finish the split")
                skipped += side["skipped"]
                dropped += side["dropped"]
                if not side["records"]:
                    continue
                shards.append({"path": shard.name + ".tar", "index": shard.name + ".idx",
                               "num_samples": len(side["records"]), "bytes": side["bytes"]})
                for row in side["records"]:
                    fh.write(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n")
                    info = run.identity_info.get(row["identity"], {})
                    entry = identities.setdefault(row["identity"], {
                        **{k: v for k, v in info.items() if v is not None},
                        "gender": info.get("gender"), "num_samples": 0})
                    entry["num_samples"] += 1
                    total_duration += row["duration"]
                num_records += len(side["records"])
        os.replace(manifest_tmp, run.dir.path / MANIFEST)
        eval_info = None
        if self._wants_eval_store(run.plan.split, num_records):
            te = time.time()
            bar = tqdm(total=num_records, unit="clip", desc=f"eval.zarr {run.plan.split}",
                       disable=not cfg.progress, dynamic_ncols=True)
            with bar:
                n = build_eval_store(run.dir, [s["path"][:-4] for s in shards],
                                     cfg.extract.frames_per_clip, cfg.extract.face_size, bar)
            eval_info = {"path": EVAL_STORE, "samples": n, "seconds": round(time.time() - te, 3)}
        kinds = Counter(s["kind"] for s in skipped)
        report = {
            "dataset": cfg.dataset, "split": run.plan.split, "preset": self.preset,
            "fingerprint": run.plan.fingerprint,
            "counts": {"planned": run.plan.num_clips, "written": num_records,
                       "skipped": len(skipped), "skipped_by_kind": dict(sorted(kinds.items())),
                       "dropped_inputs": len(dropped), "shards": len(shards),
                       "shards_written_this_run": run.written_now,
                       "identities": len(identities)},
            "skipped": skipped[:_SKIP_LIST_LIMIT],
            "dropped_inputs": dropped[:_SKIP_LIST_LIMIT],
            "timings": {**self.timings, "finalize_s": round(time.time() - t0, 3)},
            "workers": cfg.workers,
            "worker_peak_rss_mb": self._rss_table(),
            "eval_store": eval_info,
        }
        write_json_atomic(run.dir.path / REPORT, report)
        index = {
            "format": "voxface-shards/1", "dataset": cfg.dataset, "split": run.plan.split,
            "fingerprint": run.plan.fingerprint, "num_samples": num_records,
            "num_shards": len(shards), "shards": shards,
            "num_identities": len(identities), "identities": identities,
            "face_size": cfg.extract.face_size, "num_faces": cfg.extract.frames_per_clip,
            "sample_rate": SAMPLE_RATE,
            "members": sorted([f"f{i}.jpg" for i in range(cfg.extract.frames_per_clip)]
                              + [cfg.extract.audio_format, "json"]),  # tar order (extract_clip)
            "ingest": run.plan.settings, "preset": self.preset,
            "eval_store": {k: v for k, v in eval_info.items() if k != "seconds"} if eval_info else None,
            "total_bytes": sum(s["bytes"] for s in shards),
            "total_duration_s": round(total_duration, 3),
        }
        write_json_atomic(run.dir.path / INDEX, index)
        return {"status": "written", **self._short(index), "skipped": len(skipped),
                "skipped_by_kind": dict(kinds), "dropped_inputs": len(dropped),
                "shards_written_this_run": run.written_now}

    @staticmethod
    def _short(index: dict) -> dict:
        return {"samples": index["num_samples"], "shards": index["num_shards"],
                "identities": index["num_identities"], "bytes": index["total_bytes"]}

    def _rss_table(self) -> dict:
        table = {f"worker{i}": round(v, 1) for i, (_, v) in enumerate(sorted(self.worker_rss.items()))}
        table["main"] = round(_peak_rss_mb(), 1)
        return table

    def _dataset_report(self, summaries) -> dict:
        return {
            "dataset": self.cfg.dataset, "root": str(self.cfg.root), "preset": self.preset,
            "splits": summaries,
            "scan": {"clips_found": len(self.scan.clips), "ignored_files": self.scan.ignored_count,
                     "ignored_examples": self.scan.ignored[:50],
                     "not_selected_by_preset": dict(self.not_selected)},
            "skipped_outside_splits": self.dataset_skips[:_SKIP_LIST_LIMIT],
            "timings": self.timings, "workers": self.cfg.workers,
            "worker_peak_rss_mb": self._rss_table(),
        }

    def _print_summary(self, runs, summaries) -> None:
        lines = [f"{'split':<6} {'status':<11} {'samples':>8} {'skipped':>8} {'shards':>7} "
                 f"{'ids':>6} {'MB':>9}"]
        kinds: Counter = Counter()
        for run in runs:
            s = summaries[run.plan.split]
            kinds.update(s.get("skipped_by_kind", {}))
            lines.append(f"{run.plan.split:<6} {s['status']:<11} {s['samples']:>8} "
                         f"{s.get('skipped', 0):>8} {s['shards']:>7} {s['identities']:>6} "
                         f"{s['bytes'] / 1e6:>9.1f}")
        for skip in self.dataset_skips:
            kinds[skip["kind"]] += 1
        if kinds:
            lines.append("skipped inputs by reason: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        rss = self._rss_table()
        t = self.timings
        lines.append(f"time {t.get('total_s', 0):.1f} s (scan {t.get('scan_s', 0):.1f}, "
                     f"extract {t.get('extract_s', 0):.1f}); peak RSS MB "
                     + ", ".join(f"{k} {v}" for k, v in rss.items()))
        lines.append(f"details: {self.cfg.out / self.cfg.dataset}/<split>/report.json")
        self.log("\n".join(lines))


def run_ingest(cfg: IngestConfig, log=print, job=None) -> dict:
    """Programmatic entry point (tests, benchmarks): returns the dataset-level report."""
    return Ingest(cfg, log, job).run()


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
                    "after an interruption and it continues. See docs/INGEST.md.")
    p.add_argument("--dataset", required=True, choices=("voxceleb1", "voxceleb2"),
                   help="which release --root holds (decides the layout reader and split presets)")
    p.add_argument("--root", required=True, type=Path,
                   help="dataset folder: VoxCeleb2 with [dev|test/]mp4 (+aac, txt); VoxCeleb1 with "
                        "wav/ and unzippedIntervalFaces/ (or --faces), txt/")
    p.add_argument("--meta", type=Path, default=None,
                   help="vox1_meta.csv / vox2_meta.csv (TAB or comma, BOM and padding tolerated); "
                        "default: <root>/vox1_meta.csv or <root>/vox2_meta.csv")
    p.add_argument("--out", required=True, type=Path,
                   help="output root; shards go to <out>/<dataset>/<split>/")
    p.add_argument("--split-preset", choices=sorted(PRESETS), default=None,
                   help="identity split: wen1251 (A/B val, C/D/E test, F-Z train; 116/193/942), "
                        "wen1225 (the 1,225-identity variant), pins (Learnable PINs 901/100/250) for "
                        "voxceleb1; vox2 (dev->train, test->test) or vox2test (118 released test "
                        "ids) for voxceleb2. Default: wen1251 / vox2")
    p.add_argument("--split-file", type=Path, default=None,
                   help="replace the packaged list of wen1225 (derived csv) or pins (identity_splits.txt)")
    p.add_argument("--splits", type=_parse_splits, default=None,
                   help="comma list of splits to write (default: every split of the preset)")
    p.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="extraction processes (default: CPU count, at most 8)")
    p.add_argument("--frames-per-clip", type=int, default=4, help="face crops per clip (default 4)")
    p.add_argument("--face-size", type=int, default=224,
                   help="face crop side in pixels (default 224, VoxCeleb2's native crop)")
    p.add_argument("--frame-selection", choices=("even", "random"), default="even",
                   help="even: evenly spaced over the clip; random: seeded by (--seed, clip key)")
    p.add_argument("--shard-samples", type=int, default=1000,
                   help="samples per shard (default 1000: VoxCeleb2 dev -> ~1092 shards, >= 8 per "
                        "GPU x worker on an 8-GPU node with 8 workers)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shard assignment and random frames")
    p.add_argument("--limit", type=int, default=None,
                   help="at most N clips per split (a seeded random subset over all identities)")
    p.add_argument("--eval-store", action=argparse.BooleanOptionalAction, default=True,
                   help="write eval.zarr for val/test splits (default on)")
    p.add_argument("--faces", type=Path, default=None,
                   help="VoxCeleb1 face folder (default: <root>/unzippedIntervalFaces/data or another "
                        "known name); per-utterance, per-video or per-identity (VGGFace-style) images")
    p.add_argument("--vox2-audio", choices=("auto", "m4a", "mp4"), default="auto",
                   help="VoxCeleb2 audio: auto = the aac/*.m4a when present else the mp4 track")
    p.add_argument("--video-backend", choices=("pyav", "decord"), default="pyav",
                   help="mp4/m4a decoder: pyav (default; sequential decode, ~85 MB per worker) or "
                        "decord (seeking reader, ~625 MB per worker); same frames, see docs/INGEST.md")
    p.add_argument("--audio-format", choices=sorted(AUDIO_ENCODERS), default="flac",
                   help="audio member: flac (default; lossless, ~0.74 of the PCM bytes, with a seek table "
                        "so the loader cuts crop windows without decoding) or wav (16-bit PCM, larger, "
                        "no decode at all); see docs/LOADER.md, Compact audio")
    p.add_argument("--crop-boxes", action="store_true",
                   help="crop frames by the txt boxes (only for full, uncropped frames; the released "
                        "VoxCeleb crops must not be re-cropped)")
    p.add_argument("--jpeg-quality", type=int, default=JPEG_QUALITY,
                   help=f"JPEG quality of face crops (default {JPEG_QUALITY})")
    p.add_argument("--min-audio-seconds", type=float, default=0.5,
                   help="skip clips with less audio than this (default 0.5)")
    p.add_argument("--silence-dbfs", type=float, default=-60.0,
                   help="skip clips whose audio RMS is below this level (default -60 dBFS)")
    p.add_argument("--overwrite", action="store_true",
                   help="rebuild a split whose existing shards were written with other settings/inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    return p


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    meta = args.meta or args.root / ("vox1_meta.csv" if args.dataset == "voxceleb1" else "vox2_meta.csv")
    if args.workers < 1:
        raise IngestError("--workers must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise IngestError("--limit must be >= 1")
    if args.shard_samples < 1:
        raise IngestError("--shard-samples must be >= 1")
    try:
        settings = ExtractSettings(
            frames_per_clip=args.frames_per_clip, face_size=args.face_size,
            frame_selection=args.frame_selection, seed=args.seed, crop_boxes=args.crop_boxes,
            jpeg_quality=args.jpeg_quality, min_audio_seconds=args.min_audio_seconds,
            silence_dbfs=args.silence_dbfs, video_backend=args.video_backend, audio_format=args.audio_format)
    except ValueError as err:
        raise IngestError(str(err)) from None
    if not args.root.is_dir():
        raise IngestError(f"--root {args.root} is not a folder")
    return IngestConfig(
        dataset=args.dataset, root=args.root.resolve(), meta=meta, out=args.out.resolve(),
        split_preset=args.split_preset, splits=args.splits, workers=args.workers,
        shard_samples=args.shard_samples, limit=args.limit, eval_store=args.eval_store,
        overwrite=args.overwrite, faces=args.faces.resolve() if args.faces else None,
        vox2_audio=args.vox2_audio, split_file=args.split_file, extract=settings,
        progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_ingest(config_from_args(args))
    except (IngestError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished shards are kept; re-run the same command to continue",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
