"""Where the loader's consuming (main) process spends its CPU, per batch and per stage.

Why: the consuming process is serial and caps a rank's tuples/s once there are enough decode
workers (docs/LOADER.md, "Decode workers"), so its CPU per batch is the number to cut. This
wraps the loader's stages with CPU clocks and streams batches from FLAC (or WAV) shards with 2
decode worker processes:

  * `read`: `PieceStream.next` without the parser (tar headers, member payload copies);
  * `parse`: `SampleParser.__call__` (json, frame choice, crop-window cut when `crop`);
  * `plan`: `plan_batch` (tuple sampling over the identity buffer);
  * `submit`: `DecodeWorkers.submit` (lean plan, copying item bytes into the shared-memory slot,
    handing the job to the pool);
  * `snapshot`: the resume state taken per planned batch;
  * `receive`: `_receive` (arrays out of the slot, `finish_batch`: face normalisation, index
    tensors);
  * `other`: the rest of the main thread (iteration glue, buffer bookkeeping);
  * `helper threads`: process CPU outside the main thread (the pool's queue feeder and result
    threads, torch's intra-op threads).

The decode workers' CPU per batch (`benchmarks/cputime.py`, from /proc) is reported next to it.

Stage times are `time.thread_time` of the main thread (the stages are not nested except read >
parse, which is subtracted); the process total is `time.process_time`. Optionally `--cprofile N`
prints the top N functions by internal CPU time (`time.process_time` as the profiler's clock).

    python benchmarks/profile_loader_main.py [--shards DIR [DIR ...]] [--audio flac|wav] [--buffer-audio crop|clip]
        [--torch-threads N] [--batches 20] [--cprofile 25] [--json out.json]
        [--member-reads stream|workers] [--baseline-src DIR | --compare-member-reads] [--repeats 3]

`--baseline-src DIR` (a checkout of an older commit, e.g. `git archive <commit> shards | tar -x
-C DIR`) runs the profile `--repeats` times for that code and for this tree, alternating, each
in a fresh process, and reports the medians side by side with their ratios (this tree / the
baseline), so load changes on a shared box hit both alike. `--compare-member-reads` does the same
for this tree with `data.member_reads: stream` and `workers` (docs/LOADER.md, "Member reads").

Without `--shards` it builds a synthetic set like `bench_loader_scale.py`'s (60 identities x 3
videos x 2 clips of 7-9 s, 4 face frames of 112 px, as ingest writes). With `--shards` give an
ingested shard split (e.g. of `python -m pipeline.synth --realistic`).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from cputime import tree_cpu_seconds  # benchmarks/cputime.py

import shards.loader as loader_mod
from shards.loader import TupleLoader
from shards.stream import PieceStream, SampleParser
from shards.testing import SyntheticSpec, make_shard_set
from shards.workers import DecodeWorkers

WARMUP = 6


class StageClock:
    """Accumulates main-thread CPU per stage; `wrap` replaces a function or method by a timed one."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.on = False

    def wrap(self, owner, name: str, stage: str) -> None:
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[stage] += time.thread_time() - t0

        setattr(owner, name, timed)


def _synthetic(work: Path, fmt: str) -> str:
    spec = SyntheticSpec(
        num_identities=60,
        videos_per_identity=3,
        clips_per_video=2,
        num_faces=4,
        face_size=112,
        seconds=(7.0, 9.0),
        shard_samples=60,
        audio_format=fmt,
    )
    out = work / f"profile_{fmt}"
    if not (out / "index.json").exists():
        make_shard_set(out, spec)
    return str(out)


def profile(shards: list[str], buffer_audio: str, batches: int, cprofile_top: int, member_reads: str | None) -> dict:
    clock = StageClock()
    clock.wrap(PieceStream, "next", "read")
    clock.wrap(SampleParser, "__call__", "parse")
    clock.wrap(loader_mod, "plan_batch", "plan")
    clock.wrap(DecodeWorkers, "submit", "submit")
    clock.wrap(TupleLoader, "_snapshot", "snapshot")
    clock.wrap(TupleLoader, "_receive", "receive")
    cfg = dict(
        shards=shards,
        batch_size=50,
        k=2,
        buffer_size=300,
        crop_seconds=2.0,
        num_workers=2,
        prefetch=2,
        seed=0,
        decode_workers="processes",
        steps_per_epoch=100_000,
        buffer_audio=buffer_audio,
    )
    if member_reads is not None:  # None: the loader's default (checkouts older than the key lack it)
        cfg["member_reads"] = member_reads
    prof = cProfile.Profile(time.process_time) if cprofile_top else None
    with TupleLoader(cfg) as loader:
        it = iter(loader)
        for _ in range(WARMUP):
            next(it)
        clock.on = True
        p0, t0, w0, tree0 = time.process_time(), time.thread_time(), time.perf_counter(), tree_cpu_seconds()
        if prof:
            prof.enable()
        tuples = sum(len(next(it)["label"]) for _ in range(batches))
        if prof:
            prof.disable()
        proc, main, wall = time.process_time() - p0, time.thread_time() - t0, time.perf_counter() - w0
        workers = tree_cpu_seconds() - tree0 - proc
        clock.on = False
        held = loader.report()["buffer_encoded_bytes"]
        member_reads = getattr(loader.cfg, "member_reads", "stream")
    stages = dict(clock.cpu)
    stages["read"] -= stages.get("parse", 0.0)  # parse runs inside read
    stages["other"] = main - sum(stages.values())
    stages["helper threads"] = proc - main
    ms = {k: round(1000 * v / batches, 2) for k, v in stages.items()}
    out = {
        "shards": shards,
        "buffer_audio": buffer_audio,
        "member_reads": member_reads,
        "buffer_samples": cfg["buffer_size"],
        "buffer_encoded_bytes": held,
        "torch_threads": torch.get_num_threads(),
        "batches": batches,
        "tuples_per_batch": tuples / batches,
        "process_cpu_ms_per_batch": round(1000 * proc / batches, 2),
        "main_thread_cpu_ms_per_batch": round(1000 * main / batches, 2),
        "wall_ms_per_batch": round(1000 * wall / batches, 2),
        "decode_workers_cpu_ms_per_batch": round(1000 * workers / batches, 2),
        "stage_cpu_ms_per_batch": ms,
        "load_avg": os.getloadavg(),
    }
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(cprofile_top)
    return out


def _run_in(src: Path, args: list[str]) -> dict:
    """One profile in a fresh process that imports `shards` from `src`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(Path(__file__).parent)])}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, *args, "--json", out.name], env=env, check=True, capture_output=True)
        return json.loads(Path(out.name).read_text())


def _medians(runs: list[dict]) -> dict:
    stages = {
        k: round(statistics.median(r["stage_cpu_ms_per_batch"].get(k, 0.0) for r in runs), 2)
        for k in runs[0]["stage_cpu_ms_per_batch"]
    }
    keys = (
        "process_cpu_ms_per_batch",
        "main_thread_cpu_ms_per_batch",
        "decode_workers_cpu_ms_per_batch",
        "wall_ms_per_batch",
    )
    return {
        **{k: round(statistics.median(r[k] for r in runs), 2) for k in keys},
        "buffer_encoded_bytes": runs[0].get("buffer_encoded_bytes"),
        "process_cpu_ms_per_batch_runs": [r["process_cpu_ms_per_batch"] for r in runs],
        "stage_cpu_ms_per_batch": stages,
        "torch_threads": runs[0]["torch_threads"],
    }


def compare(sides: dict[str, tuple[Path, list[str]]], repeats: int) -> dict:
    """Two sides (a `shards` source folder and profile arguments each), run alternately in fresh
    processes, `repeats` times each: medians, and the ratios second / first."""
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, (src, args) in sides.items():
            runs[name].append(_run_in(src, args))
    out = {name: _medians(r) for name, r in runs.items()}
    (first, base), (second, new) = out.items()
    out[f"ratio_{second.replace(' ', '_')}_over_{first.replace(' ', '_')}"] = {
        k: round(new[k] / base[k], 3)
        for k in (
            "process_cpu_ms_per_batch",
            "main_thread_cpu_ms_per_batch",
            "decode_workers_cpu_ms_per_batch",
            "wall_ms_per_batch",
        )
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shards", nargs="+", default=None, help="shard split folder(s), merged (default: build a synthetic one)"
    )
    ap.add_argument("--audio", choices=("flac", "wav"), default="flac", help="synthetic set's audio member")
    ap.add_argument("--buffer-audio", choices=("crop", "window", "clip"), default="crop")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads here (default: torch's)")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--cprofile", type=int, default=0, help="print the top N functions (0: none)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "voxface_profile_loader")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument("--baseline-src", type=Path, default=None, help="compare with the `shards` package in this folder")
    ap.add_argument(
        "--member-reads", choices=("stream", "workers"), default=None, help="data.member_reads (default: the loader's)"
    )
    ap.add_argument(
        "--compare-member-reads", action="store_true", help="member_reads stream vs workers, this tree, alternating"
    )
    ap.add_argument("--repeats", type=int, default=3, help="with a comparison: alternating runs per side")
    args = ap.parse_args()
    if args.baseline_src or args.compare_member_reads:
        shards = args.shards or [_synthetic(args.work, args.audio)]
        passed = ["--shards", *shards, "--buffer-audio", args.buffer_audio, "--batches", str(args.batches)]
        if args.torch_threads:
            passed += ["--torch-threads", str(args.torch_threads)]
        here = Path(__file__).resolve().parents[1]
        if args.compare_member_reads:
            sides = {name: (here, [*passed, "--member-reads", name]) for name in ("stream", "workers")}
            what = "data.member_reads stream (the reader streams read every member) vs workers (headers and json only)"
        else:
            sides = {"baseline": (args.baseline_src, passed), "this tree": (here, passed)}
            what = "this tree vs a baseline checkout"
        result = {
            "meaning": "CPU of the loader's consuming process per batch of 50 tuples (K = 2, 2 decode worker "
            f"processes, 2 s crops), by stage, {what}, alternating runs, medians",
            "shards": shards,
            "buffer_audio": args.buffer_audio,
            "batches": args.batches,
            "repeats": args.repeats,
            "load_avg_start": os.getloadavg(),
            **compare(sides, args.repeats),
            "load_avg_end": os.getloadavg(),
            "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    shards = args.shards or [_synthetic(args.work, args.audio)]
    result = profile(shards, args.buffer_audio, args.batches, args.cprofile, args.member_reads)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
