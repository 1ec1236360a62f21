"""How big must the identity buffer be? Unpaired evictions vs buffer size at VoxCeleb2 scale.

A positive needs another clip of the anchor's identity (different video by default) to be in the
buffer at the same time. With clips shuffled across shards, the buffer holds mostly one clip per
identity; if it is too small, clips leave it unpaired (`unpaired_evicted`), which is lost coverage.
This simulates the real planner (`shards.tuples.plan_batch`, the loader's fill/evict rule) over
metadata only (no bytes, no decode) for VoxCeleb2 dev's shape: 5,994 identities, ~24 videos each,
uniform arrival order, B = 50, K = 2, different-video positives.

    python benchmarks/bench_loader_buffer.py           # quick: ~1 minute
    python benchmarks/bench_loader_buffer.py --batches 1500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from shards.buffer import IdentityBuffer
from shards.stream import Sample
from shards.tuples import plan_batch

ROOT = Path(__file__).resolve().parents[1]


def simulate(capacity: int, identities: int, videos: int, batch_size: int, batches: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    buf = IdentityBuffer(capacity)
    reads = evicted = 0

    def arrive():
        nonlocal reads
        reads += 1
        i, v = int(rng.integers(identities)), int(rng.integers(videos))
        return Sample(f"s{reads}", f"id{i}", f"v{v}", "c", None, b"", b"", (0, 0, 0))

    for b in range(batches):
        while not buf.full:  # the loader fills to capacity before planning
            buf.add(arrive())
        while (
            plan_batch(
                buf,
                batch_size=batch_size,
                k=2,
                direction="v2f",
                positive="different_video",
                gender_matched=False,
                rng=np.random.default_rng([seed, b]),
            )
        ) is None:
            for _ in range(max(1, batch_size // 2)):  # the loader's read-more-and-evict-oldest rule
                buf.remove(buf.oldest())
                evicted += 1
                buf.add(arrive())
    return {
        "capacity": capacity,
        "capacity_per_identity": capacity / identities,
        "reads": reads,
        "unpaired_evicted": evicted,
        "evicted_fraction_of_reads": evicted / reads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=600, help="batches simulated per buffer size")
    ap.add_argument("--identities", type=int, default=5994)
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/loader_buffer.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for frac in (0.33, 0.5, 0.58, 0.67, 1.0):
        cap = int(round(frac * args.identities))
        rows.append(simulate(cap, args.identities, args.videos, args.batch_size, args.batches))
        r = rows[-1]
        print(
            f"buffer {cap:6d} ({frac:.2f} x identities): {100 * r['evicted_fraction_of_reads']:5.1f}% of reads "
            "evicted unpaired",
            flush=True,
        )
    result = {
        "identities": args.identities,
        "videos_per_identity": args.videos,
        "batch_size": args.batch_size,
        "batches": args.batches,
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
