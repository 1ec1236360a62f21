"""Synthetic reproduction of the papers' component ablations: AICANet Table V and BIANet Table 5.

    python benchmarks/bench_reproduce.py                 # about 25 minutes on 2 cores
    python benchmarks/bench_reproduce.py --epochs 4      # a quick look (numbers not meaningful)

What it does, every stage through the user-facing commands:

1. `python -m pipeline.synth`: one synthetic VoxCeleb corpus (default 200 identities per dataset,
   3 videos x 2 clips each, seed 7; faces and voices linked only through gender, age band and
   appearance group, with per-clip nuisance: pose, light, blur, occluders, noise, music, reverb);
2. `python -m pipeline.ingest` of VoxCeleb1 (Wen letter split: 120 train / 30 val / 50 test
   identities) and VoxCeleb2 (150 dev identities, also used for training as in `make demo`);
3. `launch/train.py` once per row: the rows of AICANet Table V (a)-(e) and BIANet Table 5 (a)-(d)
   from `models.ABLATIONS` (the baseline row is shared), on the demo preset with the tiny CPU
   backbones (`models.TINY`: 64 px faces, 2-s 40-mel voices, 128-channel maps; attention width 32,
   CBP 512 instead of the papers' 224 px ResNet-18 / SE-ResNet-34, 128 and 4000), both directions
   (`data.direction=both`: alternate V-F and F-V batches), the same seed and steps for every row;
4. one `python -m launch.evaluate` over all rows on the VoxCeleb1 test identities with the
   authors' trial construction (`--trial-mode authors`, 50 rows per identity, 2,500 per
   direction), Binary V-F and F-V scored by each model's own K = 2 head, with 95 % bootstrap CIs
   over identities;
5. the attribute oracle of the generator (`ground_truth.json`: knows every identity's gender,
   age band and appearance group) as the ceiling.

Writes `benchmarks/results/reproduce.json` and `reproduce.md` (the tables in the papers' layout).
Goals (issue 11): each full model at or above the baseline, and at >= 90 % of the oracle's 1:2
accuracy. Work folders are cached under `--work` (default `data/bench_reproduce`): a re-run
reuses the corpus, the shards and finished trainings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import models

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# (paper table, row label, components, ablation row). Components are the papers' check marks.
TABLES = {
    "AICANet Table V": {
        "columns": ("AIA", "ACA", "L_RDSM"),
        "rows": [
            ("(a)", (), "aicanet_t5_a_baseline"),
            ("(b)", ("L_RDSM",), "aicanet_t5_b_rdsm"),
            ("(c)", ("AIA",), "aicanet_t5_c_aia"),
            ("(d)", ("AIA", "ACA"), "aicanet_t5_d_aia_aca"),
            ("(e)", ("AIA", "ACA", "L_RDSM"), "aicanet_t5_e_full"),
        ],
    },
    "BIANet Table 5": {
        "columns": ("PIA", "NIA"),
        "rows": [
            ("a", (), "aicanet_t5_a_baseline"),  # the same baseline as AICANet's (a)
            ("b", ("PIA",), "bianet_t5_b_pia"),
            ("c", ("NIA",), "bianet_t5_c_nia"),
            ("d", ("PIA", "NIA"), "bianet_t5_d_full"),
        ],
    },
}
# The papers' VoxCeleb1 numbers of the same rows (Binary V-F, F-V), for the side-by-side column.
PAPER = {
    "aicanet_t5_a_baseline": (94.8, 89.8),
    "aicanet_t5_b_rdsm": (96.0, 92.0),
    "aicanet_t5_c_aia": (96.6, 96.9),
    "aicanet_t5_d_aia_aca": (97.2, 97.2),
    "aicanet_t5_e_full": (97.6, 97.3),
    "bianet_t5_b_pia": (96.8, 96.6),
    "bianet_t5_c_nia": (96.6, 93.0),
    "bianet_t5_d_full": (97.3, 96.9),
}
FULL_MODELS = {"AICANet": "aicanet_t5_e_full", "BIANet": "bianet_t5_d_full"}
BASELINE = "aicanet_t5_a_baseline"
SIZES = {**models.TINY, "attn_channels": 32, "cbp_dim": 512}


def run(cmd: list[str], log: Path) -> float:
    """Run a command, its output to `log`; raise with the log's tail on failure; return seconds."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return time.perf_counter() - t0


def build_data(work: Path, identities: int, logs: Path, interference: float = 0.0) -> dict:
    py = sys.executable
    seconds = {}
    corpus, shards = work / "corpus", work / "shards"
    seconds["synth"] = run(
        [
            py,
            "-m",
            "pipeline.synth",
            "--out",
            str(corpus),
            "--identities",
            str(identities),
            "--videos-per-identity",
            "3",
            "--clips-per-video",
            "2",
            "--seed",
            "7",
            "--interference",
            str(interference),
            "--no-progress",
        ],
        logs / "synth.log",
    )
    common = [
        "--out",
        str(shards),
        "--face-size",
        "64",
        "--frames-per-clip",
        "2",
        "--shard-samples",
        "32",
        "--workers",
        "2",
        "--no-progress",
    ]
    seconds["ingest"] = run(
        [
            py,
            "-m",
            "pipeline.ingest",
            "--dataset",
            "voxceleb1",
            "--root",
            str(corpus / "voxceleb1"),
            "--split-preset",
            "wen1251",
            *common,
        ],
        logs / "ingest1.log",
    )
    seconds["ingest"] += run(
        [
            py,
            "-m",
            "pipeline.ingest",
            "--dataset",
            "voxceleb2",
            "--root",
            str(corpus / "voxceleb2"),
            "--split-preset",
            "vox2",
            *common,
        ],
        logs / "ingest2.log",
    )
    return seconds


def row_overrides(row: str) -> list[str]:
    cfg = models.ablation_config(row, **SIZES)
    out = [f"model.{k}={json.dumps(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    return out


def train_row(row: str, work: Path, epochs: float, logs: Path) -> dict:
    out = work / "runs" / row
    done = out / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    if out.exists():
        shutil.rmtree(out)  # an interrupted run: start it again (same seed, same result)
    shards = work / "shards"
    cmd = [
        sys.executable,
        "launch/train.py",
        "--config",
        "launch/configs/demo.yaml",
        f"data.shards=[{shards / 'voxceleb1/train'},{shards / 'voxceleb2/train'}]",
        "data.direction=both",
        f"train.val_data={shards / 'voxceleb1/val'}",
        f"train.output_dir={out}",
        f"train.epochs={epochs}",
        "train.progress=false",
        "train.log_with=[]",
        "train.val_every=3",
        *row_overrides(row),
    ]
    seconds = run(cmd, logs / f"train-{row}.log")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    train_rows = [r for r in log if r.get("event") == "train"]
    vals = [r for r in log if r.get("event") == "val"]
    info = {
        "row": row,
        "seconds": round(seconds, 1),
        "steps": train_rows[-1]["step"],
        "tuples_per_s": round(sum(r["tuples_per_s"] for r in train_rows[1:]) / max(1, len(train_rows) - 1), 1),
        "loss_cls_first": train_rows[0]["loss/cls"],
        "loss_cls_last": train_rows[-1]["loss/cls"],
        "val": [(r["step"], r["val/acc_1:2"]) for r in vals],
    }
    done.write_text(json.dumps(info))
    return info


def evaluate(rows: list[str], work: Path, logs: Path) -> dict:
    out = work / "eval"
    cmd = [
        sys.executable,
        "-m",
        "launch.evaluate",
        "--checkpoint",
        *(str(work / "runs" / r) for r in rows),
        "--names",
        *rows,
        "--data",
        str(work / "shards"),
        "--protocol",
        "wen1251",
        "--trial-mode",
        "authors",
        "--max-k",
        "2",
        "--out",
        str(out),
        "--bootstrap",
        "1000",
        "--no-progress",
    ]
    if (out / "trials" / "test.json").is_file():  # the same trials as an earlier run
        cmd += ["--trials", str(out / "trials/test.json"), "--val-trials", str(out / "trials/val.json")]
    seconds = run(cmd, logs / "evaluate.log")
    doc = json.loads((out / "results.json").read_text())
    return {"seconds": round(seconds, 1), "results": doc["results"], "meta": doc["meta"]}


def binary(result: dict, direction: str) -> dict:
    m = result["directions"][direction]["matching"]["2"]
    return {"acc": 100 * m["acc"], "lo": 100 * m["ci"][0], "hi": 100 * m["ci"][1], "n": m["n"], "method": m["method"]}


def markdown(report: dict) -> str:
    oracle = report["oracle"]
    out = [
        f"Synthetic reproduction ({report['setup']['summary']}). Binary (1:2) accuracy in % on the "
        f"{report['setup']['test_identities']} VoxCeleb1 test identities, authors' trial construction "
        f"({report['setup']['trials_per_direction']} trials per direction), 95 % bootstrap CI over "
        f"identities, scored by each model's K = 2 head. Oracle ceiling (knows gender, age band and "
        f"appearance group): {100 * oracle:.1f}; chance 50.",
        "",
    ]
    for table, spec in TABLES.items():
        cols = spec["columns"]
        out += [f"**{table}** (synthetic; the paper's VoxCeleb1 numbers in the last two columns)", ""]
        out.append(
            "| | " + " | ".join(cols) + " | Binary V-F | Binary F-V | % of oracle (mean) | paper V-F | paper F-V |"
        )
        out.append("|---" * (len(cols) + 6) + "|")
        for label, comps, row in spec["rows"]:
            r = report["rows"][row]
            v, f = r["v2f"], r["f2v"]
            marks = " | ".join("✓" if c in comps else "" for c in cols)
            paper = PAPER.get(row, ("", ""))
            out.append(
                f"| {label} | {marks} | {v['acc']:.1f} ({v['lo']:.1f}-{v['hi']:.1f}) | "
                f"{f['acc']:.1f} ({f['lo']:.1f}-{f['hi']:.1f}) | {r['of_oracle']:.0f} | {paper[0]} | {paper[1]} |"
            )
        out.append("")
    out.append("Goals: " + "; ".join(f"{g['text']}: {'met' if g['met'] else 'NOT met'}" for g in report["goals"]))
    return "\n".join(out) + "\n"


def plot_saved() -> Path:
    """reproduce.png from whichever of reproduce.json / reproduce_interference.json exist."""
    reports = {}
    for name, title in (("reproduce.json", "plain corpus"), ("reproduce_interference.json", "with interference 0.5")):
        if (RESULTS / name).is_file():
            reports[title] = json.loads((RESULTS / name).read_text())
    return plot(reports, RESULTS / "reproduce.png")


LABELS = {
    "aicanet_t5_a_baseline": "baseline",
    "aicanet_t5_b_rdsm": "+RDSM",
    "aicanet_t5_c_aia": "AIA",
    "aicanet_t5_d_aia_aca": "AIA+ACA",
    "aicanet_t5_e_full": "AICANet",
    "bianet_t5_b_pia": "PIA",
    "bianet_t5_c_nia": "NIA",
    "bianet_t5_d_full": "BIANet",
}


def plot(reports: dict[str, dict], path: Path) -> Path:
    """One panel per corpus: Binary V-F and F-V per row with 95 % CIs, oracle and chance lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(6.5 * len(reports), 4), sharey=True, squeeze=False)
    for ax, (title, report) in zip(axes[0], reports.items()):
        rows = list(report["rows"])
        for offset, (direction, colour) in zip((-0.2, 0.2), (("v2f", "tab:blue"), ("f2v", "tab:orange"))):
            vals = [report["rows"][r][direction] for r in rows]
            ax.bar(
                [i + offset for i in range(len(rows))],
                [v["acc"] for v in vals],
                0.4,
                color=colour,
                label=direction.upper().replace("2", "-"),
                yerr=[[v["acc"] - v["lo"] for v in vals], [v["hi"] - v["acc"] for v in vals]],
                capsize=2,
            )
        ax.axhline(100 * report["oracle"], color="k", ls="--", lw=1, label="attribute oracle")
        ax.axhline(50, color="grey", ls=":", lw=1, label="chance")
        ax.set_xticks(range(len(rows)), [LABELS.get(r, r) for r in rows], rotation=30, ha="right")
        ax.set_ylim(40, 100)
        ax.set_title(title)
        ax.set_ylabel("Binary 1:2 accuracy (%)")
    axes[0][0].legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", help="cache folder (default data/bench_reproduce[_interference])")
    parser.add_argument("--identities", type=int, default=200, help="identities per dataset (>= 150)")
    parser.add_argument("--epochs", type=float, default=18, help="training epochs per row (33 batches each)")
    parser.add_argument("--out", help="results JSON (default benchmarks/results/reproduce.json)")
    parser.add_argument(
        "--interference",
        type=float,
        default=0.0,
        help="pipeline.synth --interference P: a stranger's voice and face in clips with probability P "
        "each (the interference the papers' attention is meant to remove); results go to "
        "reproduce_interference.json unless --out is given",
    )
    parser.add_argument("--data-only", action="store_true", help="build the corpus and shards, then stop")
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="redraw benchmarks/results/reproduce.png from the saved JSON results and stop",
    )
    args = parser.parse_args()
    if args.plot_only:
        print(plot_saved())
        return 0
    if args.identities < 150:
        parser.error("--identities must be >= 150 (the results must separate)")
    if args.out is None:
        args.out = str(RESULTS / ("reproduce_interference.json" if args.interference else "reproduce.json"))
    if args.work is None:
        args.work = str(ROOT / "data" / ("bench_reproduce_interference" if args.interference else "bench_reproduce"))
    work = Path(args.work)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data_seconds = build_data(work, args.identities, logs, args.interference)
    if args.data_only:
        return 0
    rows = list(dict.fromkeys(r for spec in TABLES.values() for _, _, r in spec["rows"]))
    trained = {}
    for i, row in enumerate(rows, 1):
        print(f"[{i}/{len(rows)}] train {row}", flush=True)
        trained[row] = train_row(row, work, args.epochs, logs)
    print("evaluate", flush=True)
    ev = evaluate(rows, work, logs)
    truth = json.loads((work / "corpus" / "ground_truth.json").read_text())
    oracle = truth["oracle"]["voxceleb1/wen_test"]["random_negatives"]
    report = {
        "setup": {
            "summary": f"{args.identities} identities per dataset"
            + (f", interference {args.interference:g}" if args.interference else "")
            + f", tiny backbones, {args.epochs:g} epochs of "
            f"{trained[BASELINE]['steps'] / args.epochs:.0f} batches of 24 tuples, both directions",
            "identities_per_dataset": args.identities,
            "interference": args.interference,
            "epochs": args.epochs,
            "sizes": SIZES,
            "test_identities": ev["meta"]["trials"]["test"]["identities"],
            "trials_per_direction": binary(ev["results"][BASELINE], "v2f")["n"],
            "trial_options": ev["meta"]["trials"]["test"]["options"],
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        },
        "oracle": oracle,
        "oracle_gender_only": truth["oracle"]["voxceleb1/wen_test"]["gender_only"],
        "rows": {},
        "training": trained,
        "seconds": {**data_seconds, "evaluate": ev["seconds"]},
    }
    for row in rows:
        v, f = binary(ev["results"][row], "v2f"), binary(ev["results"][row], "f2v")
        report["rows"][row] = {
            "v2f": v,
            "f2v": f,
            "config": models.ablation_config(row, **SIZES),
            "of_oracle": 100 * (v["acc"] + f["acc"]) / 2 / (100 * oracle),
        }
    base = report["rows"][BASELINE]
    goals = []
    for name, row in FULL_MODELS.items():
        r = report["rows"][row]
        goals.append(
            {
                "text": f"{name} >= baseline (V-F and F-V)",
                "met": r["v2f"]["acc"] >= base["v2f"]["acc"] and r["f2v"]["acc"] >= base["f2v"]["acc"],
            }
        )
        goals.append({"text": f"{name} >= 90 % of the oracle", "met": r["of_oracle"] >= 90})
    report["goals"] = goals
    report["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    md = markdown(report)
    Path(args.out).with_suffix(".md").write_text(md)
    print(md)
    print(f"plot: {plot_saved()}")
    print(f"total {report['seconds']['total']:.0f} s; results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
