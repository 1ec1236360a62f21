"""Benchmark the synthetic corpus generator: demo-corpus wall time, parallel vs serial, stages.

Run: python benchmarks/bench_synth.py [--quick | --full] [--out-json PATH]

* demo: the brief's demo corpus (40 identities x 3 videos x 2 clips, 4-6 s clips) with 2 workers;
  the target is "well under 2 minutes on 2 cores".
* parallel_vs_serial: the same smaller corpus generated with 2 workers and with 1 (the simple
  baseline), side by side; ratio = serial seconds / parallel seconds.
* stages: per-clip milliseconds of speech synthesis, frame rendering and mp4/m4a encoding,
  measured in-process (CPU time) on a few VoxCeleb2 clips (where the time goes).

Wall seconds AND CPU seconds (worker processes included) are recorded: on a shared, loaded box
the wall time overstates what two idle cores need, which is about CPU seconds / workers.

--quick (default) uses 8 identities for parallel_vs_serial; --full uses 40. Results go to
benchmarks/results/bench_synth.json. The box is shared: numbers are wall-clock under load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from cputime import tree_cpu_seconds  # benchmarks/cputime.py

from pipeline.synth import make_corpus, media
from pipeline.synth.clip import ClipRenderer
from pipeline.synth.plan import CorpusSpec, plan_corpus

DEMO = {"identities": 40, "videos_per_identity": 3, "clips_per_video": 2}


def timed_corpus(root: Path, name: str, workers: int, **args) -> dict:
    """Generate, measure wall and CPU seconds (worker processes included), delete."""
    out = root / name
    cpu0 = tree_cpu_seconds()  # the corpus workers are fork-server children: os.times() misses them
    summary = make_corpus(out, workers=workers, progress=False, **args)
    cpu = tree_cpu_seconds() - cpu0
    shutil.rmtree(out)
    return {k: summary[k] for k in ("clips", "files", "bytes", "seconds", "clips_per_second", "workers")} | {
        "cpu_seconds": cpu,
        # on a shared, loaded box wall time overstates; CPU seconds / workers is what 2 idle cores need
        "estimated_wall_seconds_on_idle_cores": cpu / workers,
        "oracle_vox2_test": summary["oracle"]["voxceleb2/test"]["random_negatives"],
        "oracle_vox1_wen_test": summary["oracle"]["voxceleb1/wen_test"]["random_negatives"],
    }


def stage_times(n_clips: int = 6) -> dict:
    plans = [p for p in plan_corpus(CorpusSpec(identities=n_clips, videos_per_identity=1)) if p.dataset == "voxceleb2"]
    totals = {"speech_ms": 0.0, "frames_ms": 0.0, "encode_ms": 0.0, "frames": 0, "audio_seconds": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for p in plans:
            v = p.videos[0]
            clip = v.clips[0]
            r = ClipRenderer(0, p, v, clip)
            t0 = time.process_time()  # CPU time: robust to other users of a shared box
            audio = r.audio
            t1 = time.process_time()
            frames = [r.frame(i) for i in range(clip.num_frames)]
            t2 = time.process_time()
            media.write_m4a(Path(tmp) / "x.m4a", audio)
            media.write_mp4(Path(tmp) / "x.mp4", iter(frames), audio_from=Path(tmp) / "x.m4a")
            t3 = time.process_time()
            totals["speech_ms"] += 1000 * (t1 - t0)
            totals["frames_ms"] += 1000 * (t2 - t1)
            totals["encode_ms"] += 1000 * (t3 - t2)
            totals["frames"] += clip.num_frames
            totals["audio_seconds"] += clip.seconds
    n = len(plans)
    return {
        "clips": n,
        "speech_ms_per_clip": totals["speech_ms"] / n,
        "frames_ms_per_frame": totals["frames_ms"] / totals["frames"],
        "encode_ms_per_frame": totals["encode_ms"] / totals["frames"],
        "speech_realtime_factor": totals["audio_seconds"] / (totals["speech_ms"] / 1000),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="8-identity parallel-vs-serial comparison (default)")
    size.add_argument("--full", action="store_true", help="40-identity parallel-vs-serial comparison (slow)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating parallel/serial runs (best kept); default 2")
    ap.add_argument("--skip-demo", action="store_true", help="do not time the 40-identity demo corpus")
    ap.add_argument("--out-json", default=str(Path(__file__).parent / "results" / "bench_synth.json"))
    args = ap.parse_args()
    n = 40 if args.full else 8
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results["stages"] = stage_times()
        print("stages", json.dumps(results["stages"]))
        if not args.skip_demo:
            results["demo"] = timed_corpus(root, "demo", 2, **DEMO)
            print("demo", json.dumps(results["demo"]))
        small = {"identities": n, "videos_per_identity": 3, "clips_per_video": 2}
        # alternate the two so both see the same background load; keep each one's fastest run
        runs = {"parallel": [], "serial": []}
        for _ in range(args.repeats):
            runs["parallel"].append(timed_corpus(root, "parallel", 2, **small))
            runs["serial"].append(timed_corpus(root, "serial", 1, **small))
        parallel = min(runs["parallel"], key=lambda r: r["seconds"])
        serial = min(runs["serial"], key=lambda r: r["seconds"])
        results["parallel_vs_serial"] = {
            "corpus": small,
            "repeats": args.repeats,
            "parallel_2_workers": parallel,
            "serial_baseline": serial,
            "speedup": serial["seconds"] / parallel["seconds"],
            "all_wall_seconds": {k: [r["seconds"] for r in v] for k, v in runs.items()},
        }
        print("parallel_vs_serial speedup", round(results["parallel_vs_serial"]["speedup"], 2))
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out_json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out_json}")


if __name__ == "__main__":
    main()
