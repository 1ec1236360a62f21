"""Evaluation scoring cost: nested K = 2..10 from one encoding vs one model pass per K.

Both runs score the *same* trial file with the *same* checkpoint in one process invocation, so the
ratio compares like with like on this (shared, 2-core) machine:

* `per_k`: the simple way, one `ModelScorer.score` call per K (each call builds indexed batches and
  runs `model.predict`, or the embedding path where the head does not fit K), so the backbones see
  every item once per K;
* `nested`: `ModelScorer.score_nested`, one `model.encode` per chunk of trials for all K, then
  `embed` + `score` per K (launch/eval/scoring.py).

Reported per model: wall seconds, items through each backbone (counted with forward hooks),
the speed-up and item ratios, and the largest absolute score difference (float32 noise only).
Each variant gets a fresh ItemLoader, so preprocessing is included in both.

    python benchmarks/bench_eval_scoring.py            # quick: 12 identities, 4 probes each
    python benchmarks/bench_eval_scoring.py --full     # 24 identities, 10 probes each
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from launch.checkpoint import load_model
from launch.eval.inputs import EvalInputs, ItemLoader
from launch.eval.scoring import ModelScorer
from launch.eval.testing import build_store, tiny_checkpoint
from launch.eval.trials import TrialOptions, generate_for_store
from shards.evalstore import EvalStore

ROOT = Path(__file__).resolve().parents[1]


def count_items(model):
    counts = {"face": 0, "voice": 0}
    hooks = [
        model.face_encoder.register_forward_hook(
            lambda m, i, o: counts.__setitem__("face", counts["face"] + len(i[0]))
        ),
        model.voice_encoder.register_forward_hook(
            lambda m, i, o: counts.__setitem__("voice", counts["voice"] + len(i[0]))
        ),
    ]
    return counts, hooks


def run(model, store, trials, ks, batch_size, nested: bool):
    loader = ItemLoader(store, EvalInputs(audio_seconds=1.0, face_size=64))
    scorer = ModelScorer(model, loader, batch_size=batch_size, progress=False)
    counts, hooks = count_items(model)
    t0 = time.perf_counter()
    out = {}
    for d in ("v2f", "f2v"):
        probes = trials.matching(d, 2)[0]
        cands = {k: trials.matching(d, k)[1] for k in ks}
        if nested:
            res = scorer.score_nested(d, probes, cands)
        else:
            res = {k: scorer.score(d, probes, cands[k]) for k in ks}
        out.update({(d, k): v[0] for k, v in res.items()})
    seconds = time.perf_counter() - t0
    for h in hooks:
        h.remove()
    return seconds, dict(counts), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="larger store and more probes")
    p.add_argument("--models", nargs="+", default=["baseline", "bianet"], help="tiny models to measure")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/eval_scoring.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n_ids, probes = (24, 10) if args.full else (12, 4)
    ks = list(range(2, 11))
    results = {
        "benchmark": "eval_scoring",
        "mode": "full" if args.full else "quick",
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        },
        "setup": {
            "identities": n_ids,
            "probes_per_identity": probes,
            "ks": ks,
            "batch_size": args.batch_size,
            "face_size": 64,
            "audio_seconds": 1.0,
        },
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = EvalStore(
            build_store(tmp / "eval.zarr", n_ids=n_ids, videos=2, clips=2, face_size=64, num_faces=2, seconds=1.5)
        )
        trials = generate_for_store(store, TrialOptions(probes_per_identity=probes), split="bench/test")
        results["setup"]["trials_per_direction"] = len(trials.match["v2f"])
        for name in args.models:
            model = load_model(tiny_checkpoint(tmp / name, name, num_candidates=2))
            t_base, n_base, s_base = run(model, store, trials, ks, args.batch_size, nested=False)
            t_ours, n_ours, s_ours = run(model, store, trials, ks, args.batch_size, nested=True)
            diff = max(float(np.abs(s_base[key] - s_ours[key]).max()) for key in s_base)
            results["models"][name] = {
                "per_k": {"seconds": round(t_base, 3), "items_encoded": n_base},
                "nested": {"seconds": round(t_ours, 3), "items_encoded": n_ours},
                "speedup": round(t_base / t_ours, 2),
                "items_ratio": round((n_base["face"] + n_base["voice"]) / (n_ours["face"] + n_ours["voice"]), 2),
                "max_abs_score_diff": diff,
            }
            print(
                f"{name:>9}: per-K {t_base:6.2f} s, nested {t_ours:6.2f} s -> {t_base / t_ours:4.1f}x faster; "
                f"backbone items {sum(n_base.values())} vs {sum(n_ours.values())}; max |score diff| {diff:.1e}"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
