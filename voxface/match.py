"""``voxface-match``: rank your own face images for a voice, or voices for a face, with a trained model.

    voxface-match --checkpoint runs/demo --voice x.wav --faces a.jpg b.jpg c.jpg
    voxface-match --checkpoint hub/demo --face y.jpg --voices clips/          # a folder: its audio files
    voxface-match --checkpoint runs/demo --voice voices/ --faces faces/ --json  # every voice of a folder

Faces must be face crops (no face detector runs). Audio: any file soundfile or FFmpeg reads, any
sample rate and channel count. Each query prints a table (rank, score, file) and the scorer used;
``--json`` prints one JSON document instead. A file that cannot be read gets one line on stderr
(``skipped: <file>: <reason>``) and the rest are still ranked; the exit code is then 1.
docs/API.md explains the scores.
"""

from __future__ import annotations

import argparse
import json
import sys

from voxface.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, expand
from voxface.matcher import SCORINGS, MatchInputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="voxface-match", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, run folder, model.pt or exported Hub folder")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--voice", nargs="+", help="voice query file(s) or folder(s); ranks --faces")
    q.add_argument("--face", nargs="+", help="face query image(s) or folder(s); ranks --voices")
    p.add_argument("--faces", nargs="+", help="face images or folders to rank (with --voice)")
    p.add_argument("--voices", nargs="+", help="audio files or folders to rank (with --face)")
    p.add_argument("--top", type=int, help="print only the best N candidates")
    p.add_argument(
        "--scoring",
        default="auto",
        choices=SCORINGS,
        help="auto (default): the model's head where it was trained for that many candidates and "
        "that direction, else embeddings; head; embedding",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    return p


def table(result, top: int | None) -> str:
    lines = [
        f"query: {result.query}",
        f"scored by: {result.method}",
        f"{'rank':>4}  {'score':>9}  {'voice' if result.direction == 'f2v' else 'face'}",
    ]
    for c in result.candidates[:top]:
        lines.append(f"{c.rank:>4}  {c.score:9.4f}  {c.path}")
    if top is not None and len(result.candidates) > top:
        lines.append(f"      ... {len(result.candidates) - top} more")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.voice and not args.faces:
        return _fail("--voice needs --faces (images or folders to rank)")
    if args.face and not args.voices:
        return _fail("--face needs --voices (audio files or folders to rank)")
    if args.voice and args.voices or args.face and args.faces:
        return _fail("use --voice with --faces, or --face with --voices")
    if args.top is not None and args.top < 1:
        return _fail("--top must be >= 1")
    direction = "v2f" if args.voice else "f2v"
    q_ext, c_ext = (AUDIO_EXTENSIONS, IMAGE_EXTENSIONS) if direction == "v2f" else (IMAGE_EXTENSIONS, AUDIO_EXTENSIONS)
    queries, bad_q = expand(args.voice or args.face, q_ext)
    cands, bad_c = expand(args.faces or args.voices, c_ext)
    from launch.checkpoint import CheckpointError
    from voxface.matcher import load_matcher

    try:
        matcher = load_matcher(args.checkpoint, device=args.device, scoring=args.scoring)
    except CheckpointError as exc:
        return _fail(str(exc))
    problems = [str(b) for b in bad_q + bad_c]
    results = []
    if cands:
        for query in queries:
            try:
                kwargs = {"voice": query, "faces": cands} if direction == "v2f" else {"face": query, "voices": cands}
                result = matcher.match(**kwargs)
            except MatchInputError as exc:
                problems.append(str(exc))
                continue
            results.append(result)
            problems += [str(b) for b in result.skipped if str(b) not in problems]
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "checkpoint": str(args.checkpoint),
                    "model": matcher.name,
                    "trained_k": matcher.trained_k,
                    "results": [r.to_dict() for r in results],
                    "skipped": problems,
                },
                indent=1,
            )
        )
    else:
        print("\n\n".join(table(r, args.top) for r in results))
    if not results:
        print("error: nothing to match (see the skipped files above)", file=sys.stderr)
        return 2
    return 1 if problems else 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
