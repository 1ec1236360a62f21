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
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .extract import (
    AUDIO_ENCODERS,
    MIN_FACE_SIZE,
    ClipError,
    ExtractSettings,
    extract_clip,
)
from .meta import MetaError, read_meta
from .probe import probe_job, quiet_ffmpeg
from .sources import ClipRecord, ScanResult, scan_voxceleb1, scan_voxceleb2
from .splits import (
    DEFAULT_PRESET,
    PRESETS,
    SPLITS,
    SplitAssignment,
    SplitError,
    assign_splits,
)

_TAR_BLOCK = 512
_LIST_LIMIT = 50
_SKIP_LIMIT = 1000
#: metadata files and chunk headers of an eval.zarr, whatever its size (bytes)
_ZARR_OVERHEAD = 64 * 1024


@dataclass
class DoctorConfig:
    dataset: str
    root: Path
    meta: Path
    split_preset: str | None = None
    split_file: Path | None = None
    faces: Path | None = None
    vox2_audio: str = "auto"
    full: bool = False
    sample: int = 64
    seed: int = 0
    workers: int = 1
    out: Path | None = None
    max_bad_fraction: float = 0.05
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    progress: bool = True


class Findings:
    """Problems found so far: `blocking` ones make the exit status 1, `warning` ones do not."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, severity: str, code: str, message: str) -> None:
        self.items.append({"severity": severity, "code": code, "message": message})

    @property
    def blocking(self) -> bool:
        return any(p["severity"] == "blocking" for p in self.items)


def _size(path: str | None) -> int:
    try:
        return os.stat(path).st_size if path else 0
    except OSError:
        return 0


def _source_bytes(clip: ClipRecord) -> int:
    """Bytes of the clip's media that scale with its duration (mp4, m4a or wav): what the
    shard/source ratio is measured against. Face images are left out (VoxCeleb1 stills and
    per-video frames are shared by many clips)."""
    files = {clip.audio_path, clip.video_path} - {None}
    return sum(_size(p) for p in files)


def _tar_bytes(members: dict[str, bytes]) -> int:
    """Bytes the sample takes in a shard: one 512-byte header per member plus padded payloads."""
    return sum(_TAR_BLOCK + -(-len(b) // _TAR_BLOCK) * _TAR_BLOCK for b in members.values())


def _identity_folder(rel: str) -> str:
    """The identity folder of a layout path: the part after `wav/` or `mp4/` (`[<part>/]wav/<folder>/...`)."""
    parts = rel.split("/")
    for i, part in enumerate(parts[:-1]):
        if part in ("wav", "mp4", "aac"):
            return parts[i + 1]
    return rel


def _shorten(items, limit: int = _LIST_LIMIT) -> list:
    return sorted(items)[:limit]


# ---------------------------------------------------------------- the checks

def _scan(cfg: DoctorConfig, meta) -> ScanResult:
    """The ingest's own layout scan, with a progress bar over identity folders (no total: the
    folders are counted while walking)."""
    with tqdm(unit="identity", desc="scan", disable=not cfg.progress, dynamic_ncols=True) as bar:
        tick = lambda: bar.update(1)  # noqa: E731
        if cfg.dataset == "voxceleb2":
            return scan_voxceleb2(cfg.root, audio=cfg.vox2_audio, tick=tick)
        return scan_voxceleb1(cfg.root, meta, faces=cfg.faces, tick=tick)


def _identity_checks(report: dict, findings: Findings, meta, assignment: SplitAssignment | None,
                     scan: ScanResult, cfg: DoctorConfig) -> dict[str, list[ClipRecord]]:
    """Counts per split, identities on one side only, identities missing inputs."""
    clips_of: dict[str, list[ClipRecord]] = defaultdict(list)
    for clip in scan.clips:
        clips_of[clip.identity].append(clip)
    skipped_ids = {s.identity for s in scan.skipped if s.identity}
    on_disk = set(clips_of) | skipped_ids
    not_in_meta = sorted(i for i in on_disk if i not in meta)
    unnamed = sorted({_identity_folder(s.path) for s in scan.skipped
                      if s.kind == "missing_meta_row" and not s.identity})
    if not_in_meta or unnamed:
        findings.add("warning", "identities_not_in_meta",
                     f"{len(not_in_meta) + len(unnamed)} identity folder(s) on disk have no row in "
                     f"{cfg.meta.name} and will not be ingested: {(not_in_meta + unnamed)[:10]}")
    split_of = assignment.split_of if assignment else {}
    by_split: dict[str, list[ClipRecord]] = {s: [] for s in SPLITS}
    splits = {}
    for split in (assignment.splits() if assignment else []):
        expected = sorted(i for i, s in split_of.items() if s == split)
        present = [i for i in expected if clips_of.get(i)]
        for i in present:
            by_split[split] += clips_of[i]
        missing = sorted(set(expected) - set(present))
        splits[split] = {"meta_identities": len(expected), "identities_on_disk": len(present),
                         "clips": len(by_split[split]), "identities_missing": len(missing),
                         "identities_missing_list": _shorten(missing)}
        if not present:
            findings.add("blocking", "empty_split",
                         f"split {split}: none of its {len(expected)} meta identities has a usable clip "
                         f"under {cfg.root}; the ingest would write an empty split (wrong --root, "
                         "--dataset or --meta, or that part was not downloaded)")
        elif missing:
            findings.add("warning", "identities_missing_on_disk",
                         f"split {split}: {len(missing)} of {len(expected)} meta identities have no clip "
                         f"on disk (e.g. {missing[:5]})")
    excluded = sorted(i for i in clips_of if i in meta and i not in split_of)
    report["splits"] = splits
    report["identities"] = {
        "in_meta": len(meta), "on_disk": len(on_disk),
        "on_disk_not_in_meta": not_in_meta[:_LIST_LIMIT], "on_disk_not_in_meta_count": len(not_in_meta),
        "unnamed_folders": unnamed[:_LIST_LIMIT],
        "in_meta_not_on_disk_count": sum(s["identities_missing"] for s in splits.values()),
        "not_selected_by_preset": len(excluded),
    }
    # identities whose inputs are incomplete (scan skips: missing_faces / missing_video / missing_audio)
    missing_inputs: dict[str, dict[str, int]] = {}
    for kind in ("missing_faces", "missing_video", "missing_audio", "duplicate_clip"):
        # identities without a meta row are reported above, not as missing inputs
        per_id = Counter(s.identity for s in scan.skipped
                         if s.kind == kind and s.identity and s.identity in meta)
        if not per_id:
            continue
        without_any = sorted(i for i in per_id if not clips_of.get(i))
        missing_inputs[kind] = {"clips": sum(per_id.values()), "identities": len(per_id),
                                "identities_with_no_usable_clip": without_any[:_LIST_LIMIT],
                                "by_identity": dict(sorted(per_id.items())[:_LIST_LIMIT])}
        findings.add("warning", kind,
                     f"{sum(per_id.values())} clip(s) of {len(per_id)} identities are {kind.replace('_', ' ')}"
                     + (f"; {len(without_any)} of them have no usable clip at all ({without_any[:5]})"
                        if without_any else ""))
    report["missing_inputs"] = missing_inputs
    return by_split


def _sample_check(cfg: DoctorConfig, clips: list[ClipRecord]) -> dict:
    """Run the ingest's extraction on a seeded sample: exact skip verdicts and output sizes."""
    order = np.random.default_rng(cfg.seed).permutation(len(clips))
    chosen = [clips[i] for i in order[: cfg.sample]]
    verdicts: Counter = Counter()
    bad, out_bytes, in_bytes = [], 0, 0
    bar = tqdm(chosen, unit="clip", desc="sample check", disable=not cfg.progress, dynamic_ncols=True)
    for clip in bar:
        try:
            sample = extract_clip(clip, "train", {}, cfg.extract)
        except ClipError as err:
            verdicts[err.kind] += 1
            bad.append({"key": clip.key, "path": _rel(err.path, cfg), "kind": err.kind, "reason": err.reason})
            continue
        except Exception as err:  # report, as the ingest would (extract_error), and go on
            verdicts["extract_error"] += 1
            bad.append({"key": clip.key, "path": clip.source, "kind": "extract_error",
                        "reason": f"{type(err).__name__}: {err}"})
            continue
        verdicts["ok"] += 1
        out_bytes += _tar_bytes(sample.members)
        in_bytes += _source_bytes(clip)
    return {"clips": len(chosen), "verdicts": dict(verdicts), "bad": bad[:_LIST_LIMIT],
            "shard_bytes": out_bytes, "source_bytes": in_bytes,
            "ratio": round(out_bytes / in_bytes, 4) if in_bytes else None}


def _files_of(clip: ClipRecord) -> list[tuple[str, str]]:
    """(path, probe role) of every input of a clip."""
    files = []
    if clip.video_path:
        files.append((clip.video_path, "video+audio" if clip.audio_path == clip.video_path else "video"))
    if clip.audio_path != clip.video_path:
        files.append((clip.audio_path, "audio"))
    files += [(p, "image") for p in clip.frame_paths]
    if clip.box_path:
        files.append((clip.box_path, "box"))
    return files


def _full_check(cfg: DoctorConfig, clips: list[ClipRecord]) -> dict:
    """Probe every input file once (structure only), in `workers` processes."""
    seen, items = set(), []
    for clip in clips:
        for path, role in _files_of(clip):
            if path not in seen:
                seen.add(path)
                items.append((path, role, cfg.extract.min_face_size))
    bad, kinds = [], Counter()
    bar = tqdm(total=len(items), unit="file", desc="file check", disable=not cfg.progress, dynamic_ncols=True)
    with bar:
        if cfg.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=quiet_ffmpeg) as pool:
                results = pool.map(probe_job, items, chunksize=64)
                for result in results:
                    _count_probe(result, bad, kinds, cfg)
                    bar.update(1)
        else:
            for item in items:
                _count_probe(probe_job(item), bad, kinds, cfg)
                bar.update(1)
    return {"files": len(items), "bad_files": sum(kinds.values()), "by_kind": dict(sorted(kinds.items())),
            "bad": bad[:_SKIP_LIMIT]}


def _count_probe(result, bad: list, kinds: Counter, cfg: DoctorConfig) -> None:
    path, role, verdict = result
    if verdict is not None:
        kinds[verdict[0]] += 1
        bad.append({"path": _rel(path, cfg), "role": role, "kind": verdict[0], "reason": verdict[1]})


def _rel(path: str, cfg: DoctorConfig) -> str:
    for base in (cfg.root, cfg.faces):
        if base is not None:
            try:
                return Path(path).relative_to(base).as_posix()
            except ValueError:
                pass
    return str(path)


def _disk_estimate(cfg: DoctorConfig, by_split: dict[str, list[ClipRecord]], sample: dict,
                   findings: Findings) -> dict:
    ratio = sample.get("ratio")
    if ratio is None:
        findings.add("warning", "no_disk_estimate", "no clip of the sample could be extracted, so the "
                                                    "shard size cannot be estimated")
        return {"ratio": None}
    face_bytes = cfg.extract.frames_per_clip * cfg.extract.face_size ** 2 * 3
    per_split, total = {}, 0
    for split, clips in by_split.items():
        if not clips:
            continue
        source = sum(_source_bytes(c) for c in clips)
        shards = int(ratio * source)
        # eval.zarr holds the decoded faces (uint8) and the audio samples (at most the shard bytes
        # again), compressed, plus its metadata files: an upper bound
        evals = len(clips) * face_bytes + shards + _ZARR_OVERHEAD if split in ("val", "test") else 0
        per_split[split] = {"source_bytes": source, "shard_bytes": shards, "eval_store_bytes_at_most": evals}
        total += shards + evals
    estimate = {"ratio": ratio, "measured_on_clips": sample["verdicts"].get("ok", 0),
                "splits": per_split, "total_bytes": total}
    if cfg.out is not None:
        where = cfg.out
        while not where.exists() and where != where.parent:
            where = where.parent
        free = shutil.disk_usage(where).free
        estimate.update(out=str(cfg.out), free_bytes=free)
        if free < total:
            findings.add("blocking", "disk_space",
                         f"the shards need about {total / 1e9:.2f} GB but {where} has {free / 1e9:.2f} GB free")
    return estimate


def _judge_files(report: dict, findings: Findings, cfg: DoctorConfig) -> None:
    sample = report["sample_check"]
    checked = sample["clips"]
    bad = checked - sample["verdicts"].get("ok", 0)
    if bad:
        frac = bad / checked
        severity = "blocking" if frac > cfg.max_bad_fraction else "warning"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(sample["verdicts"].items()) if k != "ok")
        findings.add(severity, "bad_clips_in_sample",
                     f"{bad} of {checked} sampled clips would be skipped by the ingest ({kinds}): "
                     f"{frac:.1%} (the limit --max-bad-fraction is {cfg.max_bad_fraction:.0%})")
    full = report.get("file_check")
    if full and full["bad_files"]:
        frac = full["bad_files"] / max(1, full["files"])
        severity = "blocking" if frac > cfg.max_bad_fraction else "warning"
        kinds = ", ".join(f"{k} {v}" for k, v in full["by_kind"].items())
        findings.add(severity, "bad_files",
                     f"{full['bad_files']} of {full['files']} files are unreadable, truncated or empty "
                     f"({kinds}): {frac:.1%} (the limit --max-bad-fraction is {cfg.max_bad_fraction:.0%})")


def run_doctor(cfg: DoctorConfig, log=print) -> dict:
    """All checks; returns the report (`report["ok"]` is False when a problem is blocking)."""
    t0 = time.time()
    quiet_ffmpeg()
    findings = Findings()
    report: dict = {"dataset": cfg.dataset, "root": str(cfg.root), "meta": str(cfg.meta),
                    "full": cfg.full, "settings": cfg.extract.as_dict()}

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
    report["meta_warnings"] = [w.as_dict() for w in meta.warnings][:_SKIP_LIMIT]
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
        scan = _scan(cfg, meta)
    except FileNotFoundError as err:
        findings.add("blocking", "layout", str(err))
        return finish()
    report["scan"] = {"clips": len(scan.clips), "unusable_inputs": len(scan.skipped),
                      "files_outside_layout": scan.ignored_count, "examples_outside_layout": scan.ignored[:20],
                      "seconds": round(time.time() - t0, 2)}
    if not scan.clips:
        findings.add("blocking", "no_clips", f"no clip found under {cfg.root} in the {cfg.dataset} layout")
    by_split = _identity_checks(report, findings, meta, assignment, scan, cfg)
    in_splits = [c for clips in by_split.values() for c in clips]
    report["sample_check"] = _sample_check(cfg, in_splits or scan.clips)
    if cfg.full:
        report["file_check"] = _full_check(cfg, in_splits or scan.clips)
    _judge_files(report, findings, cfg)
    report["disk"] = _disk_estimate(cfg, by_split, report["sample_check"], findings)
    return finish()


# ---------------------------------------------------------------- output

def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def format_summary(report: dict) -> str:
    lines = [(f"data doctor: {report['dataset']} at {report['root']} (meta {report['meta']}, "
              f"preset {report.get('preset', '?')})")]
    if "scan" in report:
        s = report["scan"]
        lines.append(f"  scan: {s['clips']} clips, {s['unusable_inputs']} unusable inputs, "
                     f"{s['files_outside_layout']} files outside the layout")
    if report.get("splits"):
        lines.append(f"  {'split':<6} {'meta ids':>9} {'ids on disk':>12} {'missing':>8} {'clips':>8}")
        for split, c in report["splits"].items():
            lines.append(f"  {split:<6} {c['meta_identities']:>9} {c['identities_on_disk']:>12} "
                         f"{c['identities_missing']:>8} {c['clips']:>8}")
    if "identities" in report:
        i = report["identities"]
        lines.append(f"  identities: {i['on_disk']} on disk, {i['in_meta']} in meta; "
                     f"{i['on_disk_not_in_meta_count'] + len(i['unnamed_folders'])} on disk but not in meta, "
                     f"{i['in_meta_not_on_disk_count']} in meta but not on disk")
    if "sample_check" in report:
        s = report["sample_check"]
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(s["verdicts"].items()))
        lines.append(f"  sample check (the ingest's extraction): {s['clips']} clips: {verdicts or '-'}")
    if "file_check" in report:
        f = report["file_check"]
        lines.append(f"  file check (--full): {f['files']} files, {f['bad_files']} bad "
                     + (f"({', '.join(f'{k} {v}' for k, v in f['by_kind'].items())})" if f["by_kind"] else ""))
    disk = report.get("disk") or {}
    if disk.get("ratio") is not None:
        parts = ", ".join(f"{k} {_gb(v['shard_bytes'] + v['eval_store_bytes_at_most'])}"
                          for k, v in disk["splits"].items())
        line = (f"  disk: about {_gb(disk['total_bytes'])} for the shards ({parts}; shard/source ratio "
                f"{disk['ratio']:.2f} measured on {disk['measured_on_clips']} clips)")
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
                    "See docs/INGEST.md, 'Data doctor'.")
    p.add_argument("--dataset", required=True, choices=("voxceleb1", "voxceleb2"))
    p.add_argument("--root", required=True, type=Path, help="the dataset folder, as for pipeline.ingest")
    p.add_argument("--meta", type=Path, default=None,
                   help="vox1_meta.csv / vox2_meta.csv (default: <root>/vox1_meta.csv or vox2_meta.csv)")
    p.add_argument("--split-preset", choices=sorted(PRESETS), default=None,
                   help="as for pipeline.ingest (default wen1251 / vox2)")
    p.add_argument("--split-file", type=Path, default=None, help="as for pipeline.ingest")
    p.add_argument("--faces", type=Path, default=None, help="VoxCeleb1 face folder, as for pipeline.ingest")
    p.add_argument("--vox2-audio", choices=("auto", "m4a", "mp4"), default="auto", help="as for pipeline.ingest")
    p.add_argument("--full", action="store_true",
                   help="check every input file (structure: demux, no decode), not only a sample of clips")
    p.add_argument("--sample", type=int, default=64,
                   help="clips run through the ingest's own extraction (exact verdicts, and the shard/source "
                        "size ratio for the disk estimate); default 64")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--workers", type=int, default=1, help="processes for --full (default 1)")
    p.add_argument("--out", type=Path, default=None,
                   help="where the shards will go: compare the estimate with the free space there")
    p.add_argument("--max-bad-fraction", type=float, default=0.05,
                   help="more bad clips (sample) or files (--full) than this fraction is blocking; default 0.05")
    p.add_argument("--frames-per-clip", type=int, default=4, help="as for pipeline.ingest (disk estimate)")
    p.add_argument("--face-size", type=int, default=224, help="as for pipeline.ingest (disk estimate)")
    p.add_argument("--audio-format", choices=sorted(AUDIO_ENCODERS), default="wav", help="as for pipeline.ingest")
    p.add_argument("--min-face-size", type=int, default=MIN_FACE_SIZE, help="as for pipeline.ingest")
    p.add_argument("--json", type=Path, default=None, help="also write the full report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> DoctorConfig:
    if not args.root.is_dir():
        raise ValueError(f"--root {args.root} is not a folder")
    if args.sample < 0 or args.workers < 1 or not 0 <= args.max_bad_fraction <= 1:
        raise ValueError("--sample must be >= 0, --workers >= 1 and --max-bad-fraction in [0, 1]")
    settings = ExtractSettings(frames_per_clip=args.frames_per_clip, face_size=args.face_size,
                               audio_format=args.audio_format, min_face_size=args.min_face_size)
    meta = args.meta or args.root / ("vox1_meta.csv" if args.dataset == "voxceleb1" else "vox2_meta.csv")
    return DoctorConfig(dataset=args.dataset, root=args.root.resolve(), meta=meta,
                        split_preset=args.split_preset, split_file=args.split_file,
                        faces=args.faces.resolve() if args.faces else None, vox2_audio=args.vox2_audio,
                        full=args.full, sample=args.sample, seed=args.seed, workers=args.workers,
                        out=args.out, max_bad_fraction=args.max_bad_fraction, extract=settings,
                        progress=not args.no_progress)


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
