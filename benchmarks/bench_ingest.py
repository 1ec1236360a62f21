"""Ingest throughput on the synthetic corpus: 1 vs 2 workers, PyAV vs decord, vs a naive ffmpeg CLI.

All runs in one process invocation, on the same VoxCeleb2-layout corpus, so the ratios compare
like with like on this (shared, 2-core) machine:

* `ours_w1`, `ours_w2`: `pipeline.ingest` with the default PyAV backend, 1 and 2 worker processes
  (scaling ratio = w2 / w1 clips/s);
* `ours_decord_w1`: same with `--video-backend decord` (the brief's reader) for the backend choice;
* `naive_ffmpeg`: what a simple script does: per clip, one `ffmpeg` call extracting F evenly spaced
  frames (select filter + scale to the face size, JPEG) and one converting the audio to 16 kHz
  mono FLAC, then appending the files to a tar with `tarfile` (sequential, one process).

Clips/s counts clips written per second of wall time including process start-up (and CPU ms per
clip, main process + workers, which does not depend on the machine's load); each of our
configurations keeps the best of `--repeats` alternating runs (the machine is shared; the 1-minute
load average of every run is recorded). Peak RSS per worker comes from the ingest report (VmHWM of
each worker process).

    python benchmarks/bench_ingest.py            # quick: 12 ids x 3 videos x 2 clips, x4 = 288 clips
    python benchmarks/bench_ingest.py --full     # 24 x 4 x 2, x4 = 768 clips
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from cputime import tree_cpu_seconds  # benchmarks/cputime.py

from pipeline.extract import ExtractSettings
from pipeline.ingest import IngestConfig, run_ingest

ROOT = Path(__file__).resolve().parents[1]

FRAMES, FACE = 4, 224


def _ours(corpus: Path, out: Path, workers: int, backend: str) -> dict:
    cfg = IngestConfig(
        dataset="voxceleb2",
        root=corpus,
        meta=corpus / "vox2_meta.csv",
        out=out,
        workers=workers,
        shard_samples=16,
        eval_store=False,
        progress=False,
        extract=ExtractSettings(frames_per_clip=FRAMES, face_size=FACE, video_backend=backend),
    )
    shutil.rmtree(out, ignore_errors=True)  # measure a full ingest, never a no-op re-run
    cpu0 = tree_cpu_seconds()
    t0 = time.perf_counter()
    report = run_ingest(cfg, log=lambda *_: None)
    seconds = time.perf_counter() - t0
    cpu = tree_cpu_seconds() - cpu0
    clips = sum(s["samples"] for s in report["splits"].values())
    workers_rss = {k: v for k, v in report["worker_peak_rss_mb"].items() if k != "main"}
    return {
        "clips": clips,
        "seconds": round(seconds, 3),
        "clips_per_s": round(clips / seconds, 2),
        "cpu_ms_per_clip": round(1000 * cpu / clips, 1),
        "worker_peak_rss_mb": workers_rss,
        "main_peak_rss_mb": report["worker_peak_rss_mb"]["main"],
    }


def _naive(corpus: Path, out: Path, ffmpeg: str, max_clips: int) -> dict:
    """One ffmpeg process for the frames and one for the audio of every clip, then tarfile.
    A rate, so measured on the first `max_clips` clips to keep the benchmark short."""
    mp4s = sorted(corpus.glob("*/mp4/*/*/*.mp4"))[:max_clips]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    written = 0
    with tarfile.open(out / "naive.tar", "w") as tar, tempfile.TemporaryDirectory() as tmp:
        for mp4 in mp4s:
            key = "_".join(mp4.parts[-3:]).replace(".mp4", "").replace(".", "-")
            frames = Path(tmp) / "f%d.jpg"
            select = "+".join(f"eq(n\\,{int((i + 0.5) * 25 * 4 / FRAMES)})" for i in range(FRAMES))
            r1 = subprocess.run(
                [
                    ffmpeg,
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(mp4),
                    "-vf",
                    f"select='{select}',scale={FACE}:{FACE}",
                    "-vsync",
                    "0",
                    "-q:v",
                    "3",
                    str(frames),
                ],
                capture_output=True,
            )
            m4a = Path(str(mp4).replace("/mp4/", "/aac/")).with_suffix(".m4a")
            audio = Path(tmp) / "a.wav"  # 16-bit PCM, the ingest's default audio member
            r2 = subprocess.run(
                [
                    ffmpeg,
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(m4a if m4a.exists() else mp4),
                    "-vn",
                    "-ac",
                    "1",
                    "-ar",
                    "16000",
                    "-c:a",
                    "pcm_s16le",
                    str(audio),
                ],
                capture_output=True,
            )
            if r1.returncode or r2.returncode:
                continue
            for f in sorted(Path(tmp).glob("f*.jpg")) + [audio]:
                tar.add(f, arcname=f"{key}.{f.name}")
                f.unlink()
            written += 1
    seconds = time.perf_counter() - t0
    return {
        "clips": written,
        "seconds": round(seconds, 3),
        "clips_per_s": round(written / seconds, 2),
        "note": "frames chosen at fixed times (not evenly over each clip's true length)",
    }


def _replicate(vox2: Path, dest: Path, factor: int) -> Path:
    """`factor` copies of the VoxCeleb2 part under new identity ids (hard links where possible):
    enough work per run that process start-up does not dominate, without synthesising more."""
    if dest.exists():
        return dest
    lines = (vox2 / "vox2_meta.csv").read_text(encoding="utf-8-sig").splitlines()
    rows = [lines[0]]
    for k in range(factor):
        for line in lines[1:]:
            ident = line.split(",")[0].strip()
            new = f"id{int(ident[2:]) + 1000 * k:05d}"  # VoxCeleb2 ids stay below id10000
            if int(new[2:]) >= 10000:
                raise ValueError(f"cannot replicate {ident} {factor} times within VoxCeleb2 ids")
            rows.append(line.replace(ident, new, 1))
            for part in vox2.glob(f"*/*/{ident}"):
                target = dest / part.relative_to(vox2).parent / new
                shutil.copytree(part, target, copy_function=os.link)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vox2_meta.csv").write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="larger corpus (24 identities x 4 videos x 2 clips)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest.json")
    p.add_argument(
        "--replicate", type=int, default=4, help="ingest this many copies of the synthetic clips (hard links, new ids)"
    )
    p.add_argument("--naive-clips", type=int, default=96, help="clips for the (slow) ffmpeg baseline")
    p.add_argument("--repeats", type=int, default=2, help="runs per configuration; the best is kept")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from pipeline.synth import make_corpus

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    ids, videos, clips = (24, 4, 2) if args.full else (12, 3, 2)
    corpus = work / "corpus"
    t0 = time.perf_counter()
    if not corpus.exists():
        make_corpus(
            corpus,
            identities=ids,
            videos_per_identity=videos,
            clips_per_video=clips,
            min_seconds=4.0,
            max_seconds=6.0,
            workers=2,
            progress=False,
        )
    synth_s = time.perf_counter() - t0
    vox2 = _replicate(corpus / "voxceleb2", work / f"voxceleb2_x{args.replicate}", args.replicate)
    results: dict = {
        "corpus": {
            "identities": ids,
            "videos_per_identity": videos,
            "clips_per_video": clips,
            "clip_seconds": [4.0, 6.0],
            "dataset": "voxceleb2",
            "replicated": args.replicate,
            "synth_seconds": round(synth_s, 1),
        },
        "settings": {"frames_per_clip": FRAMES, "face_size": FACE},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    # The box is shared with other jobs: alternate the configurations (the naive baseline too)
    # and keep each one's best of `--repeats` runs (the least disturbed), with its load average.
    ffmpeg = shutil.which("ffmpeg") or ("/usr/bin/ffmpeg" if Path("/usr/bin/ffmpeg").exists() else None)
    configs = [
        ("ours_w1", lambda: _ours(vox2, work / "ours_w1", 1, "pyav")),
        ("ours_w2", lambda: _ours(vox2, work / "ours_w2", 2, "pyav")),
        ("ours_decord_w1", lambda: _ours(vox2, work / "ours_decord_w1", 1, "decord")),
    ]
    if ffmpeg:
        configs.append(("naive_ffmpeg", lambda: _naive(vox2, work / "naive", ffmpeg, args.naive_clips)))
    for _ in range(args.repeats):
        for name, measure in configs:
            load = round(os.getloadavg()[0], 2)
            run = {**measure(), "load_avg_1min": load}
            print(name, run, flush=True)
            if name not in results or run["clips_per_s"] > results[name]["clips_per_s"]:
                results[name] = {**run, "best_of": args.repeats}
    if not ffmpeg:
        results["naive_ffmpeg"] = {
            "skipped": "no ffmpeg CLI on PATH or at /usr/bin/ffmpeg; install it "
            "(apt-get install ffmpeg) to measure the baseline"
        }
    w1, w2 = results["ours_w1"]["clips_per_s"], results["ours_w2"]["clips_per_s"]
    ratios = {
        "scaling_w2_over_w1": round(w2 / w1, 2),
        "pyav_over_decord_w1": round(w1 / results["ours_decord_w1"]["clips_per_s"], 2),
    }
    if "clips_per_s" in results["naive_ffmpeg"]:
        naive = results["naive_ffmpeg"]["clips_per_s"]
        ratios["ours_w1_over_naive"] = round(w1 / naive, 2)
        ratios["ours_w2_over_naive"] = round(w2 / naive, 2)
    # Load-independent view of scaling: if 2 workers cost no more CPU per clip than 1, wall-clock
    # scaling is limited only by free cores (the shared box rarely has a second one idle).
    ratios["cpu_per_clip_w2_over_w1"] = round(
        results["ours_w2"]["cpu_ms_per_clip"] / results["ours_w1"]["cpu_ms_per_clip"], 2
    )
    results["ratios"] = ratios
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(ratios, indent=1))
    print(f"wrote {args.out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
