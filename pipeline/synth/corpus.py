"""Generate a whole synthetic corpus: plan, render in parallel, write meta, truth and faults."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from . import layout_vox1, layout_vox2, media
from .attributes import traits_to_json
from .clip import video_look
from .faults import save_faults, write_faults
from .meta import MetaRow, write_vox1_meta, write_vox2_meta
from .oracle import CHANCE, oracle_report
from .plan import CorpusSpec, IdentityPlan, VideoPlan, plan_corpus

GROUND_TRUTH = "ground_truth.json"
#: Workers start from a clean interpreter ("forkserver"), not a fork of the caller: the caller may
#: be a test session or training script that already runs torch/OpenMP threads, and forking a
#: threaded process can deadlock. Costs about a second of imports per worker.
_MP_CONTEXT = multiprocessing.get_context("forkserver")
FORMAT_VERSION = 1


class CorpusExistsError(RuntimeError):
    """--out already holds something that is not this corpus."""


def _layout(dataset: str):
    return layout_vox1 if dataset == "voxceleb1" else layout_vox2


def _clip_files(identity: IdentityPlan, video: VideoPlan, clip) -> list[str]:
    """Every file a clip writes (folders such as vox1's per-utterance face folder excluded)."""
    files = []
    for key, value in _layout(identity.dataset).clip_paths(identity, video, clip).items():
        if isinstance(value, list):
            files += value
        elif not key.endswith("_dir"):
            files.append(value)
    return files


def render_video(
    out: str, seed: int, identity: IdentityPlan, video: VideoPlan, interference: float = 0.0, realistic: bool = False
) -> dict:
    """Worker job: every clip of one video (the video's background is rendered once).

    Clips whose files all exist are skipped: files are only ever renamed into place when
    complete, so an interrupted run resumes without redoing finished work.
    """
    out_path = Path(out)
    look = None
    stats = {"clips": 0, "skipped": 0, "files": 0}
    for clip in video.clips:
        if all((out_path / rel).exists() for rel in _clip_files(identity, video, clip)):
            stats["skipped"] += 1
            continue
        look = look or video_look(seed, identity, video)
        result = _layout(identity.dataset).write_clip(
            out_path, seed, identity, video, clip, look, interference, realistic
        )
        stats["clips"] += 1
        stats["files"] += result["files"]
    return stats


def _identity_json(p: IdentityPlan) -> dict:
    return {
        "dataset": p.dataset,
        "identity": p.identity,
        "name": p.name,
        "set": p.set,
        "wen_split": p.wen_split,
        # the split an evaluation uses by default: Wen letter split (vox1), dev->train / test (vox2)
        "split": p.wen_split if p.dataset == "voxceleb1" else ("test" if p.set == "test" else "train"),
        "nationality": p.nationality,
        "gender": p.shared.gender,
        "age_band": p.shared.age_band,
        "group": p.shared.group,
        "face": traits_to_json(p.face),
        "voice": traits_to_json(p.voice),
        "videos": [
            {
                "ytid": v.ytid,
                "clips": [{"clip": c.clip, "start_frame": c.start_frame, "seconds": c.seconds} for c in v.clips],
            }
            for v in p.videos
        ],
    }


def oracle_pools(plans: list[IdentityPlan]) -> dict[str, list]:
    """Evaluation pools whose oracle accuracy is recorded."""
    v1 = [p for p in plans if p.dataset == "voxceleb1"]
    v2 = [p for p in plans if p.dataset == "voxceleb2"]
    pools = {
        "voxceleb1/wen_test": [p.shared for p in v1 if p.wen_split == "test"],
        "voxceleb1/wen_val": [p.shared for p in v1 if p.wen_split == "val"],
        "voxceleb1/wen_train": [p.shared for p in v1 if p.wen_split == "train"],
        "voxceleb1/all": [p.shared for p in v1],
        "voxceleb2/test": [p.shared for p in v2 if p.set == "test"],
        "voxceleb2/dev": [p.shared for p in v2 if p.set == "dev"],
        "voxceleb2/all": [p.shared for p in v2],
    }
    return pools


def ground_truth(spec: CorpusSpec, inject_faults: bool, plans: list[IdentityPlan]) -> dict:
    spec_json = asdict(spec)
    if not spec.interference:  # corpora made before --interference existed stay the same corpus
        spec_json.pop("interference")
    if not spec.realistic:  # likewise for --realistic
        spec_json.pop("realistic")
    return {
        "format_version": FORMAT_VERSION,
        "spec": spec_json,
        "inject_faults": inject_faults,
        "chance": CHANCE,
        "oracle": oracle_report(oracle_pools(plans)),
        "oracle_rule": "knows gender, age band and appearance group of probe and both candidates; "
        "picks the candidate matching the probe's attributes; ties score 0.5",
        "identities": [_identity_json(p) for p in plans],
    }


def _check_out_dir(out: Path, truth: dict) -> None:
    """Refuse to mix two different corpora in one folder."""
    if not out.exists() or not any(out.iterdir()):
        return
    previous = out / GROUND_TRUTH
    if not previous.exists():
        raise CorpusExistsError(f"{out} is not empty and holds no {GROUND_TRUTH}; choose an empty or new --out folder")
    old = json.loads(previous.read_text(encoding="utf-8"))
    if old.get("spec") != truth["spec"] or old.get("inject_faults") != truth["inject_faults"]:
        raise CorpusExistsError(
            f"{out} holds a corpus made with other arguments ({old.get('spec')}, faults={old.get('inject_faults')}); "
            "delete it or choose another --out"
        )


def _disk_usage(out: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(out):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(root, name))
    return files, size


def make_corpus(
    out: str | Path,
    identities: int = 6,
    videos_per_identity: int = 2,
    clips_per_video: int = 1,
    seed: int = 0,
    min_seconds: float = 4.0,
    max_seconds: float = 6.0,
    workers: int = 2,
    inject_faults: bool = False,
    progress: bool = True,
    interference: float = 0.0,
    realistic: bool = False,
) -> dict:
    """Write a synthetic VoxCeleb1 + VoxCeleb2 corpus under `out`; returns the run summary.

    Stable API for other tests: `make_corpus(tmp_path, identities=6, videos_per_identity=2,
    clips_per_video=1, min_seconds=1.0, max_seconds=1.5, workers=1)` gives a tiny corpus in a
    few seconds. Same arguments give byte-identical files (timing and worker count never enter a
    file). Re-running on the same folder with the same arguments resumes/refreshes it; a folder
    holding anything else is refused with CorpusExistsError.
    """
    started = time.perf_counter()
    out = Path(out)
    spec = CorpusSpec(
        identities, videos_per_identity, clips_per_video, seed, min_seconds, max_seconds, interference, realistic
    )
    spec.validate()
    if workers < 1:
        raise ValueError("--workers must be >= 1")
    plans = plan_corpus(spec)
    truth = ground_truth(spec, inject_faults, plans)
    _check_out_dir(out, truth)
    out.mkdir(parents=True, exist_ok=True)
    media.write_text(out / GROUND_TRUTH, json.dumps(truth, indent=1) + "\n")

    jobs = [(p, v) for p in plans for v in p.videos]
    total = sum(len(v.clips) for _, v in jobs)
    totals = {"clips": 0, "skipped": 0, "files": 0}
    with tqdm(total=total, unit="clip", desc="synth", disable=None if progress else True) as bar:
        if workers == 1:
            for p, v in jobs:
                stats = render_video(str(out), seed, p, v, interference, realistic)
                for k in totals:
                    totals[k] += stats[k]
                bar.update(len(v.clips))
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=_MP_CONTEXT) as pool:
                futures = {pool.submit(render_video, str(out), seed, p, v, interference, realistic): v for p, v in jobs}
                for fut in as_completed(futures):
                    stats = fut.result()
                    for k in totals:
                        totals[k] += stats[k]
                    bar.update(len(futures[fut].clips))

    rows1 = [
        MetaRow(p.identity, p.name, p.shared.gender, p.set, p.nationality) for p in plans if p.dataset == "voxceleb1"
    ]
    rows2 = [MetaRow(p.identity, p.name, p.shared.gender, p.set) for p in plans if p.dataset == "voxceleb2"]
    (out / "voxceleb1").mkdir(exist_ok=True)
    (out / "voxceleb2").mkdir(exist_ok=True)
    write_vox1_meta(out / "voxceleb1" / "vox1_meta.csv", rows1)
    write_vox2_meta(out / "voxceleb2" / "vox2_meta.csv", rows2)

    faults: list[dict] = []
    if inject_faults:
        faults = write_faults(out, spec, plans)
        save_faults(out, faults)

    files, size = _disk_usage(out)
    seconds = time.perf_counter() - started
    by_split: dict[str, int] = {}
    for p in plans:
        split = f"{p.dataset}/{p.wen_split or p.set}"
        by_split[split] = by_split.get(split, 0) + 1
    return {
        "out": str(out),
        "identities": {"voxceleb1": len(rows1), "voxceleb2": len(rows2)},
        "identities_by_split": by_split,
        "clips": total,
        "clips_rendered": totals["clips"],
        "clips_skipped_existing": totals["skipped"],
        "files": files,
        "bytes": size,
        "seconds": seconds,
        "clips_per_second": total / seconds if seconds > 0 else None,
        "workers": workers,
        "oracle": truth["oracle"],
        "chance": CHANCE,
        "faults": len(faults),
    }
