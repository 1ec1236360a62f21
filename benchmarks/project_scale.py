"""Project VoxCeleb2-dev ingest and training-loader costs from the measured per-clip and per-sample figures.

Nothing is timed here: every input is read from a committed benchmark result, named with its file
and key in the output, so the projection changes only when a benchmark is re-run:

* `ingest.json` (`bench_ingest.py`, realistic clips): ingest CPU per clip (marginal, the median
  of every 1- and 2-worker run), shard bytes / source bytes, source bytes per clip, peak
  RSS of a worker and of the main process;
* `loader_workers.json` (`bench_loader_scale.py`, paper configuration: 224 px faces, 4 s crops,
  B = 50): CPU per batch of the consuming process and of a decode worker, buffer bytes per sample;
* `loader.json` (`bench_loader.py`): peak RSS of a decode worker, and the loader's CPU per tuple
  at 112 px / 2 s from the same-items section (a cross-check).

The model (stated in the output, so a reader can redo it):

* ingest: clips x CPU per clip / cores (one worker per core; shard tasks have no single writer,
  so nothing serial is left but the final merge); plus the disk rates that wall time implies;
* training node: 8 ranks x 8 decode workers, one core each; a rank delivers
  min(workers x B / worker CPU per batch, B / consuming-process CPU per batch) tuples/s;
  memory = ranks x (buffer_size x buffer bytes per sample + decode workers' RSS), plus, with
  the default `member_reads: workers`, the buffered samples' shard bytes in the page cache;
  the same for `member_reads: stream` for comparison.

These are projections from a shared 2-core box: they assume the per-clip and per-batch CPU stay
what was measured (same clips, same codecs) and that disks and memory bandwidth keep up.

    python benchmarks/project_scale.py    # writes benchmarks/results/project_scale.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

VOX2_DEV_CLIPS = 1_092_009
VOX2_DEV_IDENTITIES = 5_994
INGEST_HOSTS = (16, 64)
RANKS, WORKERS_PER_RANK = 8, 8
#: docs/LOADER.md: buffer_size >= 0.7 x identities (VoxCeleb2 dev: ~4,200)
BUFFER_SAMPLES = 4_200
PAPER_CONFIG = "224px_4s (paper)"
# the same configuration with `data.member_reads: stream` (the reader streams read every member and
# the buffer holds the bytes: the loader before member reads), for comparison
PAPER_CONFIG_STREAM = PAPER_CONFIG + " (member_reads: stream)"


class MissingResult(Exception):
    """A benchmark result the projection needs is absent or lacks a figure."""


def _load(results: Path, name: str) -> dict:
    path = results / name
    if not path.exists():
        raise MissingResult(f"{path} is missing: run the benchmark that writes it first")
    return json.loads(path.read_text())


def _get(doc: dict, name: str, *keys: str):
    node = doc
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise MissingResult(f"{name} has no {'.'.join(keys)}: re-run the benchmark that writes it")
        node = node[key]
    return node


def read_inputs(results: Path) -> dict:
    """Every figure the projection uses, with where it came from."""
    ingest = _load(results, "ingest.json")
    workers = _load(results, "loader_workers.json")
    loader = _load(results, "loader.json")
    corpus = _get(ingest, "ingest.json", "corpus")
    paper = _get(workers, "loader_workers.json", PAPER_CONFIG)
    stream = _get(workers, "loader_workers.json", PAPER_CONFIG_STREAM)
    worker_rss_kib = _get(loader, "loader.json", "rss", "1M", "decode_workers_maxrss_kib")
    inputs = {
        # every marginal run of both worker counts: per clip they cost the same within the noise
        # (ratios.cpu_per_clip_w2_over_w1), and one round's figure moves by +-15 % on a loaded box
        "ingest_cpu_ms_per_clip": (
            statistics.median(
                _get(ingest, "ingest.json", "ours_w1", "marginal_cpu_ms_per_clip_runs")
                + _get(ingest, "ingest.json", "ours_w2", "marginal_cpu_ms_per_clip_runs")
            ),
            "ingest.json ours_w1 + ours_w2 .marginal_cpu_ms_per_clip_runs (median of all)",
        ),
        "shard_over_source_bytes": (
            _get(ingest, "ingest.json", "ratios", "shard_over_source_bytes"),
            "ingest.json ratios.shard_over_source_bytes",
        ),
        "source_bytes_per_clip": (
            corpus["source_bytes"] / corpus["clips"],
            "ingest.json corpus.source_bytes / corpus.clips (realistic synthetic clips)",
        ),
        "ingest_worker_rss_mb": (
            max(_get(ingest, "ingest.json", "ours_w2", "worker_peak_rss_mb").values()),
            "ingest.json ours_w2.worker_peak_rss_mb (max)",
        ),
        "ingest_main_rss_mb": (
            _get(ingest, "ingest.json", "ours_w2", "main_peak_rss_mb"),
            "ingest.json ours_w2.main_peak_rss_mb",
        ),
        "loader_main_cpu_ms_per_batch": (
            _get(paper, "loader_workers.json", "workers_2", "main_cpu_ms_per_batch"),
            f"loader_workers.json {PAPER_CONFIG}.workers_2.main_cpu_ms_per_batch",
        ),
        "loader_worker_cpu_ms_per_batch": (
            _get(paper, "loader_workers.json", "workers_1", "worker_cpu_ms_per_batch"),
            f"loader_workers.json {PAPER_CONFIG}.workers_1.worker_cpu_ms_per_batch",
        ),
        "loader_cpu_ms_per_tuple": (
            _get(paper, "loader_workers.json", "workers_2", "cpu_ms_per_tuple"),
            f"loader_workers.json {PAPER_CONFIG}.workers_2.cpu_ms_per_tuple",
        ),
        "batch_size": (
            _get(workers, "loader_workers.json", "settings", "batch_size"),
            "loader_workers.json settings.batch_size",
        ),
        "buffer_bytes_per_sample": (
            _get(paper, "loader_workers.json", "workers_2", "buffer_bytes_per_sample"),
            f"loader_workers.json {PAPER_CONFIG}.workers_2.buffer_bytes_per_sample",
        ),
        "stream_loader_main_cpu_ms_per_batch": (
            _get(stream, "loader_workers.json", "workers_2", "main_cpu_ms_per_batch"),
            f"loader_workers.json {PAPER_CONFIG_STREAM}.workers_2.main_cpu_ms_per_batch",
        ),
        "stream_loader_worker_cpu_ms_per_batch": (
            _get(stream, "loader_workers.json", "workers_1", "worker_cpu_ms_per_batch"),
            f"loader_workers.json {PAPER_CONFIG_STREAM}.workers_1.worker_cpu_ms_per_batch",
        ),
        "stream_buffer_bytes_per_sample": (
            _get(stream, "loader_workers.json", "workers_2", "buffer_bytes_per_sample"),
            f"loader_workers.json {PAPER_CONFIG_STREAM}.workers_2.buffer_bytes_per_sample",
        ),
        "decode_worker_rss_mb": (
            statistics.median(worker_rss_kib) / 1024,
            "loader.json rss.1M.decode_workers_maxrss_kib (median)",
        ),
    }
    floor = _get(ingest, "ingest.json", "decode_floor", "cpu_ms_per_clip_median")
    inputs["ingest_over_floor_cpu"] = (
        round(inputs["ingest_cpu_ms_per_clip"][0] / floor, 2),
        "ingest_cpu_ms_per_clip / ingest.json decode_floor.cpu_ms_per_clip_median",
    )
    same = loader.get("same_items", {}).get("cpu_per_tuple")
    if same:
        inputs["loader_cpu_ms_per_tuple_112px_2s"] = (
            same["ours_cpu_ms_per_tuple_median"],
            "loader.json same_items.cpu_per_tuple (112 px, 2 s crops)",
        )
    return {k: {"value": v, "source": s} for k, (v, s) in inputs.items()}


def project(inputs: dict) -> dict:
    v = {k: x["value"] for k, x in inputs.items()}
    clips = VOX2_DEV_CLIPS
    source_gb = clips * v["source_bytes_per_clip"] / 1e9
    shard_gb = source_gb * v["shard_over_source_bytes"]
    cpu_hours = clips * v["ingest_cpu_ms_per_clip"] / 1000 / 3600
    hosts = {}
    for cores in INGEST_HOSTS:
        wall_s = clips * v["ingest_cpu_ms_per_clip"] / 1000 / cores
        hosts[f"{cores}_cores"] = {
            "workers": cores,
            "wall_hours": round(wall_s / 3600, 2),
            "clips_per_s": round(clips / wall_s),
            "read_mb_per_s": round(source_gb * 1000 / wall_s, 1),
            "write_mb_per_s": round(shard_gb * 1000 / wall_s, 1),
            "memory_gb": round((cores * v["ingest_worker_rss_mb"] + v["ingest_main_rss_mb"]) / 1024, 1),
        }
    b = v["batch_size"]
    rank_workers_tps = WORKERS_PER_RANK * b * 1000 / v["loader_worker_cpu_ms_per_batch"]
    rank_main_tps = b * 1000 / v["loader_main_cpu_ms_per_batch"]
    rank_tps = min(rank_workers_tps, rank_main_tps)
    stream_tps = min(
        WORKERS_PER_RANK * b * 1000 / v["stream_loader_worker_cpu_ms_per_batch"],
        b * 1000 / v["stream_loader_main_cpu_ms_per_batch"],
    )
    tuples_per_epoch = clips / 2  # default positive (another video): 2 buffered samples per tuple
    buffer_gb = BUFFER_SAMPLES * v["buffer_bytes_per_sample"] / 1e9
    # with member reads the buffered samples' bytes stay in the kernel's page cache (reclaimable)
    # until a decode worker reads them: about the buffer's samples x a sample's shard bytes
    page_cache_gb = BUFFER_SAMPLES * v["source_bytes_per_clip"] * v["shard_over_source_bytes"] / 1e9
    node = {
        "ranks": RANKS,
        "decode_workers_per_rank": WORKERS_PER_RANK,
        "cores_used": RANKS * (WORKERS_PER_RANK + 1),
        "rank_tuples_per_s_decode_workers": round(rank_workers_tps),
        "rank_tuples_per_s_consuming_process": round(rank_main_tps),
        "rank_tuples_per_s": round(rank_tps),
        "bound_by": "consuming process" if rank_main_tps < rank_workers_tps else "decode workers",
        "node_tuples_per_s": round(RANKS * rank_tps),
        "epoch_minutes": round(tuples_per_epoch / (RANKS * rank_tps) / 60, 1),
        "buffer_gb_per_rank": round(buffer_gb, 3),
        "buffer_gb_per_node": round(RANKS * buffer_gb, 2),
        "page_cache_gb_per_rank_behind_the_buffer": round(page_cache_gb, 2),
        "member_reads_stream": {
            "rank_tuples_per_s": round(stream_tps),
            "buffer_gb_per_rank": round(BUFFER_SAMPLES * v["stream_buffer_bytes_per_sample"] / 1e9, 3),
        },
        "decode_workers_rss_gb_per_node": round(RANKS * WORKERS_PER_RANK * v["decode_worker_rss_mb"] / 1024, 1),
        "node_loader_cpu_core_seconds_per_epoch": round(tuples_per_epoch * v["loader_cpu_ms_per_tuple"] / 1000),
    }
    return {
        "dataset": {"name": "VoxCeleb2 dev", "clips": clips, "identities": VOX2_DEV_IDENTITIES},
        "ingest": {
            "cpu_hours": round(cpu_hours, 1),
            "source_gb": round(source_gb),
            "shard_gb": round(shard_gb),
            "hosts": hosts,
        },
        "training_node": {"buffer_samples_per_rank": BUFFER_SAMPLES, **node},
    }


def markdown(inputs: dict, proj: dict) -> str:
    ing, node = proj["ingest"], proj["training_node"]
    lines = [
        f"Projection for VoxCeleb2 dev ({proj['dataset']['clips']:,} clips, "
        f"{proj['dataset']['identities']:,} identities) from the measured figures "
        "(`benchmarks/project_scale.py`; every input below names its result file):",
        "",
        "| ingest | 16 cores | 64 cores |",
        "|---|---|---|",
    ]
    h16, h64 = ing["hosts"]["16_cores"], ing["hosts"]["64_cores"]
    lines += [
        f"| wall time (one worker per core) | {h16['wall_hours']} h | {h64['wall_hours']} h |",
        f"| clips/s | {h16['clips_per_s']:,} | {h64['clips_per_s']:,} |",
        f"| disk read / write needed | {h16['read_mb_per_s']} / {h16['write_mb_per_s']} MB/s | "
        f"{h64['read_mb_per_s']} / {h64['write_mb_per_s']} MB/s |",
        f"| memory (workers + main, peak RSS) | {h16['memory_gb']} GB | {h64['memory_gb']} GB |",
        "",
        f"Ingest in total: {ing['cpu_hours']} CPU-hours; source ~{ing['source_gb']} GB (at the realistic "
        f"synthetic clips' bytes per clip), shards ~{ing['shard_gb']} GB "
        f"({inputs['shard_over_source_bytes']['value']}x the source, FLAC audio).",
        "",
        f"| training node: {node['ranks']} GPUs x {node['decode_workers_per_rank']} decode workers "
        "(paper config: 224 px, 4 s crops, B = 50) | projected |",
        "|---|---|",
        f"| tuples/s per rank: decode workers / consuming process / **rank** | "
        f"{node['rank_tuples_per_s_decode_workers']:,} / {node['rank_tuples_per_s_consuming_process']:,} / "
        f"**{node['rank_tuples_per_s']:,}** (bound by the {node['bound_by']}) |",
        f"| tuples/s per node; one epoch (clips / 2 tuples) at that rate (the loader's ceiling, "
        f"not the training time: the GPUs set that) | {node['node_tuples_per_s']:,}; {node['epoch_minutes']} min |",
        f"| cores the loaders use | {node['cores_used']} |",
        f"| identity buffer at {node['buffer_samples_per_rank']:,} samples: per rank / per node | "
        f"{node['buffer_gb_per_rank']} GB / {node['buffer_gb_per_node']} GB |",
        "| shard data behind the buffer, in the page cache (reclaimable; read by the decode workers) | "
        f"~{node['page_cache_gb_per_rank_behind_the_buffer']} GB per rank |",
        f"| with `member_reads: stream` instead (the loader before): tuples/s per rank; buffer per rank | "
        f"{node['member_reads_stream']['rank_tuples_per_s']:,}; {node['member_reads_stream']['buffer_gb_per_rank']} GB |",
        f"| decode workers' peak RSS per node (sum; mostly torch pages shared between them) | "
        f"{node['decode_workers_rss_gb_per_node']} GB |",
        f"| loader CPU per epoch | {node['node_loader_cpu_core_seconds_per_epoch'] / 3600:.1f} core-hours |",
        "",
        "Inputs:",
        "",
        "| figure | value | from |",
        "|---|---|---|",
    ]
    for name, x in inputs.items():
        value = x["value"]
        if isinstance(value, float):
            shown = f"{value:,.0f}" if value >= 1000 else f"{value:,.3f}".rstrip("0").rstrip(".")
        else:
            shown = f"{value:,}"
        lines.append(f"| {name} | {shown} | `{x['source']}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="folder with the benchmark JSON results")
    p.add_argument("--out", type=Path, default=RESULTS / "project_scale.json", help="JSON output (.md beside it)")
    args = p.parse_args()
    try:
        inputs = read_inputs(args.results)
    except MissingResult as err:
        raise SystemExit(f"project_scale: {err}") from None
    proj = project(inputs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"inputs": inputs, **proj}, indent=1) + "\n")
    md = markdown(inputs, proj)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
