"""The checks of the data doctor (`pipeline.doctor`), one function per question.

Each check reads what the ingest would read (the layout scan of `pipeline.sources`, the meta file
and preset, the ingest's own `extract_clip`, the structural probes of `pipeline.probe`), adds its
part of the report and its problems to `Findings` (`blocking` makes the doctor exit 1), and never
writes under the dataset. `pipeline.doctor` runs them in order and prints the summary.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .extract import ClipError, ExtractSettings, extract_clip
from .probe import probe_job, quiet_ffmpeg
from .sources import ClipRecord, ScanResult, scan_voxceleb1, scan_voxceleb2
from .splits import SPLITS, SplitAssignment

_TAR_BLOCK = 512
_LIST_LIMIT = 50
#: most bad files and meta warnings listed in the JSON (all are counted)
LIST_LIMIT_BAD = 1000
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


def scan_layout(cfg: DoctorConfig, meta) -> ScanResult:
    """The ingest's own layout scan, with a progress bar over identity folders (no total: the
    folders are counted while walking)."""
    with tqdm(unit="identity", desc="scan", disable=None if cfg.progress else True, dynamic_ncols=True) as bar:

        def tick() -> None:
            bar.update(1)

        if cfg.dataset == "voxceleb2":
            return scan_voxceleb2(cfg.root, audio=cfg.vox2_audio, tick=tick)
        return scan_voxceleb1(cfg.root, meta, faces=cfg.faces, tick=tick)


def identity_checks(
    report: dict, findings: Findings, meta, assignment: SplitAssignment | None, scan: ScanResult, cfg: DoctorConfig
) -> dict[str, list[ClipRecord]]:
    """Counts per split, identities on one side only, identities missing inputs."""
    clips_of: dict[str, list[ClipRecord]] = defaultdict(list)
    for clip in scan.clips:
        clips_of[clip.identity].append(clip)
    skipped_ids = {s.identity for s in scan.skipped if s.identity}
    on_disk = set(clips_of) | skipped_ids
    not_in_meta = sorted(i for i in on_disk if i not in meta)
    unnamed = sorted(
        {_identity_folder(s.path) for s in scan.skipped if s.kind == "missing_meta_row" and not s.identity}
    )
    if not_in_meta or unnamed:
        findings.add(
            "warning",
            "identities_not_in_meta",
            f"{len(not_in_meta) + len(unnamed)} identity folder(s) on disk have no row in "
            f"{cfg.meta.name} and will not be ingested: {(not_in_meta + unnamed)[:10]}",
        )
    split_of = assignment.split_of if assignment else {}
    by_split: dict[str, list[ClipRecord]] = {s: [] for s in SPLITS}
    splits = {}
    for split in assignment.splits() if assignment else []:
        expected = sorted(i for i, s in split_of.items() if s == split)
        present = [i for i in expected if clips_of.get(i)]
        for i in present:
            by_split[split] += clips_of[i]
        missing = sorted(set(expected) - set(present))
        splits[split] = {
            "meta_identities": len(expected),
            "identities_on_disk": len(present),
            "clips": len(by_split[split]),
            "identities_missing": len(missing),
            "identities_missing_list": _shorten(missing),
        }
        if not present:
            findings.add(
                "blocking",
                "empty_split",
                f"split {split}: none of its {len(expected)} meta identities has a usable clip "
                f"under {cfg.root}; the ingest would write an empty split (wrong --root, "
                "--dataset or --meta, or that part was not downloaded)",
            )
        elif missing:
            findings.add(
                "warning",
                "identities_missing_on_disk",
                f"split {split}: {len(missing)} of {len(expected)} meta identities have no clip "
                f"on disk (e.g. {missing[:5]})",
            )
    excluded = sorted(i for i in clips_of if i in meta and i not in split_of)
    report["splits"] = splits
    report["identities"] = {
        "in_meta": len(meta),
        "on_disk": len(on_disk),
        "on_disk_not_in_meta": not_in_meta[:_LIST_LIMIT],
        "on_disk_not_in_meta_count": len(not_in_meta),
        "unnamed_folders": unnamed[:_LIST_LIMIT],
        "in_meta_not_on_disk_count": sum(s["identities_missing"] for s in splits.values()),
        "not_selected_by_preset": len(excluded),
    }
    # identities whose inputs are incomplete (scan skips: missing_faces / missing_video / missing_audio)
    missing_inputs: dict[str, dict[str, int]] = {}
    for kind in ("missing_faces", "missing_video", "missing_audio", "duplicate_clip"):
        # identities without a meta row are reported above, not as missing inputs
        per_id = Counter(s.identity for s in scan.skipped if s.kind == kind and s.identity and s.identity in meta)
        if not per_id:
            continue
        without_any = sorted(i for i in per_id if not clips_of.get(i))
        missing_inputs[kind] = {
            "clips": sum(per_id.values()),
            "identities": len(per_id),
            "identities_with_no_usable_clip": without_any[:_LIST_LIMIT],
            "by_identity": dict(sorted(per_id.items())[:_LIST_LIMIT]),
        }
        findings.add(
            "warning",
            kind,
            f"{sum(per_id.values())} clip(s) of {len(per_id)} identities are {kind.replace('_', ' ')}"
            + (f"; {len(without_any)} of them have no usable clip at all ({without_any[:5]})" if without_any else ""),
        )
    report["missing_inputs"] = missing_inputs
    return by_split


def sample_check(cfg: DoctorConfig, clips: list[ClipRecord]) -> dict:
    """Run the ingest's extraction on a seeded sample: exact skip verdicts and output sizes."""
    order = np.random.default_rng(cfg.seed).permutation(len(clips))
    chosen = [clips[i] for i in order[: cfg.sample]]
    verdicts: Counter = Counter()
    bad, out_bytes, in_bytes = [], 0, 0
    bar = tqdm(chosen, unit="clip", desc="sample check", disable=None if cfg.progress else True, dynamic_ncols=True)
    for clip in bar:
        try:
            sample = extract_clip(clip, "train", {}, cfg.extract)
        except ClipError as err:
            verdicts[err.kind] += 1
            bad.append({"key": clip.key, "path": _rel(err.path, cfg), "kind": err.kind, "reason": err.reason})
            continue
        except Exception as err:  # report, as the ingest would (extract_error), and go on
            verdicts["extract_error"] += 1
            bad.append(
                {
                    "key": clip.key,
                    "path": clip.source,
                    "kind": "extract_error",
                    "reason": f"{type(err).__name__}: {err}",
                }
            )
            continue
        verdicts["ok"] += 1
        out_bytes += _tar_bytes(sample.members)
        in_bytes += _source_bytes(clip)
    return {
        "clips": len(chosen),
        "verdicts": dict(verdicts),
        "bad": bad[:_LIST_LIMIT],
        "shard_bytes": out_bytes,
        "source_bytes": in_bytes,
        "ratio": round(out_bytes / in_bytes, 4) if in_bytes else None,
    }


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


def full_check(cfg: DoctorConfig, clips: list[ClipRecord]) -> dict:
    """Probe every input file once (structure only), in `workers` processes."""
    seen, items = set(), []
    for clip in clips:
        for path, role in _files_of(clip):
            if path not in seen:
                seen.add(path)
                items.append((path, role, cfg.extract.min_face_size))
    bad, kinds = [], Counter()
    bar = tqdm(
        total=len(items), unit="file", desc="file check", disable=None if cfg.progress else True, dynamic_ncols=True
    )
    with bar:
        if cfg.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(
                cfg.workers, mp_context=multiprocessing.get_context("spawn"), initializer=quiet_ffmpeg
            ) as pool:
                results = pool.map(probe_job, items, chunksize=64)
                for result in results:
                    _count_probe(result, bad, kinds, cfg)
                    bar.update(1)
        else:
            for item in items:
                _count_probe(probe_job(item), bad, kinds, cfg)
                bar.update(1)
    return {
        "files": len(items),
        "bad_files": sum(kinds.values()),
        "by_kind": dict(sorted(kinds.items())),
        "bad": bad[:LIST_LIMIT_BAD],
    }


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


def disk_estimate(cfg: DoctorConfig, by_split: dict[str, list[ClipRecord]], sample: dict, findings: Findings) -> dict:
    ratio = sample.get("ratio")
    if ratio is None:
        findings.add(
            "warning",
            "no_disk_estimate",
            "no clip of the sample could be extracted, so the shard size cannot be estimated",
        )
        return {"ratio": None}
    face_bytes = cfg.extract.frames_per_clip * cfg.extract.face_size**2 * 3
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
    estimate = {
        "ratio": ratio,
        "measured_on_clips": sample["verdicts"].get("ok", 0),
        "splits": per_split,
        "total_bytes": total,
    }
    if cfg.out is not None:
        where = cfg.out
        while not where.exists() and where != where.parent:
            where = where.parent
        free = shutil.disk_usage(where).free
        estimate.update(out=str(cfg.out), free_bytes=free)
        if free < total:
            findings.add(
                "blocking",
                "disk_space",
                f"the shards need about {total / 1e9:.2f} GB but {where} has {free / 1e9:.2f} GB free",
            )
    return estimate


def judge_files(report: dict, findings: Findings, cfg: DoctorConfig) -> None:
    sample = report["sample_check"]
    checked = sample["clips"]
    bad = checked - sample["verdicts"].get("ok", 0)
    if bad:
        frac = bad / checked
        severity = "blocking" if frac > cfg.max_bad_fraction else "warning"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(sample["verdicts"].items()) if k != "ok")
        findings.add(
            severity,
            "bad_clips_in_sample",
            f"{bad} of {checked} sampled clips would be skipped by the ingest ({kinds}): "
            f"{frac:.1%} (the limit --max-bad-fraction is {cfg.max_bad_fraction:.0%})",
        )
    full = report.get("file_check")
    if full and full["bad_files"]:
        frac = full["bad_files"] / max(1, full["files"])
        severity = "blocking" if frac > cfg.max_bad_fraction else "warning"
        kinds = ", ".join(f"{k} {v}" for k, v in full["by_kind"].items())
        findings.add(
            severity,
            "bad_files",
            f"{full['bad_files']} of {full['files']} files are unreadable, truncated or empty "
            f"({kinds}): {frac:.1%} (the limit --max-bad-fraction is {cfg.max_bad_fraction:.0%})",
        )
