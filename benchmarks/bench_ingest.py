"""Ingest cost on realistic VoxCeleb2 clips, side by side with a decode-only floor and a naive script.

All runs in one process invocation, on the same VoxCeleb2-layout corpus (`pipeline.synth
--realistic`: about 8 s, about 250 kbps H.264 + AAC, see docs/SYNTHETIC_CORPUS.md), so the ratios
compare like with like on this (shared, 2-core) machine:

* `ours_w1`, `ours_w2`: `pipeline.ingest` (default PyAV backend, FLAC audio) with 1 and 2 worker
  processes, each on the corpus (N clips) and on a 2x copy of it (2N clips, hard links under new
  identity ids). CPU is main process + workers; the marginal CPU per clip
  `(cpu(2N) - cpu(N)) / N` removes the fixed start-up cost (imports, worker start, merge) that a
  small benchmark would otherwise spread over few clips and that vanishes over 1 M clips;
* `decode_floor`: PyAV decoding exactly what ingest needs, writing nothing: the clip's m4a
  decoded and resampled to 16 kHz mono, and the mp4's video decoded (one thread, like an ingest
  worker) up to the last of the F frames ingest keeps (`choose_frames`, same header frame count,
  same `even` choice), those F frames converted to RGB. Not included: face crop/resize, JPEG,
  FLAC, tar, checksums, manifest, scheduling. One process, in this one, on the N clips;
* `naive_ffmpeg` (when an ffmpeg CLI exists): per clip, one `ffmpeg` call extracting F frames
  (select filter + scale, JPEG) and one converting the audio to 16 kHz mono WAV, appended to a tar
  (sequential, one process; its CPU includes the ffmpeg processes);
* `ours_decord_w1` (`--decord`): ingest with `--video-backend decord`.

Ratios (all in `ratios`, each with its meaning in `ratio_meanings`): ingest marginal CPU per clip /
floor CPU per clip (goal <= 1.3), the same with start-up included, w2 / w1 clips per second of
wall time and CPU per clip, and ours / naive. Configurations alternate over `--repeats` rounds;
CPU figures are medians over the rounds, wall-clock ones the fastest round (the box is shared: the
1-minute load average of every run is in the JSON). Shard
bytes / source bytes and peak RSS per worker feed `benchmarks/project_scale.py`.

    python benchmarks/bench_ingest.py            # 8 ids x 3 videos x 2 clips = 48 realistic clips
    python benchmarks/bench_ingest.py --light    # the plain (cheap) synthetic clips instead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from cputime import tree_cpu_seconds  # benchmarks/cputime.py

from pipeline.extract import ExtractSettings, choose_frames
from pipeline.ingest import IngestConfig, run_ingest

ROOT = Path(__file__).resolve().parents[1]

FRAMES, FACE = 4, 224
SAMPLE_RATE = 16000


def _clips(vox2: Path) -> list[tuple[Path, Path]]:
    """(mp4, audio file ingest reads) of every clip: the m4a beside it when there is one."""
    out = []
    for mp4 in sorted(vox2.glob("*/mp4/*/*/*.mp4")):
        m4a = Path(str(mp4).replace("/mp4/", "/aac/")).with_suffix(".m4a")
        out.append((mp4, m4a if m4a.exists() else mp4))
    return out


def _source_bytes(vox2: Path) -> int:
    return sum(mp4.stat().st_size + (audio.stat().st_size if audio != mp4 else 0) for mp4, audio in _clips(vox2))


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
    shard_bytes = sum(s["bytes"] for s in report["splits"].values())
    workers_rss = {k: v for k, v in report["worker_peak_rss_mb"].items() if k != "main"}
    return {
        "clips": clips,
        "seconds": round(seconds, 3),
        "clips_per_s": round(clips / seconds, 2),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_clip": round(1000 * cpu / clips, 1),
        "shard_bytes": shard_bytes,
        "worker_peak_rss_mb": workers_rss,
        "main_peak_rss_mb": report["worker_peak_rss_mb"]["main"],
    }


def _floor_one(mp4: Path, audio_path: Path) -> int:
    """Decode what ingest needs from one clip; returns the number of audio samples (kept so the
    work cannot be optimised away and so the output can be sanity-checked)."""
    import av

    with av.open(str(audio_path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        samples = 0
        for frame in container.decode(container.streams.audio[0]):
            samples += sum(r.samples for r in resampler.resample(frame))
        samples += sum(r.samples for r in resampler.resample(None))
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # one thread, like an ingest worker
        wanted = set(choose_frames(stream.frames, FRAMES, "even"))
        last = max(wanted)
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                frame.to_ndarray(format="rgb24")
            if n == last:
                break
    return samples


def _floor(vox2: Path) -> dict:
    clips = _clips(vox2)
    _floor_one(*clips[0])  # warm: import av, codec tables (ingest workers pay this once too)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    samples = sum(_floor_one(mp4, audio) for mp4, audio in clips)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "clips": len(clips),
        "seconds": round(seconds, 3),
        "clips_per_s": round(len(clips) / seconds, 2),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_clip": round(1000 * cpu / len(clips), 1),
        "audio_seconds_decoded": round(samples / SAMPLE_RATE, 1),
    }


def _naive(corpus: Path, out: Path, ffmpeg: str, max_clips: int, min_seconds: float) -> dict:
    """One ffmpeg process for the frames and one for the audio of every clip, then tarfile.
    A rate, so measured on the first `max_clips` clips to keep the benchmark short; the frames are
    spread over the first `min_seconds` (the shortest clip length), as a script that does not probe
    each clip's length would."""
    clips = _clips(corpus)[:max_clips]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cpu0 = tree_cpu_seconds()
    t0 = time.perf_counter()
    written = 0
    with tarfile.open(out / "naive.tar", "w") as tar, tempfile.TemporaryDirectory() as tmp:
        for mp4, audio_in in clips:
            key = "_".join(mp4.parts[-3:]).replace(".mp4", "").replace(".", "-")
            frames = Path(tmp) / "f%d.jpg"
            select = "+".join(f"eq(n\\,{int((i + 0.5) * 25 * min_seconds / FRAMES)})" for i in range(FRAMES))
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
            audio = Path(tmp) / "a.wav"  # 16-bit PCM
            r2 = subprocess.run(
                [
                    ffmpeg,
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(audio_in),
                    "-vn",
                    "-ac",
                    "1",
                    "-ar",
                    str(SAMPLE_RATE),
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
    cpu = tree_cpu_seconds() - cpu0
    return {
        "clips": written,
        "seconds": round(seconds, 3),
        "clips_per_s": round(written / seconds, 2),
        "cpu_ms_per_clip": round(1000 * cpu / max(written, 1), 1),
        "note": f"frames chosen at fixed times within the first {min_seconds:g} s (not evenly over each clip's true length)",
    }


def _replicate(vox2: Path, dest: Path, factor: int) -> Path:
    """`factor` copies of the VoxCeleb2 part under new identity ids (hard links where possible):
    more clips per run without synthesising more."""
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


RATIO_MEANINGS = {
    "ingest_over_floor_cpu_w1": "ingest CPU per clip with 1 worker (marginal: start-up removed, main process + "
    "worker) / decode-only floor CPU per clip; what ingest adds on top of decoding (crop, resize, JPEG, FLAC, "
    "tar, checksums, manifest, scheduling). Goal <= 1.3",
    "ingest_over_floor_cpu_w2": "the same with 2 workers",
    "ingest_with_startup_over_floor_cpu_w1": "whole-run ingest CPU per clip (start-up, imports and merge of this "
    "small run included) / floor CPU per clip; overstates the per-clip cost at scale",
    "scaling_w2_over_w1": "clips per second of wall time, 2 workers / 1 worker (2N clips; limited by the free "
    "cores of the shared box, see load_avg_1min)",
    "cpu_per_clip_w2_over_w1": "marginal CPU per clip, 2 workers / 1 worker: load-independent cost of the "
    "second worker (1.0 = free)",
    "ours_w1_over_naive": "clips per second of wall time, ingest with 1 worker / the naive ffmpeg script "
    "(one process each)",
    "ours_w2_over_naive": "clips per second, ingest with 2 workers / the naive ffmpeg script",
    "naive_over_ingest_cpu": "CPU per clip, naive ffmpeg script / ingest (marginal, 1 worker); medians",
    "pyav_over_decord_w1": "clips per second, PyAV backend / decord backend, 1 worker",
    "shard_over_source_bytes": "shard tar bytes / the clips' mp4 + m4a bytes (FLAC audio)",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--light", action="store_true", help="plain synthetic clips (4-6 s, ~100 kbps) instead of realistic")
    p.add_argument("--identities", type=int, default=8, help="VoxCeleb2 identities (x 3 videos x 2 clips)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest.json")
    p.add_argument("--naive-clips", type=int, default=24, help="clips for the (slow) ffmpeg baseline")
    p.add_argument("--repeats", type=int, default=2, help="runs per configuration; the best is kept")
    p.add_argument("--decord", action="store_true", help="also time the decord backend (1 worker)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder, kept (default: a temp dir, removed)")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from pipeline.synth import make_corpus
    from pipeline.synth.realistic import SECONDS as REALISTIC_SECONDS

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    ids, videos, clips = args.identities, 3, 2
    corpus = work / ("corpus_light" if args.light else "corpus")
    t0 = time.perf_counter()
    synthesised = not (corpus / "voxceleb2" / "vox2_meta.csv").exists()
    if synthesised:
        make_corpus(
            corpus,
            identities=ids,
            videos_per_identity=videos,
            clips_per_video=clips,
            min_seconds=4.0 if args.light else REALISTIC_SECONDS[0],  # make_corpus defaults to 4-6 s
            max_seconds=6.0 if args.light else REALISTIC_SECONDS[1],
            workers=2,
            progress=False,
            realistic=not args.light,
        )
    synth_s = time.perf_counter() - t0
    vox2 = corpus / "voxceleb2"
    vox2_x2 = _replicate(vox2, work / f"{corpus.name}_x2", 2)
    n = len(_clips(vox2))
    results: dict = {
        "what": "ingest vs a decode-only floor vs a naive ffmpeg script, side by side in one run (see the "
        "docstring of benchmarks/bench_ingest.py); ratios are the result, absolute numbers depend on the "
        "shared box",
        "corpus": {
            "kind": "plain synthetic" if args.light else "realistic (pipeline.synth --realistic)",
            "clips": n,
            "identities": ids,
            "videos_per_identity": videos,
            "clips_per_video": clips,
            "clip_seconds": [4.0, 6.0] if args.light else list(REALISTIC_SECONDS),
            "dataset": "voxceleb2",
            "source_bytes": _source_bytes(vox2),
            "synth_seconds": round(synth_s, 1) if synthesised else None,  # None: the corpus in --work was reused
        },
        "settings": {"frames_per_clip": FRAMES, "face_size": FACE, "audio_format": "flac", "shard_samples": 16},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    # The box is shared with other jobs: alternate the configurations, keep every run's CPU per
    # clip (CPU time barely depends on the load) and each one's fastest run for the wall-clock
    # ratios (the least disturbed), with its load average.
    ffmpeg = shutil.which("ffmpeg") or ("/usr/bin/ffmpeg" if Path("/usr/bin/ffmpeg").exists() else None)
    configs = [
        ("decode_floor", lambda: _floor(vox2)),
        ("ours_w1_n", lambda: _ours(vox2, work / "ours", 1, "pyav")),
        ("ours_w1_2n", lambda: _ours(vox2_x2, work / "ours", 1, "pyav")),
        ("ours_w2_n", lambda: _ours(vox2, work / "ours", 2, "pyav")),
        ("ours_w2_2n", lambda: _ours(vox2_x2, work / "ours", 2, "pyav")),
    ]
    if args.decord:
        configs.append(("ours_decord_w1", lambda: _ours(vox2_x2, work / "ours", 1, "decord")))
    if ffmpeg:
        configs.append(
            ("naive_ffmpeg", lambda: _naive(vox2, work / "naive", ffmpeg, args.naive_clips, 4.0 if args.light else 7.0))
        )
    runs: dict = {}
    for _ in range(args.repeats):
        for name, measure in configs:
            load = round(os.getloadavg()[0], 2)
            run = {**measure(), "load_avg_1min": load}
            print(name, run, flush=True)
            runs.setdefault(name, []).append(run)
    for name, rs in runs.items():
        results[name] = {
            **min(rs, key=lambda r: r["cpu_ms_per_clip"]),
            "best_of": len(rs),
            "cpu_ms_per_clip_runs": [r["cpu_ms_per_clip"] for r in rs],
        }
    if not ffmpeg:
        results["naive_ffmpeg"] = {
            "skipped": "no ffmpeg CLI on PATH or at /usr/bin/ffmpeg; install it "
            "(apt-get install ffmpeg) to measure the baseline"
        }
    # CPU figures are medians over the repeats; the marginal cost per clip is taken per repeat
    # (run i on 2N clips minus run i on N clips), then the median.
    floor = statistics.median(r["cpu_ms_per_clip"] for r in runs["decode_floor"])
    results["decode_floor"]["cpu_ms_per_clip_median"] = round(floor, 1)
    marginal = {}
    for w in (1, 2):
        pairs = list(zip(runs[f"ours_w{w}_n"], runs[f"ours_w{w}_2n"], strict=True))
        per_run = [1000 * (two["cpu_s"] - one["cpu_s"]) / (two["clips"] - one["clips"]) for one, two in pairs]
        marginal[w] = statistics.median(per_run)
        startup = statistics.median(one["cpu_s"] - m * one["clips"] / 1000 for (one, _), m in zip(pairs, per_run))
        two = results[f"ours_w{w}_2n"]
        results[f"ours_w{w}"] = {
            "marginal_cpu_ms_per_clip": round(marginal[w], 1),
            "marginal_cpu_ms_per_clip_runs": [round(m, 1) for m in per_run],
            "startup_cpu_s": round(startup, 2),
            "clips_per_s_2n": two["clips_per_s"],
            "worker_peak_rss_mb": two["worker_peak_rss_mb"],
            "main_peak_rss_mb": two["main_peak_rss_mb"],
        }
    w1, w2 = results["ours_w1_2n"], results["ours_w2_2n"]
    ratios = {
        "ingest_over_floor_cpu_w1": round(marginal[1] / floor, 2),
        "ingest_over_floor_cpu_w2": round(marginal[2] / floor, 2),
        "ingest_with_startup_over_floor_cpu_w1": round(
            statistics.median(r["cpu_ms_per_clip"] for r in runs["ours_w1_2n"]) / floor, 2
        ),
        "scaling_w2_over_w1": round(w2["clips_per_s"] / w1["clips_per_s"], 2),
        "cpu_per_clip_w2_over_w1": round(marginal[2] / marginal[1], 2),
        "shard_over_source_bytes": round(results["ours_w1_n"]["shard_bytes"] / results["corpus"]["source_bytes"], 3),
    }
    if "clips_per_s" in results["naive_ffmpeg"]:
        naive = results["naive_ffmpeg"]
        ratios["ours_w1_over_naive"] = round(w1["clips_per_s"] / naive["clips_per_s"], 2)
        ratios["ours_w2_over_naive"] = round(w2["clips_per_s"] / naive["clips_per_s"], 2)
        naive_cpu = statistics.median(r["cpu_ms_per_clip"] for r in runs["naive_ffmpeg"])
        ratios["naive_over_ingest_cpu"] = round(naive_cpu / marginal[1], 2)
    if "ours_decord_w1" in results:
        ratios["pyav_over_decord_w1"] = round(w1["clips_per_s"] / results["ours_decord_w1"]["clips_per_s"], 2)
    results["ratios"] = ratios
    results["ratio_meanings"] = {k: RATIO_MEANINGS[k] for k in ratios}
    results["goals"] = {"ingest_over_floor_cpu<=1.3": ratios["ingest_over_floor_cpu_w1"] <= 1.3}
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(ratios, indent=1))
    print(f"wrote {args.out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
