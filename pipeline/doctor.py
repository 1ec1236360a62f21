"""`python -m pipeline.doctor`: check a VoxCeleb copy before a long ingest.

An ingest of VoxCeleb2 costs CPU-hours; finding out at the end that a third of the test split was
never downloaded, that the meta file is for the other release, or that the disk is too small wastes
them. The doctor reads what the ingest would read - the meta file (`pipeline.meta`), the split
preset (`pipeline.splits`), the layout scan (`pipeline.sources`) - and reports, without writing
anything under the dataset:

* counts per split against the meta file: identities the preset puts in the split, identities with
  clips on disk, clips;
* identities on disk but not in the meta file, and meta identities with no clip on disk;
* identities with clips missing their faces (VoxCeleb1), videos or audio (VoxCeleb2);
* unreadable or truncated files: a seeded sample of clips run through the ingest's own extraction
  (exact verdicts, same reason words), and with `--full` every input file checked structurally
  (`pipeline.probe`: demux, no decode) in `--workers` processes with a progress bar;
* the disk space the shards will take: the ratio of shard bytes to source bytes measured on the
  extracted sample, times the source bytes of every clip (plus an upper bound for `eval.zarr`);
  with `--out`, compared with the free space there.

It prints a readable summary, writes the whole report as JSON with `--json`, and exits 1 when a
problem would block or ruin the ingest (see BLOCKING in docs/INGEST.md "Data doctor"), 2 for bad
arguments, 0 otherwise (warnings included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .bundled import default_meta
from .doctor_checks import (
    LIST_LIMIT_BAD,
    DoctorConfig,
    Findings,
    disk_estimate,
    full_check,
    identity_checks,
    judge_files,
    sample_check,
    scan_layout,
)
from .extract import AUDIO_ENCODERS, MIN_FACE_SIZE, ExtractSettings
from .meta import MetaError, read_meta
from .probe import quiet_ffmpeg
from .splits import DEFAULT_PRESET, PRESETS, SplitError, assign_splits


def run_doctor(cfg: DoctorConfig, log=print) -> dict:
    """All checks; returns the report (`report["ok"]` is False when a problem is blocking)."""
    t0 = time.time()
    quiet_ffmpeg()
    findings = Findings()
    report: dict = {
        "dataset": cfg.dataset,
        "root": str(cfg.root),
        "meta": str(cfg.meta),
        "full": cfg.full,
        "settings": cfg.extract.as_dict(),
    }

    def finish() -> dict:
        report["problems"] = findings.items
        report["ok"] = not findings.blocking
        report["seconds"] = round(time.time() - t0, 2)
        return report

    try:
        meta = read_meta(cfg.meta, cfg.dataset)
    except MetaError as err:
        findings.add("blocking", "meta", str(err))
        return finish()
    report["meta_warnings"] = [w.as_dict() for w in meta.warnings][:LIST_LIMIT_BAD]
    for w in meta.warnings[:20]:
        findings.add("warning", f"meta_{w.kind}", w.message)
    if len(meta.warnings) > 20:
        findings.add("warning", "meta_more", f"... and {len(meta.warnings) - 20} more meta rows (see the JSON)")
    preset = cfg.split_preset or DEFAULT_PRESET[cfg.dataset]
    report["preset"] = preset
    try:
        assignment = assign_splits(preset, meta, cfg.split_file)
    except SplitError as err:
        findings.add("blocking", "split_preset", str(err))
        assignment = None
    log(f"scanning {cfg.root} ...")
    try:
        scan = scan_layout(cfg, meta)
    except FileNotFoundError as err:
        findings.add("blocking", "layout", str(err))
        return finish()
    report["scan"] = {
        "clips": len(scan.clips),
        "unusable_inputs": len(scan.skipped),
        "files_outside_layout": scan.ignored_count,
        "examples_outside_layout": scan.ignored[:20],
        "seconds": round(time.time() - t0, 2),
    }
    if not scan.clips:
        findings.add("blocking", "no_clips", f"no clip found under {cfg.root} in the {cfg.dataset} layout")
    by_split = identity_checks(report, findings, meta, assignment, scan, cfg)
    in_splits = [c for clips in by_split.values() for c in clips]
    report["sample_check"] = sample_check(cfg, in_splits or scan.clips)
    if cfg.full:
        report["file_check"] = full_check(cfg, in_splits or scan.clips)
    judge_files(report, findings, cfg)
    report["disk"] = disk_estimate(cfg, by_split, report["sample_check"], findings)
    return finish()


# ---------------------------------------------------------------- output


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def format_summary(report: dict) -> str:
    lines = [
        (
            f"data doctor: {report['dataset']} at {report['root']} (meta {report['meta']}, "
            f"preset {report.get('preset', '?')})"
        )
    ]
    if "scan" in report:
        s = report["scan"]
        lines.append(
            f"  scan: {s['clips']} clips, {s['unusable_inputs']} unusable inputs, "
            f"{s['files_outside_layout']} files outside the layout"
        )
    if report.get("splits"):
        lines.append(f"  {'split':<6} {'meta ids':>9} {'ids on disk':>12} {'missing':>8} {'clips':>8}")
        for split, c in report["splits"].items():
            lines.append(
                f"  {split:<6} {c['meta_identities']:>9} {c['identities_on_disk']:>12} "
                f"{c['identities_missing']:>8} {c['clips']:>8}"
            )
    if "identities" in report:
        i = report["identities"]
        lines.append(
            f"  identities: {i['on_disk']} on disk, {i['in_meta']} in meta; "
            f"{i['on_disk_not_in_meta_count'] + len(i['unnamed_folders'])} on disk but not in meta, "
            f"{i['in_meta_not_on_disk_count']} in meta but not on disk"
        )
    if "sample_check" in report:
        s = report["sample_check"]
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(s["verdicts"].items()))
        lines.append(f"  sample check (the ingest's extraction): {s['clips']} clips: {verdicts or '-'}")
    if "file_check" in report:
        f = report["file_check"]
        lines.append(
            f"  file check (--full): {f['files']} files, {f['bad_files']} bad "
            + (f"({', '.join(f'{k} {v}' for k, v in f['by_kind'].items())})" if f["by_kind"] else "")
        )
    disk = report.get("disk") or {}
    if disk.get("ratio") is not None:
        parts = ", ".join(
            f"{k} {_gb(v['shard_bytes'] + v['eval_store_bytes_at_most'])}" for k, v in disk["splits"].items()
        )
        line = (
            f"  disk: about {_gb(disk['total_bytes'])} for the shards ({parts}; shard/source ratio "
            f"{disk['ratio']:.2f} measured on {disk['measured_on_clips']} clips)"
        )
        if "free_bytes" in disk:
            line += f"; {_gb(disk['free_bytes'])} free at {disk['out']}"
        lines.append(line)
    problems = report.get("problems", [])
    for p in problems:
        lines.append(f"  {'BLOCKING' if p['severity'] == 'blocking' else 'warning'} [{p['code']}]: {p['message']}")
    verdict = "OK: ready to ingest" if report.get("ok") else "NOT READY: fix the blocking problems above"
    if report.get("ok") and problems:
        verdict += f" ({len(problems)} warning(s))"
    lines.append(verdict)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.doctor",
        description="Check a VoxCeleb copy before a long ingest: counts per split against the meta "
        "file, identities on one side only, missing faces/videos/audio, unreadable or "
        "truncated files, disk space for the shards. Exit 1 on blocking problems. "
        "See docs/INGEST.md, 'Data doctor'.",
    )
    p.add_argument("--dataset", required=True, choices=("voxceleb1", "voxceleb2"))
    p.add_argument("--root", required=True, type=Path, help="the dataset folder, as for pipeline.ingest")
    p.add_argument(
        "--meta",
        type=Path,
        default=None,
        help="vox1_meta.csv / vox2_meta.csv (default: <root>/vox1_meta.csv or vox2_meta.csv when present, else the "
        "official table bundled with voxface)",
    )
    p.add_argument(
        "--split-preset", choices=sorted(PRESETS), default=None, help="as for pipeline.ingest (default wen1251 / vox2)"
    )
    p.add_argument("--split-file", type=Path, default=None, help="as for pipeline.ingest")
    p.add_argument("--faces", type=Path, default=None, help="VoxCeleb1 face folder, as for pipeline.ingest")
    p.add_argument("--vox2-audio", choices=("auto", "m4a", "mp4"), default="auto", help="as for pipeline.ingest")
    p.add_argument(
        "--full",
        action="store_true",
        help="check every input file (structure: demux, no decode), not only a sample of clips",
    )
    p.add_argument(
        "--sample",
        type=int,
        default=64,
        help="clips run through the ingest's own extraction (exact verdicts, and the shard/source "
        "size ratio for the disk estimate); default 64",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--workers", type=int, default=1, help="processes for --full (default 1)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the shards will go: compare the estimate with the free space there",
    )
    p.add_argument(
        "--max-bad-fraction",
        type=float,
        default=0.05,
        help="more bad clips (sample) or files (--full) than this fraction is blocking; default 0.05",
    )
    p.add_argument("--frames-per-clip", type=int, default=4, help="as for pipeline.ingest (disk estimate)")
    p.add_argument("--face-size", type=int, default=224, help="as for pipeline.ingest (disk estimate)")
    p.add_argument(
        "--audio-format",
        choices=sorted(AUDIO_ENCODERS),
        default=ExtractSettings().audio_format,
        help="as for pipeline.ingest (the estimate of the shard size depends on it)",
    )
    p.add_argument("--min-face-size", type=int, default=MIN_FACE_SIZE, help="as for pipeline.ingest")
    p.add_argument("--json", type=Path, default=None, help="also write the full report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> DoctorConfig:
    if not args.root.is_dir():
        raise ValueError(f"--root {args.root} is not a folder")
    if args.sample < 0 or args.workers < 1 or not 0 <= args.max_bad_fraction <= 1:
        raise ValueError("--sample must be >= 0, --workers >= 1 and --max-bad-fraction in [0, 1]")
    settings = ExtractSettings(
        frames_per_clip=args.frames_per_clip,
        face_size=args.face_size,
        audio_format=args.audio_format,
        min_face_size=args.min_face_size,
    )
    meta = args.meta or default_meta(args.dataset, args.root)
    return DoctorConfig(
        dataset=args.dataset,
        root=args.root.resolve(),
        meta=meta,
        split_preset=args.split_preset,
        split_file=args.split_file,
        faces=args.faces.resolve() if args.faces else None,
        vox2_audio=args.vox2_audio,
        full=args.full,
        sample=args.sample,
        seed=args.seed,
        workers=args.workers,
        out=args.out,
        max_bad_fraction=args.max_bad_fraction,
        extract=settings,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = run_doctor(cfg, log=lambda msg: print(msg, file=sys.stderr))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(format_summary(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
