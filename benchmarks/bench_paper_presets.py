"""Do the paper presets train? Short runs of each preset at Table I's learning rates and scaled down.

    python benchmarks/bench_paper_presets.py                     # about 20 minutes on 2 cores
    python benchmarks/bench_paper_presets.py --presets baseline_v2f aicanet_v2f bianet_v2f \
        --scales 0.1 0.02 --steps 450 --out benchmarks/results/paper_presets_450.json   # 11 minutes

Why: AICANet Table I gives Adam rates of 5e-2 for the encoders and the classifier (5e-3 for the
rest); the authors' code applied its x0.1 decay at epoch 0, so it trained at a tenth of that
(docs/REFERENCES.md#a8). The presets keep Table I in `optim.lr` and choose `optim.lr_scale`; this
benchmark measures which scale trains.

Each run is the real CLI (`launch/train.py --config launch/configs/<preset>.yaml`) with reduced
sizes, stated in the JSON: the tiny backbones of `models.TINY` at random init (no ImageNet weights
on this machine), attention width 32, CBP 512, 64 px faces, 2-s voices, batch 24, `--steps`
optimiser steps, on the synthetic corpus of `bench_reproduce.py` (built if missing). Everything
else is the preset's: losses, loss weights, Adam betas, weight decay, the per-module rate ratios.
Reported per run: whether every logged loss stayed finite, the first and last logged matching
loss (`loss/cls`), and the validation metric at the end (1:2 accuracy, or AUC for K = 1),
computed in eval mode (BatchNorm running statistics: where Table I's rates leave them behind the
weights, eval-mode scores blow up; docs/MODELS.md "Numerics").

Results: benchmarks/results/paper_presets.json (and .md): every preset finite at every scale, none
out of chance after 150 steps; paper_presets_450.json: after 450 steps only lr_scale 0.02 learns
(the presets' default, docs/TRAINING.md).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import models

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRESETS = [
    "baseline_v2f",
    "aicanet_v2f",
    "bianet_v2f",
    "baseline_f2v",
    "aicanet_f2v",
    "bianet_f2v",
    "aicanet_v2f_k10",
    "bianet_v2f_k1",
]
SIZES = {**models.TINY, "attn_channels": 32, "cbp_dim": 512}


def ensure_data(work: Path) -> Path:
    shards = work / "shards"
    if not (shards / "voxceleb1" / "val" / "eval.zarr").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_reproduce.py"), "--work", str(work), "--data-only"],
            check=True,
            cwd=ROOT,
        )
    return shards


def one_run(preset: str, scale: float, steps: int, shards: Path, work: Path) -> dict:
    out = work / "presets" / f"{preset}-x{scale:g}"
    if out.exists():
        shutil.rmtree(out)
    name = preset.split("_")[0]
    sizes = [f"model.{k}={json.dumps(v)}" for k, v in SIZES.items() if k in models.DEFAULTS[name]]
    cmd = [
        sys.executable,
        "launch/train.py",
        "--config",
        f"launch/configs/{preset}.yaml",
        f"data.shards=[{shards / 'voxceleb1/train'},{shards / 'voxceleb2/train'}]",
        f"train.val_data={shards / 'voxceleb1/val'}",
        f"train.output_dir={out}",
        f"train.max_steps={steps}",
        "train.log_every=10",
        "train.progress=false",
        "train.log_with=[]",
        "train.val_min_trials=250",
        "data.batch_size=24",
        "data.face_size=64",
        "data.crop_seconds=2.0",
        "data.num_workers=2",
        "data.buffer_size=240",
        "model.face_pretrained=null",
        "train.mixed_precision=no",
        f"optim.lr_scale={scale}",
        *sizes,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log_path = out / "train_log.jsonl"
    rows = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    train = [r for r in rows if r.get("event") == "train"]
    vals = [r for r in rows if r.get("event") == "val"]
    losses = [v for r in train for k, v in r.items() if k.startswith("loss/")]
    metric = None
    if vals:
        key = next(k for k in vals[-1] if k == "val/auc" or (k.startswith("val/acc_1:") and k.count("/") == 1))
        metric = {"name": key, "value": vals[-1][key]}
    return {
        "preset": preset,
        "lr_scale": scale,
        "steps": train[-1]["step"] if train else 0,
        "exit_code": proc.returncode,
        "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else None,
        "finite": bool(losses) and all(math.isfinite(v) for v in losses),
        "loss_cls_first": train[0]["loss/cls"] if train else None,
        "loss_cls_last": train[-1]["loss/cls"] if train else None,
        "val": metric,
        "seconds": round(seconds, 1),
    }


def markdown(runs: list[dict], steps: int) -> str:
    lines = [
        f"Short runs ({steps} steps, reduced sizes) of the paper presets at Table I's rates x lr_scale.",
        "",
        "| preset | lr_scale | finite | loss/cls first -> last | validation (eval mode) | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        loss = "-" if r["loss_cls_first"] is None else f"{r['loss_cls_first']:.3f} -> {r['loss_cls_last']:.3f}"
        val = "-" if r["val"] is None else f"{r['val']['name'].split('/')[-1]} {r['val']['value']:.3f}"
        note = r["error"] or ""
        lines.append(
            f"| {r['preset']} | {r['lr_scale']:g} | {'yes' if r['finite'] else 'NO'} | {loss} | {val} | {note} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work", default=str(ROOT / "data" / "bench_reproduce"), help="cache folder (shared with bench_reproduce.py)"
    )
    parser.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 0.1, 0.02])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "paper_presets.json"))
    args = parser.parse_args()
    work = Path(args.work)
    shards = ensure_data(work)
    runs = []
    for preset in args.presets:
        for scale in args.scales:
            print(f"{preset} x{scale:g}", flush=True)
            runs.append(one_run(preset, scale, args.steps, shards, work))
            print(f"  -> {runs[-1]}", flush=True)
    report = {
        "steps": args.steps,
        "sizes": SIZES,
        "batch_size": 24,
        "face_pretrained": None,
        "machine": platform.machine(),
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    md = markdown(runs, args.steps)
    Path(args.out).with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
