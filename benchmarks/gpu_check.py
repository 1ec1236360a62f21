"""The first-GPU check of the training path, as one JSON (run by benchmarks/gpu_check.sh).

    python benchmarks/gpu_check.py --device cuda --steps 200 --out benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --steps 2 --out /tmp/gpu_check.json   # CPU smoke mode

Checks, each a section of the JSON plus one entry of ``pass``:

- ``decode``: DALI ``mixed`` (nvJPEG; ``cpu`` backend in smoke mode) vs the loader's CPU decoder
  (``shards.decode.decode_face``, libjpeg-turbo) on synthetic faces: mean / p99 / max absolute
  difference in 8-bit levels. Passes when the mean is <= ``DECODE_MEAN_TOLERANCE`` (nvJPEG and
  libjpeg-turbo are different IDCT / upsampling implementations; about one level is expected).
- ``recovery``: a batch with a corrupt JPEG makes the raw DALI decoder raise; through the
  loader's ``GuardedFaceDecoder`` that batch decodes on the CPU (the bad item reported) and the
  next good batch decodes with DALI again, equal to before.
- ``loader``: tuples/s of the ``TupleLoader`` with DALI faces (threads) vs PIL (worker
  processes) on the same synthetic shards, the same plan (indices equal), pixel difference.
- ``train``: ``launch/train.py`` runs of AICANet and BIANet for ``--steps`` optimiser steps on
  the device (bf16 on CUDA), every logged loss finite, tuples/s, peak memory and, on CUDA, GPU
  utilisation sampled with ``nvidia-smi``; then the same on CPU for a few steps: tuples/s device vs
  CPU. On CUDA the paper backbones (ResNet-18 / SE-ResNet-34, 112 px faces) are used, in smoke
  mode the tiny ones (and the device run is the CPU run).

Nothing here needs a GPU to import; ``--device cpu`` runs every check on CPU in seconds so the
script is tested without one (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

DECODE_MEAN_TOLERANCE = 1.5  # 8-bit levels, mean |DALI - libjpeg-turbo| over all pixels
MODELS = ("aicanet", "bianet")


def synthetic_jpegs(n: int, size: int, seed: int = 0) -> list[bytes]:
    from shards.testing import face_jpeg

    rng = np.random.default_rng(seed)
    return [face_jpeg(i % 50, i, size, rng) for i in range(n)]


def pixel_difference(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"mean_abs": float(d.mean()), "p99_abs": float(np.quantile(d, 0.99)), "max_abs": int(d.max())}


def dali_device(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


def check_decode(device: str, n: int = 256, size: int = 112) -> dict:
    from shards.dali_decode import DaliFaceDecoder
    from shards.decode import decode_face

    jpegs = synthetic_jpegs(n, size)
    decoder = DaliFaceDecoder(dali_device(device), max_batch_size=128, num_threads=4)
    decoder(jpegs)  # warm-up (nvJPEG handles, pinned buffers)
    sync(device)
    t0 = time.perf_counter()
    pixels = decoder(jpegs)
    sync(device)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = np.stack([decode_face(b) for b in jpegs])
    cpu_seconds = time.perf_counter() - t0
    out = {
        "backend": "mixed" if device == "cuda" else "cpu",
        "output_device": str(pixels.device),
        "images": n,
        "size": size,
        **pixel_difference(pixels.cpu().numpy(), reference),
        "dali_images_per_s": n / seconds,
        "cpu_images_per_s": n / cpu_seconds,
        "tolerance_mean_abs": DECODE_MEAN_TOLERANCE,
    }
    out["within_tolerance"] = out["mean_abs"] <= DECODE_MEAN_TOLERANCE
    return out


def check_recovery(device: str) -> dict:
    from shards.dali_decode import DaliFaceDecoder, GuardedFaceDecoder
    from shards.decode import decode_face
    from shards.stream import BadSample

    good = synthetic_jpegs(16, 64, seed=1)
    corrupt = good[:7] + [b"\xff\xd8\xff\xe0 not a jpeg" * 9] + good[8:]
    raw = DaliFaceDecoder(dali_device(device), max_batch_size=32, num_threads=2)
    first = raw(good).cpu()
    try:
        raw(corrupt)
        raw_raised = None
    except Exception as exc:  # noqa: BLE001 - what DALI raises is what we report
        raw_raised = f"{type(exc).__name__}: {str(exc)[:160]}"
    try:
        raw_next_equal = bool(torch.equal(raw(good).cpu(), first))
    except Exception as exc:  # noqa: BLE001
        raw_next_equal = f"raised {type(exc).__name__}: {str(exc)[:160]}"

    def cpu_decode(jpegs):
        def one(item):
            try:
                return decode_face(item[1], f"item{item[0]}")
            except BadSample as exc:
                return exc

        return lambda: [one(item) for item in enumerate(jpegs)]

    kind = "dali-gpu" if device == "cuda" else "dali-cpu"
    guard = GuardedFaceDecoder(
        kind, forced=True, build=lambda: DaliFaceDecoder(dali_device(device), max_batch_size=32, num_threads=2)
    )
    bad_faces, bad_by_dali = guard.decode(corrupt, cpu_decode(corrupt))
    next_faces, next_by_dali = guard.decode(good, cpu_decode(good))
    next_equal = next_by_dali and bool(torch.equal(torch.stack([f.cpu() for f in next_faces]), first))
    return {
        "raw_corrupt_batch_raised": raw_raised,
        "raw_next_good_batch_equal": raw_next_equal,
        "guarded_corrupt_batch_by_dali": bad_by_dali,
        "guarded_bad_items": [i for i, f in enumerate(bad_faces) if isinstance(f, Exception)],
        "guarded_next_batch_by_dali_and_equal": next_equal,
        "guarded_restarts": guard.restarts,
        "ok": raw_raised is not None
        and not bad_by_dali
        and next_equal
        and [i for i, f in enumerate(bad_faces) if isinstance(f, Exception)] == [7],
    }


def make_shards(root: Path, face_size: int, identities: int = 40) -> Path:
    from shards.testing import SyntheticSpec, make_shard_set

    out = root / "voxceleb2" / "train"
    if (out / "index.json").exists():
        return out
    spec = SyntheticSpec(
        num_identities=identities,
        videos_per_identity=3,
        clips_per_video=2,
        num_faces=2,
        face_size=face_size,
        seconds=(2.0, 4.0),
        shard_samples=32,
        seed=7,
    )
    return make_shard_set(out, spec)


def loader_cfg(shards: Path, face_size: int, batches: int, workers: int = 4) -> dict:
    return {
        "shards": [str(shards)],
        "k": 2,
        "batch_size": 24,
        "face_size": face_size,
        "crop_seconds": 2.0,
        "buffer_size": 120,
        "num_workers": workers,
        "steps_per_epoch": batches,
        "seed": 25,
    }


def check_loader(device: str, shards: Path, face_size: int, batches: int) -> dict:
    from shards.loader import TupleLoader

    out, first = {}, {}
    for name, face_decoder in (("dali_threads", "dali"), ("pil_processes", "pil")):
        workers = 4 if device == "cuda" else 2
        with TupleLoader(
            {**loader_cfg(shards, face_size, batches, workers), "face_decoder": face_decoder}, device=device
        ) as loader:
            it = iter(loader)
            first[name] = [next(it) for _ in range(min(2, batches))]  # warm-up: workers, DALI, caches
            sync(device)
            t0 = time.perf_counter()
            tuples = sum(len(b["label"]) for b in it)
            sync(device)
            seconds = time.perf_counter() - t0
            report = loader.report()
        out[name] = {
            "tuples_per_s": tuples / max(seconds, 1e-9),
            "tuples": tuples,
            **{k: report.get(k) for k in ("face_decoder", "decode_workers", "dali_fallback_batches")},
        }
    pairs = list(zip(first["dali_threads"], first["pil_processes"]))
    out["same_plan"] = all(
        torch.equal(a[k].cpu(), b[k].cpu()) for a, b in pairs for k in ("anchor_index", "candidate_index", "label")
    )
    out["faces_max_abs"] = max(float((a["faces"].cpu() - b["faces"].cpu()).abs().max()) for a, b in pairs)
    out["batch_devices"] = sorted({str(v.device) for a, _ in pairs for v in a.values() if torch.is_tensor(v)})
    out["dali_vs_pil_speed"] = out["dali_threads"]["tuples_per_s"] / max(out["pil_processes"]["tuples_per_s"], 1e-9)
    out["ok"] = (
        out["same_plan"]
        and out["dali_threads"]["dali_fallback_batches"] == 0
        and out["dali_threads"]["face_decoder"] == ("dali-gpu" if device == "cuda" else "dali-cpu")
    )
    return out


def train_config(shards: Path, run_dir: Path, model: str, device: str, steps: int, full: bool) -> dict:
    model_cfg = {"name": model}
    if full:  # the papers' backbones at 112 px faces
        model_cfg.update(face_backbone="resnet18", voice_backbone="seresnet34", generator_hidden=256)
    else:
        model_cfg.update(
            face_backbone="tiny",
            voice_backbone="tiny",
            generator_hidden=64,
            embed_dim=32,
            attn_channels=16,
            **({"cbp_dim": 128} if model == "aicanet" else {}),
        )
    return {
        "data": {
            **loader_cfg(shards, 112 if full else 32, steps, 4 if full else 2),
            "direction": "both",
            **({"face_decoder": "pil"} if device == "cpu" else {}),
        },
        "model": model_cfg,
        "optim": {"milestones": [1000]},
        "train": {
            "epochs": 1,
            "max_steps": steps,
            "output_dir": str(run_dir),
            "device": device,
            "mixed_precision": "bf16" if device == "cuda" else "no",
            "log_every": max(1, min(20, steps)),
            "progress": False,
            "log_with": [],
            "val_data": None,
        },
    }


class GpuSampler:
    """``nvidia-smi`` utilisation / memory samples every 250 ms while a run trains (CUDA only)."""

    def __init__(self, enabled: bool):
        self.samples: list[tuple[float, float]] = []
        self._proc = None
        if enabled:
            self._proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "250",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()

    def _read(self):
        for line in self._proc.stdout:
            parts = line.strip().split(",")
            if len(parts) == 2:
                try:
                    self.samples.append((float(parts[0]), float(parts[1])))
                except ValueError:
                    pass

    def stop(self) -> dict:
        if self._proc is None:
            return {}
        self._proc.terminate()
        self._proc.wait(timeout=10)
        busy = [u for u, _ in self.samples if u > 0]
        return {
            "gpu_util_mean": float(np.mean([u for u, _ in self.samples])) if self.samples else None,
            "gpu_util_mean_busy": float(np.mean(busy)) if busy else None,
            "smi_samples": len(self.samples),
            "smi_peak_mem_mib": max((m for _, m in self.samples), default=None),
        }


def run_training(cfg: dict, log_path: Path, timeout: int, sample_gpu: bool) -> dict:
    import yaml

    from launch.logging_utils import read_log

    run_dir = Path(cfg["train"]["output_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "gpu_check.yaml"
    config.write_text(yaml.safe_dump(cfg))
    sampler = GpuSampler(sample_gpu)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run(
                [sys.executable, str(ROOT / "launch" / "train.py"), "--config", str(config)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            ).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    wall = time.perf_counter() - t0
    gpu = sampler.stop()
    log_file = run_dir / "train_log.jsonl"
    rows = read_log(log_file, None) if log_file.exists() else []
    train_rows = [r for r in rows if r.get("event") == "train"]
    steady = train_rows[1:] or train_rows  # the first window holds start-up (cuDNN tuning, workers)
    start = next((r for r in rows if r.get("event") == "start"), {})
    losses = [v for r in train_rows for k, v in r.items() if k.startswith("loss/")]
    return {
        "rc": rc,
        "wall_s": wall,
        "steps": train_rows[-1]["step"] if train_rows else 0,
        "device": start.get("device"),
        "mixed_precision": start.get("mixed_precision"),
        "losses_finite": bool(losses) and all(math.isfinite(v) for v in losses),
        "last_loss_total": train_rows[-1].get("loss/total") if train_rows else None,
        "tuples_per_s": float(np.mean([r["tuples_per_s"] for r in steady])) if steady else None,
        "loader_share": float(np.mean([r["loader_share"] for r in steady])) if steady else None,
        "peak_alloc_gb": max((r.get("gpu_mem_gb", 0.0) for r in train_rows), default=None) if sample_gpu else None,
        "face_decoder": train_rows[-1].get("loader/face_decoder") if train_rows else None,
        "dali_fallback_batches": train_rows[-1].get("loader/dali_fallback_batches") if train_rows else None,
        **gpu,
    }


def check_training(device: str, shards: Path, work: Path, steps: int, cpu_steps: int, full: bool, timeout: int) -> dict:
    """``on_device``: ``steps`` steps on ``device``; ``on_cpu``: ``cpu_steps`` on CPU, same config."""
    out = {}
    for model in MODELS:
        runs = {}
        plan = [("on_device", device, steps)] + ([("on_cpu", "cpu", cpu_steps)] if device != "cpu" else [])
        for label, run_device, run_steps in plan:
            run_dir = work / f"{label}_{model}"
            shutil.rmtree(run_dir, ignore_errors=True)  # this script's own folder: start afresh
            runs[label] = run_training(
                train_config(shards, run_dir, model, run_device, run_steps, full),
                work / f"{label}_{model}.log",
                timeout,
                sample_gpu=run_device == "cuda",
            )
        on_device = runs["on_device"]
        on_cpu = runs.setdefault("on_cpu", on_device)  # smoke mode: the device run is the CPU run
        out[model] = {
            **runs,
            "speedup_vs_cpu": (on_device["tuples_per_s"] or 0) / max(on_cpu["tuples_per_s"] or 0, 1e-9),
            "ok": on_device["rc"] == 0 and on_device["steps"] == steps and on_device["losses_finite"],
        }
    return out


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def attempt(fn, *args) -> dict:
    """Run one check; an exception becomes a failed section with the message, not a lost JSON."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the JSON must say what broke
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:400]}"}


def run(device: str, steps: int, out: Path, work: Path, cpu_steps: int, loader_batches: int, timeout: int) -> dict:
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device (driver? docker --gpus all?)")
    full = device == "cuda"
    face_size = 112 if full else 32
    work.mkdir(parents=True, exist_ok=True)
    shards = make_shards(work / "shards", face_size)
    result = {
        "device": device,
        "steps": steps,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "decode": attempt(check_decode, device),
        "recovery": attempt(check_recovery, device),
        "loader": attempt(check_loader, device, shards, face_size, loader_batches),
        "train": attempt(check_training, device, shards, work, steps, cpu_steps, full, timeout),
    }
    train = result["train"]
    result["pass"] = {
        "decode_within_tolerance": bool(result["decode"].get("within_tolerance")),
        "corrupt_batch_raises_then_recovers": bool(result["recovery"].get("ok")),
        "loader_dali_vs_pil": bool(result["loader"].get("ok")),
        **{f"train_{m}": bool(train.get(m, {}).get("ok")) for m in MODELS},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cuda: the real check; cpu: smoke mode (DALI cpu backend, tiny models)",
    )
    ap.add_argument("--steps", type=int, default=200, help="optimiser steps of each device training run")
    ap.add_argument(
        "--cpu-steps",
        type=int,
        default=None,
        help="steps of the CPU comparison runs (default: 10 with cuda; none in cpu mode)",
    )
    ap.add_argument("--loader-batches", type=int, default=None, help="batches per loader timing (default 40 / 4)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu_check", help="shards, runs and logs")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per training run")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    cpu_steps = args.cpu_steps or (10 if args.device == "cuda" else args.steps)
    batches = args.loader_batches or (40 if args.device == "cuda" else 4)
    result = run(args.device, args.steps, args.out, args.work, cpu_steps, batches, args.timeout)
    print(json.dumps(result["pass"]), "->", args.out)
    return 0 if all(result["pass"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
