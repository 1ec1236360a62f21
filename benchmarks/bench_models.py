"""Forward+backward time per tuple of baseline / AICANet / BIANet, side by side, plus parameter counts.

Goal (issue 5): AICANet and BIANet add <= 30 % step time over the baseline at the same config.
Each step is one training forward, ``model.loss`` and one backward of ``total + disc_total`` (what
launch/train.py does; optimiser steps are excluded). The models are timed round-robin, one step
each per round, so a load spike on the shared CPU hits all of them alike.

The CPU is shared with other jobs: single steps were seen to take 1x-10x their undisturbed wall
time. So the default is ONE intra-op thread and the ratio to the baseline is taken on the median
*process CPU time* of a step, which time-sharing does not inflate (with several threads, OpenMP
spin-waiting while a sibling thread is descheduled would). Minimum and median wall times are
stored beside it.

    python benchmarks/bench_models.py                 # --quick default, ~1-3 min on a busy 2-core box
    python benchmarks/bench_models.py --rounds 10 --batch 8
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from models import build_model, from_dense, tiny_overrides

NAMES = ("baseline", "aicanet", "bianet")

CONFIGS = {
    # The paper presets: 224 px faces, ResNet-18 + SE-ResNet-34, 40-mel log-mel of a 4-s crop.
    "paper": {"face": 224, "frames": 401, "model": {}},
    # The CPU demo: 64 px faces, 2-s voices, tiny trunks (models.TINY).
    "tiny": {"face": 64, "frames": 201, "model": "tiny"},
}


def make_batch(batch: int, k: int, face: int, frames: int, direction: str) -> dict:
    g = torch.Generator().manual_seed(0)
    voices = torch.randn(batch if direction == "v2f" else batch * k, 1, 40, frames, generator=g)
    faces = torch.rand(batch * k if direction == "v2f" else batch, 3, face, face, generator=g) * 2 - 1
    if direction == "v2f":
        anchor, cands = voices, faces.view(batch, k, 3, face, face)
    else:
        anchor, cands = faces, voices.view(batch, k, 1, 40, frames)
    return from_dense(anchor, cands, direction, torch.randint(0, k, (batch,), generator=g))


def step(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    out = model(batch)
    terms = model.loss(out, batch, epoch=1.0)
    (terms["total"] + terms["disc_total"]).backward()


def run_config(name: str, spec: dict, args) -> dict:
    models = {}
    for model_name in NAMES:
        torch.manual_seed(0)
        extra = tiny_overrides(model_name) if spec["model"] == "tiny" else dict(spec["model"])
        models[model_name] = build_model({"name": model_name, "num_candidates": args.k, **extra}).train()
    batch = make_batch(args.batch, args.k, spec["face"], spec["frames"], args.direction)
    for model in models.values():  # warm-up: allocator, first-call kernels
        step(model, batch)
    times = {m: [] for m in NAMES}
    cpu = {m: [] for m in NAMES}
    for _ in tqdm(range(args.rounds), desc=f"{name} config", unit="round"):
        for model_name, model in models.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step(model, batch)
            times[model_name].append(time.perf_counter() - t0)
            cpu[model_name].append(time.process_time() - c0)
    base = min(times["baseline"])
    base_med = statistics.median(times["baseline"])
    base_cpu = statistics.median(cpu["baseline"])
    result = {
        "face_size": spec["face"],
        "voice_frames": spec["frames"],
        "n_mels": 40,
        "batch": args.batch,
        "k": args.k,
        "direction": args.direction,
        "models": {},
    }
    for model_name in NAMES:
        best = min(times[model_name])
        med = statistics.median(times[model_name])
        cpu_med = statistics.median(cpu[model_name])
        counts = models[model_name].param_counts()
        result["models"][model_name] = {
            "step_s_min": round(best, 4),
            "step_s_median": round(med, 4),
            "step_s_all": [round(t, 4) for t in times[model_name]],
            "cpu_s_median": round(cpu_med, 4),
            "cpu_ms_per_tuple": round(1000 * cpu_med / args.batch, 2),
            "wall_ms_per_tuple_min": round(1000 * best / args.batch, 2),
            "ratio_to_baseline": round(cpu_med / base_cpu, 3),
            "ratio_to_baseline_min_wall": round(best / base, 3),
            "ratio_to_baseline_median_wall": round(med / base_med, 3),
            "params": counts,
            "params_total": sum(counts.values()),
        }
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="full", action="store_false", help="B=4, 5 rounds (the default, ~1-3 min)")
    size.add_argument("--full", dest="full", action="store_true", help="B=8, 10 rounds (several minutes)")
    parser.set_defaults(full=False)  # argparse took store_false's default (True) from --quick
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(CONFIGS),
        choices=list(CONFIGS),
        help="which configs to time (default: all)",
    )
    parser.add_argument("--batch", type=int, default=None, help="tuples per batch B (quick 4, full 8)")
    parser.add_argument("--k", type=int, default=2, help="candidates per tuple K (default 2)")
    parser.add_argument("--direction", choices=["v2f", "f2v"], default="v2f")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds, one step per model each (quick 5, full 10)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: CPU time is then immune to time-sharing)",
    )
    parser.add_argument("--out", default="benchmarks/results/models.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    args.batch = args.batch or (8 if args.full else 4)
    args.rounds = args.rounds or (10 if args.full else 5)
    torch.set_num_threads(args.threads)
    report = {
        "benchmark": "models forward+backward per tuple",
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": args.threads,
        "rounds": args.rounds,
        "goal": "aicanet and bianet ratio_to_baseline <= 1.30",
        "configs": {},
    }
    for name in args.configs:
        report["configs"][name] = run_config(name, CONFIGS[name], args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'config':8} {'model':9} {'CPU ms/tuple':>13} {'x baseline':>11} {'x base(min wall)':>17} {'params':>12}")
    for name, res in report["configs"].items():
        for model_name, r in res["models"].items():
            print(
                f"{name:8} {model_name:9} {r['cpu_ms_per_tuple']:13.1f} {r['ratio_to_baseline']:11.3f} "
                f"{r['ratio_to_baseline_min_wall']:17.3f} {r['params_total']:12,}"
            )
    ok = all(
        r["ratio_to_baseline"] <= 1.30
        for res in report["configs"].values()
        for m, r in res["models"].items()
        if m != "baseline"
    )
    print(f"goal (<= 1.30 x baseline): {'met' if ok else 'NOT met'}; JSON: {args.out}")
    return report


if __name__ == "__main__":
    main()
