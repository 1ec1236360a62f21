"""Compact audio and decode workers (issue 12 items 3 and 4), measured side by side in one run.

Part `audio` (-> benchmarks/results/loader_audio.json):
  * storage: the same synthetic VoxCeleb2 corpus (~8 s clips) ingested with the defaults twice,
    audio members `wav` vs `flac` (with seek table): shard bytes / source bytes, audio share,
    FLAC / PCM bytes, ingest CPU per clip;
  * buffer memory per sample (one face JPEG + the audio the buffer keeps) from those shards, for
    `buffer_audio: clip` (whole clips) vs `crop` (the seeded window), WAV vs FLAC, at 2 s and at
    the paper presets' 4 s crops; x 4,200 samples (VoxCeleb2's recommended buffer) in GB;
  * loader cost: tuples/s and CPU per tuple (consuming process / decode workers) for WAV-clip
    (the loader before this change), WAV-crop, FLAC-crop and FLAC-clip (older FLAC shards).
Part `learning` (-> benchmarks/results/loader_audio_learning.json):
  * the end-to-end test's training (tests/test_end_to_end.py: its synthetic corpus of 2-3 s clips,
    demo preset, 40 epochs, 2 s crops), uninterrupted, once per `--learn` buffer mode and
    `--seeds` entry: the last and best validation 1:2 accuracy. Results merge into the JSON by
    mode and seed, so modes can be run in several invocations (the corpus is kept in `--work`).
Part `workers` (-> benchmarks/results/loader_workers.json):
  * the loader at num_workers 1 and 2 (reader streams fixed at 2, so the batches are the same):
    tuples/s, each worker's batches, CPU per batch of the consuming process and of the workers,
    and the projection to 8 workers from those per-batch figures, with the new in-flight rule
    (num_workers + prefetch) and the old one (1 + prefetch = 3 batches, so at most 3 workers).

The box is a shared 2-core machine: configurations alternate, each is run `--repeats` times and
the median kept, and CPU per tuple (robust to other load) is reported next to wall time.

    python benchmarks/bench_loader_scale.py [--part audio|workers|all] [--repeats 3]
    python benchmarks/bench_loader_scale.py --part learning --work DIR --learn clip crop window:2.5 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cputime import tree_cpu_seconds  # benchmarks/cputime.py

from launch import e2e_config
from shards.flac import crop_flac_window
from shards.format import iter_tar_samples
from shards.loader import TupleLoader
from shards.testing import SyntheticSpec, make_shard_set
from shards.wav import crop_pcm16_wav

ROOT = Path(__file__).resolve().parents[1]

SR = 16000
VOX2_BUFFER = 4200  # docs/LOADER.md, buffer sizing: >= 0.7 x VoxCeleb2 dev's 5,994 identities
WARMUP = 6  # batches before timing (more than the loader keeps in flight)


# ------------------------------------------------------------------------------ storage
def _ingest(corpus: Path, out: Path, audio_format: str) -> dict:
    from pipeline.extract import ExtractSettings
    from pipeline.ingest import IngestConfig, run_ingest

    shutil.rmtree(out, ignore_errors=True)
    cfg = IngestConfig(
        dataset="voxceleb2",
        root=corpus / "voxceleb2",
        meta=corpus / "voxceleb2" / "vox2_meta.csv",
        out=out,
        workers=1,
        eval_store=False,
        progress=False,
        extract=ExtractSettings(audio_format=audio_format),
    )
    cpu0 = tree_cpu_seconds()
    report = run_ingest(cfg, log=lambda *_: None)
    cpu = tree_cpu_seconds() - cpu0
    clips = sum(s["samples"] for s in report["splits"].values())
    tars = sorted(out.rglob("*.tar"))
    audio = faces = 0
    members = []
    for tar in tars:
        for _, m, _ in iter_tar_samples(tar):
            audio += len(m[audio_format])
            faces += sum(len(v) for k, v in m.items() if k.endswith(".jpg"))
            members.append(m)
    shard_bytes = sum(t.stat().st_size for t in tars)
    return {
        "clips": clips,
        "shard_bytes": shard_bytes,
        "audio_bytes": audio,
        "face_bytes": faces,
        "ingest_cpu_ms_per_clip": round(1000 * cpu / clips, 1),
        "members": members,
    }


def _source_bytes(corpus: Path) -> int:
    """VoxCeleb2's download: the mp4 videos and the m4a audio (what ingest reads)."""
    return sum(p.stat().st_size for p in (corpus / "voxceleb2").rglob("*") if p.suffix in (".mp4", ".m4a"))


WINDOW_FACTORS = (1.25, 1.5, 2.0)  # buffer_audio: window widths measured, x crop_seconds
GOAL_GB = 0.4  # issue 12: identity buffer per rank at VoxCeleb2's 4,200 samples


def _cut_audio(member: bytes, fmt: str, samples: int, fraction: float) -> int:
    """Bytes the buffer keeps of one audio member cut to `samples` at `fraction` (what
    `SampleParser.audio_window` keeps: a WAV byte slice, the FLAC frames covering the window)."""
    if fmt == "wav":
        return len(crop_pcm16_wav(member, samples, fraction))
    window = crop_flac_window(member, samples, fraction)
    return len(window[0]) if window else len(member)


def _buffer_bytes(members: list[dict], fmt: str, crop_s: float) -> dict:
    """Mean bytes a buffered sample holds: one face JPEG + the whole audio member (`clip`), its
    crop (`crop`) or a window of `WINDOW_FACTORS` x the crop (`window`); x 4,200 samples in GB, and
    the widest window (0.25 s steps) that keeps 4,200 samples within `GOAL_GB`."""
    face = statistics.mean(len(m["f0.jpg"]) for m in members)
    whole = statistics.mean(len(m[fmt]) for m in members)

    def audio(seconds: float) -> float:
        return statistics.mean(
            _cut_audio(m[fmt], fmt, int(seconds * SR), (i * 0.618) % 1.0) for i, m in enumerate(members)
        )

    def gb(audio_bytes: float) -> float:
        return round(VOX2_BUFFER * (face + audio_bytes) / 1e9, 3)

    crop = audio(crop_s)
    out = {
        "face_jpeg": round(face),
        "audio_clip": round(whole),
        "audio_crop": round(crop),
        "clip_gb_at_4200": gb(whole),
        "crop_gb_at_4200": gb(crop),
    }
    for f in WINDOW_FACTORS:
        w = audio(f * crop_s)
        out[f"audio_window_{f}x"] = round(w)
        out[f"window_{f}x_gb_at_4200"] = gb(w)
    widest, seconds = None, crop_s
    while seconds <= 9.0 and gb(audio(seconds)) <= GOAL_GB:
        widest, seconds = seconds, seconds + 0.25
    out[f"widest_window_s_within_{GOAL_GB}gb"] = widest  # None: not even the crop fits
    return out


def storage(work: Path) -> dict:
    from pipeline.synth import make_corpus

    corpus = work / "corpus"
    if not corpus.exists():
        make_corpus(
            corpus,
            identities=4,
            videos_per_identity=2,
            clips_per_video=2,
            min_seconds=7.0,
            max_seconds=9.0,
            workers=2,
            progress=False,
        )
    source = _source_bytes(corpus)
    out, runs = {"source_bytes": source}, {}
    for fmt in ("wav", "flac"):
        runs[fmt] = _ingest(corpus, work / f"shards_{fmt}", fmt)
    for fmt, r in runs.items():
        out[fmt] = {
            "shards_over_source": round(r["shard_bytes"] / source, 3),
            "audio_share_of_shards": round(r["audio_bytes"] / r["shard_bytes"], 3),
            "ingest_cpu_ms_per_clip": r["ingest_cpu_ms_per_clip"],
            "clips": r["clips"],
        }
    flac_over_pcm = runs["flac"]["audio_bytes"] / runs["wav"]["audio_bytes"]
    out["flac_over_pcm_audio_bytes"] = round(flac_over_pcm, 3)
    out["flac_over_wav_shard_bytes"] = round(runs["flac"]["shard_bytes"] / runs["wav"]["shard_bytes"], 3)
    out["ingest_cpu_flac_over_wav"] = round(
        runs["flac"]["ingest_cpu_ms_per_clip"] / runs["wav"]["ingest_cpu_ms_per_clip"], 3
    )
    # issue 12's realistic VoxCeleb2 clips: WAV shards 1.10x the source, 97% of it audio; the
    # same shards with FLAC audio at the ratio measured here:
    out["projected_vox2_flac_shards_over_source"] = round(1.10 * (0.03 + 0.97 * flac_over_pcm), 3)
    out["buffer"] = {
        f"{fmt}_{crop}s": _buffer_bytes(runs[fmt]["members"], fmt, crop)
        for fmt in ("wav", "flac")
        for crop in (2.0, 4.0)
    }
    return out


# ------------------------------------------------------------------------------ learning
# train.seed per `--seeds` entry (the tuple stream's data.seed follows it); entry 0 is exactly the
# end-to-end test's run (demo.yaml's seed)
LEARN_SEEDS = {i: 25 + i for i in range(16)}


def _learn_mode(mode: str) -> list[str]:
    """`clip`, `crop` or `window:SECONDS` -> data overrides for train.py."""
    if mode in ("clip", "crop"):
        return [f"data.buffer_audio={mode}"]
    if mode.startswith("window:"):
        return ["data.buffer_audio=window", f"data.buffer_window_seconds={float(mode.split(':', 1)[1])}"]
    raise SystemExit(f"--learn takes clip, crop or window:SECONDS, got {mode!r}")


def _learn_data(work: Path) -> Path:
    """The end-to-end test's corpus and shards (same make_corpus and ingest arguments), built once."""
    import subprocess
    import sys

    from pipeline.synth import make_corpus

    corpus, shards = work / "e2e_corpus", work / "e2e_shards"
    if (shards / "done").exists():
        return shards
    shutil.rmtree(corpus, ignore_errors=True)
    shutil.rmtree(shards, ignore_errors=True)
    make_corpus(corpus, **e2e_config.CORPUS, workers=2, progress=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    for dataset in ("voxceleb1", "voxceleb2"):
        ingest = e2e_config.ingest_args(corpus, shards, dataset)
        subprocess.run([sys.executable, *ingest], cwd=ROOT, env=env, check=True)
    (shards / "done").write_text("")
    return shards


def _voice_uses(shards: Path, epochs: int = 3) -> dict:
    """How often one sample's voice is decoded per epoch in the end-to-end configuration (v2f:
    voices are the anchors). A fresh crop per use (`clip`, `window`) only differs from one crop per
    sample and epoch (`crop`) for samples used more than once in an epoch."""
    from collections import Counter

    cfg = dict(
        shards=[f"{shards}/voxceleb1/train", f"{shards}/voxceleb2/train"],
        direction="v2f", k=2, batch_size=20, face_size=64, crop_seconds=2.0, buffer_size=200,
        num_workers=2, seed=LEARN_SEEDS[0], decode_workers="threads",
    )  # fmt: skip
    out = []
    with TupleLoader(cfg) as loader:
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            uses: Counter[str] = Counter()
            for batch in loader:
                uses.update(batch["anchor_key"])
            out.append({"voice_uses": sum(uses.values()), "samples": len(uses), "max_uses": max(uses.values())})
    return {"epochs": out, "samples_in_the_training_shards": loader.catalog.total_samples}


def learning(work: Path, modes: list[str], seeds: list[int], out_path: Path) -> dict:
    """Train the end-to-end test's configuration once per mode and seed; merge into `out_path`."""
    import subprocess
    import sys

    from launch.logging_utils import read_log

    shards = _learn_data(work)
    result = json.loads(out_path.read_text()) if out_path.exists() else {"runs": {}}
    result["voice_uses_per_sample_and_epoch"] = _voice_uses(shards)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    for seed in seeds:
        train_seed = LEARN_SEEDS[seed]
        for mode in modes:
            run_dir = work / "runs" / f"{mode.replace(':', '')}_s{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            cmd = [
                sys.executable,
                *e2e_config.train_args(shards, run_dir),
                f"train.seed={train_seed}",
                *_learn_mode(mode),
            ]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"training {mode} seed {seed} failed:\n{proc.stderr[-3000:]}")
            rows = read_log(run_dir / "train_log.jsonl", event=None)
            vals = [r["val/acc_1:2"] for r in rows if r["event"] == "val"]
            result["runs"][f"{mode}/seed{seed}"] = {
                "mode": mode,
                "seed": seed,
                "train_seed": train_seed,
                "last_val_acc_1:2": round(vals[-1], 4),
                "best_val_acc_1:2": round(max(vals), 4),
                "val_acc_1:2": [round(v, 4) for v in vals],
                "wall_s": round(time.perf_counter() - t0, 1),
                "load_avg_end": os.getloadavg(),
            }
            print(json.dumps(result["runs"][f"{mode}/seed{seed}"]), flush=True)
            out_path.write_text(json.dumps(result, indent=1) + "\n")  # after every run: nothing lost
    summarise_learning(result)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def summarise_learning(result: dict) -> None:
    """Per mode: last validation accuracy over its seeds (mean, SD, range), and the difference to
    `clip` paired by seed (the same seed trains on the same tuples in every mode, so pairing
    removes most of the run-to-run spread): mean, standard error, t."""
    acc: dict[str, dict[int, float]] = {}
    for r in result["runs"].values():
        acc.setdefault(r["mode"], {})[r["seed"]] = r["last_val_acc_1:2"]
    result["summary_last_val"] = {
        m: {
            "runs": len(v),
            "mean": round(statistics.mean(v.values()), 4),
            "sd": round(statistics.stdev(v.values()), 4) if len(v) > 1 else None,
            "min": min(v.values()),
            "max": max(v.values()),
        }
        for m, v in sorted(acc.items())
    }
    paired = {}
    for m, v in sorted(acc.items()):
        seeds = sorted(set(v) & set(acc.get("clip", {})))
        if m == "clip" or len(seeds) < 2:
            continue
        diffs = [v[s] - acc["clip"][s] for s in seeds]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5
        paired[m] = {
            "seeds": len(seeds),
            "mean": round(statistics.mean(diffs), 4),
            "se": round(se, 4),
            "t": round(statistics.mean(diffs) / se, 2) if se else None,
        }
    result["paired_difference_vs_clip"] = paired


# ------------------------------------------------------------------------------ loader timing
def _time_loader(cfg: dict, batches: int) -> dict:
    """Tuples/s and CPU per batch of the consuming process and of its decode workers (timed after
    WARMUP batches)."""
    with TupleLoader(cfg) as loader:
        it = iter(loader)
        for _ in range(WARMUP):
            next(it)
        tree0, main0, t0 = tree_cpu_seconds(), time.process_time(), time.perf_counter()
        tuples = sum(len(next(it)["label"]) for _ in range(batches))
        wall, main = time.perf_counter() - t0, time.process_time() - main0
        tree = tree_cpu_seconds() - tree0
        report = loader.report()
        held = [_held_bytes(s) for s in loader.buffer.fifo()]
    return {
        "tuples_per_s": tuples / wall,
        "main_cpu_ms_per_batch": 1000 * main / batches,
        "worker_cpu_ms_per_batch": 1000 * (tree - main) / batches,
        "cpu_ms_per_tuple": 1000 * tree / tuples,
        "worker_batches": report["decode_worker_batches"],
        "buffer_bytes_per_sample": statistics.mean(held),
        "buffer_member_bytes_per_sample": report["buffer_encoded_bytes"] / max(1, report["buffer_samples"]),
    }


def _held_bytes(sample) -> int:
    """What one buffered sample holds in the consuming process: the `Sample` object, its field
    values (keys, identity strings, member bytes, location tuples) and, read by reference, its
    `MemberRefs` (the shard path string counted in full although samples share it)."""
    seen: set[int] = set()

    def size(obj) -> int:
        if obj is None or id(obj) in seen:
            return 0
        seen.add(id(obj))
        n = sys.getsizeof(obj)
        if isinstance(obj, tuple):
            n += sum(size(x) for x in obj)
        return n

    return size(sample) + size(sample.__dict__) + sum(size(v) for v in vars(sample).values())


def _median(runs: list[dict]) -> dict:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        out[key] = round(statistics.median(values), 3) if isinstance(values[0], (int, float)) else values[-1]
    return out


def _shards(work: Path, fmt: str, n_ids: int, face_size: int = 112) -> str:
    spec = SyntheticSpec(
        num_identities=n_ids,
        videos_per_identity=3,
        clips_per_video=2,
        num_faces=2,
        face_size=face_size,
        seconds=(7.0, 9.0),
        shard_samples=60,
        audio_format=fmt,
    )
    return str(make_shard_set(work / f"loader_{fmt}_{face_size}", spec))


def _base_cfg(shards: str, *, buffer_audio: str, member_reads: str, **kw) -> dict:
    """The loader configuration every timing shares. `buffer_audio` and `member_reads` are named
    by every caller: their defaults changed over time, and a configuration must never silently
    measure another buffer or another reader."""
    cfg = dict(
        buffer_audio=buffer_audio,
        member_reads=member_reads,
        shards=[shards],
        batch_size=50,
        k=2,
        buffer_size=300,
        crop_seconds=2.0,
        num_workers=2,
        prefetch=2,
        seed=0,
        decode_workers="processes",
        steps_per_epoch=10_000,
    )
    cfg.update(kw)
    return cfg


def loader_audio(work: Path, repeats: int, batches: int) -> dict:
    sets = {fmt: _shards(work, fmt, 60) for fmt in ("wav", "flac")}
    stream = dict(member_reads="stream")  # the buffer holds the bytes: what the buffer modes change
    configs = {
        "wav_clip (before)": _base_cfg(sets["wav"], buffer_audio="clip", **stream),
        "wav_crop": _base_cfg(sets["wav"], buffer_audio="crop", **stream),
        "wav_window": _base_cfg(sets["wav"], buffer_audio="window", buffer_window_seconds=3.0, **stream),  # 1.5 x
        "flac_clip": _base_cfg(sets["flac"], buffer_audio="clip", **stream),
        "flac_crop": _base_cfg(sets["flac"], buffer_audio="crop", **stream),
        "flac_window": _base_cfg(sets["flac"], buffer_audio="window", buffer_window_seconds=3.0, **stream),
        # the default since: the buffer holds locations, the decode workers read the members
        "wav_clip_member_reads_workers": _base_cfg(sets["wav"], buffer_audio="clip", member_reads="workers"),
        "flac_clip_member_reads_workers": _base_cfg(sets["flac"], buffer_audio="clip", member_reads="workers"),
    }
    runs = {name: [] for name in configs}
    for _ in range(repeats):  # interleaved, so load changes hit every configuration alike
        for name, cfg in configs.items():
            runs[name].append(_time_loader(cfg, batches))
    out = {name: _median(r) for name, r in runs.items()}
    before = out["wav_clip (before)"]
    for r in out.values():
        r["tuples_per_s_vs_before"] = round(r["tuples_per_s"] / before["tuples_per_s"], 3)
        r["cpu_per_tuple_vs_before"] = round(r["cpu_ms_per_tuple"] / before["cpu_ms_per_tuple"], 3)
        r["main_cpu_vs_before"] = round(r["main_cpu_ms_per_batch"] / before["main_cpu_ms_per_batch"], 3)
        r.update(_projection(r, 8, 50))
    for name, r in out.items():  # against `clip` (stream reads) on the same members: what the mode alone costs
        clip = out["wav_clip (before)" if name.startswith("wav") else "flac_clip"]
        r["tuples_per_s_vs_clip"] = round(r["tuples_per_s"] / clip["tuples_per_s"], 3)
        r["cpu_per_tuple_vs_clip"] = round(r["cpu_ms_per_tuple"] / clip["cpu_ms_per_tuple"], 3)
        r["main_cpu_vs_clip"] = round(r["main_cpu_ms_per_batch"] / clip["main_cpu_ms_per_batch"], 3)
    return out


def _projection(r: dict, workers: int, batch: int, prefetch: int = 2) -> dict:
    """Tuples/s with `workers` decode processes on enough cores: the consuming process is serial,
    the workers share the decoding; before this change only 1 + prefetch batches were in flight,
    so at most that many workers had work."""
    main, work = r["main_cpu_ms_per_batch"] / 1000, r["worker_cpu_ms_per_batch"] / 1000
    now = batch / max(main, work / workers)
    before = batch / max(main, work / min(workers, 1 + prefetch))
    return {
        f"projected_tuples_per_s_{workers}_workers": round(now),
        f"projected_tuples_per_s_{workers}_workers_old_in_flight": round(before),
    }


def workers(work: Path, repeats: int, batches: int) -> dict:
    """1 vs 2 decode workers on the default sizes (112 px faces, 2 s crops) and on the paper
    presets' (224 px faces, 4 s crops), FLAC shards, the default whole-clip buffer, with the
    default `member_reads: workers` (setup names as before) and with `stream` (suffixed)."""
    sets = {"112px_2s": (_shards(work, "flac", 60), 2.0), "224px_4s (paper)": (_shards(work, "flac", 60, 224), 4.0)}
    setups = {
        (f"{name}{'' if reads == 'workers' else STREAM_SUFFIX}"): (shards, crop, reads)
        for name, (shards, crop) in sets.items()
        for reads in ("workers", "stream")
    }
    configs = {
        (name, n): _base_cfg(
            shards, num_workers=n, read_streams=2, crop_seconds=crop, buffer_audio="clip", member_reads=reads
        )
        for name, (shards, crop, reads) in setups.items()
        for n in (1, 2)
    }
    runs = {key: [] for key in configs}
    for _ in range(repeats):
        for key, cfg in configs.items():
            runs[key].append(_time_loader(cfg, batches))
    out = {}
    for name in setups:
        one, two = _median(runs[(name, 1)]), _median(runs[(name, 2)])
        # per-worker figures: worker CPU per batch from the 1-worker run (no second worker on
        # the cores), the consuming process's CPU per batch from the 2-worker run
        per = {
            "main_cpu_ms_per_batch": two["main_cpu_ms_per_batch"],
            "worker_cpu_ms_per_batch": one["worker_cpu_ms_per_batch"],
        }
        out[name] = {
            "workers_1": one,
            "workers_2": two,
            "speedup_2_over_1": round(two["tuples_per_s"] / one["tuples_per_s"], 3),
            "projection": {"inputs": per, **_projection(per, 8, 50)},
        }
    for name in sets:  # what reading the members in the workers changes, per setup
        new, old = out[name]["workers_2"], out[name + STREAM_SUFFIX]["workers_2"]
        out[name]["member_reads_workers_over_stream"] = {
            k: round(new[k] / old[k], 3)
            for k in ("main_cpu_ms_per_batch", "worker_cpu_ms_per_batch", "cpu_ms_per_tuple", "buffer_bytes_per_sample")
        }
    return out


STREAM_SUFFIX = " (member_reads: stream)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("audio", "workers", "learning", "all"), default="all")
    p.add_argument("--learn", nargs="+", default=["clip", "crop", "window:2.5"], help="learning: buffer modes")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], choices=sorted(LEARN_SEEDS), help="learning")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", type=int, default=20, help="timed batches of 50 tuples per run")
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_loader_scale_"))
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_start": os.getloadavg()}
    settings = {
        "batch_size": 50,
        "k": 2,
        "crop_seconds": 2.0,
        "face_size": 112,
        "clip_seconds": [7, 9],
        "buffer_size": 300,
        "prefetch": 2,
        "repeats": args.repeats,
        "timed_batches": args.batches,
    }
    if args.part in ("audio", "all"):
        result = {
            "machine": machine,
            "settings": settings,
            "storage": storage(work),
            "loader": loader_audio(work, args.repeats, args.batches),
        }
        result["machine"]["load_avg_end"] = os.getloadavg()
        (ROOT / "benchmarks" / "results" / "loader_audio.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
    if args.part == "learning":  # not in `all`: it trains for minutes per run
        out = ROOT / "benchmarks" / "results" / "loader_audio_learning.json"
        print(json.dumps(learning(work, args.learn, args.seeds, out)["summary_last_val"], indent=1))
    if args.part in ("workers", "all"):
        result = {
            "machine": {**machine, "load_avg_start": os.getloadavg()},
            "settings": settings,
            **workers(work, args.repeats, args.batches),
        }
        result["machine"]["load_avg_end"] = os.getloadavg()
        (ROOT / "benchmarks" / "results" / "loader_workers.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
