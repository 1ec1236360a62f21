"""The on-disk bookkeeping of one `<out>/<dataset>/<split>` shard set.

Commit protocol (what makes kill -9 at any moment safe), run by the shard task that extracted
the shard (`pipeline.shardtask`), wherever it runs:

1. `ShardWriter` publishes `shard-N.idx` then `shard-N.tar` by rename;
2. then the done-marker `.ingest/shard-N.json` (the shard's manifest rows, skips, byte size, plan fingerprint) is
   written by rename: a shard is *done* only when this sidecar exists, matches the current plan,
   and the tar on disk has the recorded size - otherwise it is redone (same bytes);
3. when every shard is done (the merge: the run itself, the last job-array part, or `--merge`),
   `manifest.jsonl`, `report.json` and (val/test) `eval.zarr` are built
   from the sidecars/shards, and `index.json` is written LAST: its presence with the current
   fingerprint means the split is complete, and it is all a loader reads.

`.ingest/plan.json` is written before any shard, so an interrupted split's identities are known
to the leak check of later runs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from shards.evalstore import EvalStoreWriter
from shards.format import audio_member, iter_tar_samples

STATE_DIR = ".ingest"
INDEX = "index.json"
MANIFEST = "manifest.jsonl"
REPORT = "report.json"
EVAL_STORE = "eval.zarr"
PLAN = "plan.json"


def write_json_atomic(path: Path, obj, indent: int | None = 1) -> None:
    """Write via a temp file + fsync + rename, so readers never see a half-written file."""
    # A unique temp name: parts and retried tasks may write the same file (same bytes) at once.
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(4).hex()}.partial")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=indent, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class SplitDir:
    """Paths and state of one split folder."""

    def __init__(self, out: Path, dataset: str, split: str):
        self.path = Path(out) / dataset / split
        self.state = self.path / STATE_DIR
        self.dataset, self.split = dataset, split

    def sidecar(self, shard_name: str) -> Path:
        return self.state / f"{shard_name}.json"

    def tar(self, shard_name: str) -> Path:
        return self.path / f"{shard_name}.tar"

    def index(self) -> dict | None:
        return read_json(self.path / INDEX)

    def plan(self) -> dict | None:
        return read_json(self.state / PLAN)

    def prepare(self) -> None:
        """Create the folders. Leftovers of killed writers are not touched here: another part
        may be writing right now; each shard task clears its own, the merge the rest."""
        self.state.mkdir(parents=True, exist_ok=True)

    def clean_leftovers(self) -> None:
        """Drop temp files of killed writers (`*.partial`) and attempt journals (`*.attempt`);
        only safe once no task of this split is running (at the merge)."""
        for leftover in (
            list(self.path.glob("*.partial")) + list(self.state.glob("*.partial")) + list(self.state.glob("*.attempt"))
        ):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def wipe(self) -> None:
        """Remove everything this ingest writes in the split folder (for --overwrite)."""
        if not self.path.exists():
            return
        for p in self.path.iterdir():
            if p.name in (STATE_DIR, EVAL_STORE, EVAL_STORE + ".partial"):
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.startswith("shard-") or p.name in (INDEX, MANIFEST, REPORT) or p.name.endswith(".partial"):
                p.unlink(missing_ok=True)

    def shard_done(self, shard_name: str, fingerprint: str) -> dict | None:
        """The sidecar of a finished shard, or None when the shard must be (re)written."""
        side = read_json(self.sidecar(shard_name))
        if not side or side.get("fingerprint") != fingerprint:
            return None
        if side["records"]:
            tar = self.tar(shard_name)
            if not tar.exists() or tar.stat().st_size != side["bytes"] or not tar.with_suffix(".idx").exists():
                return None
        return side


def existing_split_identities(dataset_dir: Path) -> dict[str, set[str]]:
    """Identities of every split already present (complete or in progress) under `<out>/<dataset>/`."""
    found: dict[str, set[str]] = {}
    if not dataset_dir.is_dir():
        return found
    for sub in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
        index = read_json(sub / INDEX)
        plan = read_json(sub / STATE_DIR / PLAN)
        ids: set[str] = set()
        if index and "identities" in index:
            ids |= set(index["identities"])
        if plan and "identities" in plan:
            ids |= set(plan["identities"])
        if ids:
            found[sub.name] = ids
    return found


def build_eval_store(split_dir: SplitDir, shard_names: list[str], num_faces: int, face_size: int, progress=None) -> int:
    """Second pass over the finished shards: decode faces to uint8 and the WAV/FLAC to int16 into
    `eval.zarr`, so evaluation gets exactly the shard contents with O(1) random access."""
    writer = EvalStoreWriter(split_dir.path / EVAL_STORE, num_faces=num_faces, face_size=face_size)
    count = 0
    try:
        for name in shard_names:
            for key, members, _ in iter_tar_samples(split_dir.tar(name)):
                info = json.loads(members["json"])
                faces = np.stack(
                    [np.asarray(Image.open(io.BytesIO(members[f"f{i}.jpg"])).convert("RGB")) for i in range(num_faces)]
                )
                audio, _ = sf.read(io.BytesIO(audio_member(members)), dtype="int16")
                writer.append(
                    key=key,
                    identity=info["identity"],
                    video=info["video"],
                    clip=info["clip"],
                    faces=faces,
                    audio=audio,
                    gender=info.get("gender"),
                    nationality=info.get("nationality"),
                )
                count += 1
                if progress is not None:
                    progress.update(1)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return count
