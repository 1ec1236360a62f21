"""The end-to-end configuration: a small synthetic corpus, how it is ingested, and how the demo
preset trains on it.

Why one owner: `tests/test_end_to_end.py` (synth -> ingest -> train -> kill -> resume -> beats
chance) and `benchmarks/bench_loader_scale.py --part learning` (the same training once per
`data.buffer_audio` mode) must train exactly the same thing, or the benchmark's accuracies say
nothing about the test's threshold. In the package (like `shards.testing`) because a benchmark
must not import from `tests/` (that would need a sys.path edit).
"""

from __future__ import annotations

from pathlib import Path

DEMO_PRESET = Path(__file__).resolve().parent / "configs" / "demo.yaml"

# pipeline.synth.make_corpus keyword arguments: 40 identities of 2 videos x 2 clips of 2-3 s
CORPUS = dict(identities=40, videos_per_identity=2, clips_per_video=2, min_seconds=2.0, max_seconds=3.0)


def ingest_args(corpus: Path, shards: Path, dataset: str) -> list[str]:
    """`python -m pipeline.ingest` arguments for one dataset of the corpus."""
    return ["-m", "pipeline.ingest", "--dataset", dataset, "--root", str(corpus / dataset), "--out", str(shards),
            "--face-size", "64", "--frames-per-clip", "2", "--workers", "2", "--shard-samples", "24",
            "--no-progress"]  # fmt: skip


def train_args(shards: Path, run_dir: Path) -> list[str]:
    """`launch/train.py` arguments: the demo preset on both datasets' training shards, validated on
    VoxCeleb1 val, 40 epochs."""
    return [
        str(Path(__file__).resolve().parent / "train.py"),
        "--config",
        str(DEMO_PRESET),
        f"data.shards=[{shards}/voxceleb1/train,{shards}/voxceleb2/train]",
        f"train.val_data={shards}/voxceleb1/val",
        f"train.output_dir={run_dir}",
        "train.val_min_trials=300",
        "data.batch_size=20",
        "data.buffer_size=200",
        "train.epochs=40",
        "optim.milestones=[30,36]",
        "train.val_every=10",
        "train.progress=false",
        "train.log_with=[]",
    ]
