"""Command line: python -m pipeline.synth --out DIR --identities N ... (see --help)."""

from __future__ import annotations

import argparse
import sys

from .corpus import CorpusExistsError, make_corpus
from .realistic import SECONDS as REALISTIC_SECONDS

EPILOG = """\
Writes DIR/voxceleb1/ (wav, txt, unzippedIntervalFaces, vox1_meta.csv), DIR/voxceleb2/
({dev,test}/{mp4,aac,txt}, vox2_meta.csv), DIR/ground_truth.json (attributes, splits, oracle
1:2 accuracy) and, with --inject-faults, bad inputs listed in DIR/faults.json.
Demo corpus: --identities 40 --videos-per-identity 3 --clips-per-video 2.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.synth",
        description="Generate a deterministic synthetic corpus in the VoxCeleb1 and VoxCeleb2 layouts, "
        "with faces and voices associated only through shared latent attributes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (must be empty, new, or hold this same corpus)")
    p.add_argument(
        "--identities", type=int, default=40, help="identities PER dataset (VoxCeleb1 and VoxCeleb2 each); default 40"
    )
    p.add_argument("--videos-per-identity", type=int, default=3, help="YouTube-like videos per identity; default 3")
    p.add_argument("--clips-per-video", type=int, default=2, help="utterance clips per video; default 2")
    p.add_argument("--seed", type=int, default=0, help="corpus seed; same arguments give identical bytes; default 0")
    p.add_argument(
        "--min-seconds",
        type=float,
        default=None,
        help="shortest clip length in seconds (>= 1); default 4 (7 with --realistic)",
    )
    p.add_argument(
        "--max-seconds", type=float, default=None, help="longest clip length in seconds; default 6 (9 with --realistic)"
    )
    p.add_argument(
        "--realistic",
        action="store_true",
        help="clips as costly to decode as real VoxCeleb2: about 8 s, H.264 at about 250 kbps with "
        "texture and per-frame grain (for scale benchmarks; see docs/SYNTHETIC_CORPUS.md)",
    )
    p.add_argument("--workers", type=int, default=2, help="parallel processes; does not change the output; default 2")
    p.add_argument(
        "--inject-faults", action="store_true", help="also write bad inputs an ingest must skip (listed in faults.json)"
    )
    p.add_argument(
        "--interference",
        type=float,
        default=0.0,
        metavar="P",
        help="probability per clip of a stranger talking underneath (SIR 0-8 dB) and, independently, "
        "of a stranger's face in the background: interference with wrong attribute cues; default 0",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def format_summary(s: dict) -> str:
    lines = [
        f"synthetic corpus written to {s['out']}",
        f"  identities: VoxCeleb1 {s['identities']['voxceleb1']}, VoxCeleb2 {s['identities']['voxceleb2']}  "
        + "  ".join(f"{k}={v}" for k, v in sorted(s["identities_by_split"].items())),
        f"  clips: {s['clips']} ({s['clips_rendered']} rendered, {s['clips_skipped_existing']} already present)"
        f"  files: {s['files']}  size: {s['bytes'] / 1e6:.1f} MB",
        f"  time: {s['seconds']:.1f} s with {s['workers']} workers ({s['clips_per_second']:.1f} clips/s)",
        f"  1:2 matching, chance {s['chance']:.2f}; attribute-oracle ceiling with random / gender-matched negatives,"
        " and an oracle that knows only gender:",
    ]
    for pool, r in s["oracle"].items():

        def fmt(v):
            return "  n/a" if v is None else f"{v:.3f}"

        lines.append(
            f"    {pool:<22} ids={r['identities']:<4} {fmt(r['random_negatives'])} / "
            f"{fmt(r['gender_matched_negatives'])}   gender only {fmt(r['gender_only'])}"
        )
    if s["faults"]:
        lines.append(f"  injected faults: {s['faults']} bad files listed in faults.json")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    lengths = REALISTIC_SECONDS if args.realistic else (4.0, 6.0)
    min_seconds = lengths[0] if args.min_seconds is None else args.min_seconds
    max_seconds = lengths[1] if args.max_seconds is None else args.max_seconds
    try:
        summary = make_corpus(
            args.out,
            identities=args.identities,
            videos_per_identity=args.videos_per_identity,
            clips_per_video=args.clips_per_video,
            seed=args.seed,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
            workers=args.workers,
            inject_faults=args.inject_faults,
            progress=not args.no_progress,
            interference=args.interference,
            realistic=args.realistic,
        )
    except (ValueError, CorpusExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
