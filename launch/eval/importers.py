"""Importers for the published voice-face trial lists, mapped onto an evaluation store.

Why: comparing with a paper is only fair on the paper's own trials. The published lists name
items with three different path conventions, none of which is our store key
(`vox1_<id>_<video>_<clip>`), so each item is parsed into (identity, video, clip or frame) and
resolved against the store. What cannot be resolved is counted per reason and reported, and a
trial with any unresolved item is dropped (never silently replaced by another trial).

Path conventions (see pipeline/voxceleb_meta/README.md and docs/REFERENCES.md#e9):

* voices, current layout: `idXXXXX/<ytid>/000NN.wav` (CMPC, Wen) -> exact clip;
* voices, Learnable-PINs (old name-keyed layout): `Name/<ytid>_<7 digits>.wav` -> exact clip
  (name -> id through vox1_meta.csv, `0000001` -> `00001`);
* faces, VoxCeleb1 1-fps frames: `Name/1.6/<ytid>/<frame>.jpg` (CMPC), `Name/<ytid>/<frame>.jpg`
  (PINs). The store keeps face crops per *clip*, and which clip a video frame falls in needs the
  VoxCeleb txt timings, which the store does not have: the frame resolves to a clip of the same
  video chosen by a stable hash of the path ("video" level). Same identity, same session;
* faces, VGGFace stills: `Name/<8 digits>.jpg` (Wen/seeking-the-shape lists). The store has no
  stills; they stay unresolved unless `face_fallback="identity"`, which maps a still to a clip of
  the same identity chosen by a stable hash of the path ("identity" level);
* `idXXXXX/<ytid>/000NN.jpg` (Wang VoxCeleb2 `image2` lists) -> exact clip; Wang VoxCeleb1 faces
  `/data/datasets/unzippedface/test/<Name>/<ytid>/<frame>.jpg` -> a clip of that video.

Wang/Zheng lists (AICANet, ACIENet, DSANet repositories, `test_{V2F,F2V}_8vox1_label50.txt`,
`test_V2_V2F_8vox1_label50.txt`): `probe candidate_A candidate_B [identity_index] label`, label =
index (0/1) of the matching candidate; the files are not bundled (see docs/REFERENCES.md#e10),
the format is supported for users who have them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from launch.eval.trials import TrialSet, store_fingerprint

_VOX_ID = re.compile(r"^id\d{5}$")
_PINS_VOICE = re.compile(r"^(?P<video>.+)_(?P<clip>\d{7})$")
FACE_FALLBACKS = ("video", "identity")


def _open_text(path: str | os.PathLike):
    raw = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig").replace("\r\n", "\n")


def file_md5(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def load_vox1_names(meta_path: str | os.PathLike) -> dict[str, str]:
    """VGGFace1 name -> VoxCeleb1 id, read with the ingest's meta parser (`pipeline.meta`), so the
    lists resolve through exactly the mapping the shards were written with."""
    from pipeline.meta import MetaError, read_meta

    try:
        meta = read_meta(meta_path, dataset="voxceleb1")
    except MetaError as exc:
        raise ValueError(str(exc)) from None
    return {row.name: row.identity for row in meta.identities.values() if row.name}


@dataclass(frozen=True)
class ItemRef:
    """A parsed list item: identity plus as much location as the path gives."""

    path: str
    identity: str | None
    video: str | None = None
    clip: str | None = None
    reason: str | None = None  # why the path itself could not be parsed


def parse_item(path: str, names: dict[str, str]) -> ItemRef:
    """Parse any of the published path conventions (module docstring) into an ItemRef."""
    parts = path.strip().replace("\\", "/").split("/")
    stem, ext = os.path.splitext(parts[-1])
    # absolute prefixes (Wang lists): keep the trailing `id/video/clip` when it is there
    if len(parts) >= 3 and _VOX_ID.match(parts[-3]):
        return ItemRef(path, parts[-3], parts[-2], stem)
    if len(parts) < 2:
        return ItemRef(path, None, reason="unrecognised path layout")
    if ext == ".jpg" and len(parts) > 3 and parts[-3] in names:
        return ItemRef(path, names[parts[-3]], parts[-2])  # Wang: .../<Name>/<ytid>/<frame>.jpg
    name = parts[0] if not _VOX_ID.match(parts[0]) else None
    identity = parts[0] if name is None else names.get(name)
    if identity is None:
        return ItemRef(path, None, reason="name not in vox1_meta.csv")
    if ext == ".wav" and len(parts) == 2:
        m = _PINS_VOICE.match(stem)
        if not m:
            return ItemRef(path, identity, reason="unrecognised PINs voice file name")
        return ItemRef(path, identity, m["video"], f"{int(m['clip']):05d}")
    if ext == ".jpg" and len(parts) == 2:
        return ItemRef(path, identity)  # VGGFace still
    if ext == ".jpg" and len(parts) >= 3:
        return ItemRef(path, identity, parts[-2])  # video frame: clip unknown
    return ItemRef(path, identity, reason="unrecognised path layout")


class StoreResolver:
    """Resolve ItemRefs to store keys; counts unresolved items per reason."""

    def __init__(self, store, face_fallback: str = "video"):
        if face_fallback not in FACE_FALLBACKS:
            raise ValueError(f"face_fallback must be one of {FACE_FALLBACKS}, got {face_fallback!r}")
        self.face_fallback = face_fallback
        self.exact: dict[tuple[str, str, str], str] = {}
        self.by_video: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.by_identity: dict[str, list[str]] = defaultdict(list)
        self.identity_of: dict[str, str] = {}
        for key, ident, video, clip in zip(store.keys, store.identities, store.videos, store.clips):
            self.exact[(ident, video, clip)] = key
            self.by_video[(ident, video)].append(key)
            self.by_identity[ident].append(key)
            self.identity_of[key] = ident
        for table in (self.by_video, self.by_identity):
            for v in table.values():
                v.sort()
        self.fingerprint = store_fingerprint(store.keys, store.identities, store.videos)
        self.store_path = str(store.path)

    @staticmethod
    def _pick(keys: list[str], path: str) -> str:
        return keys[zlib.crc32(path.encode()) % len(keys)]

    def resolve(self, ref: ItemRef) -> tuple[str | None, str | None]:
        """(key, None) or (None, reason)."""
        if ref.reason:
            return None, ref.reason
        if ref.identity not in self.by_identity:
            return None, "identity not in store"
        if ref.video is None:
            if self.face_fallback == "identity":
                return self._pick(self.by_identity[ref.identity], ref.path), None
            return None, "VGGFace still: the store has video faces only (face_fallback='identity' maps it)"
        if ref.clip is None:
            clips = self.by_video.get((ref.identity, ref.video))
            if clips:
                return self._pick(clips, ref.path), None
            if self.face_fallback == "identity":
                return self._pick(self.by_identity[ref.identity], ref.path), None
            return None, "video not in store"
        key = self.exact.get((ref.identity, ref.video, ref.clip))
        if key is None:
            reason = "clip not in store" if (ref.identity, ref.video) in self.by_video else "video not in store"
            return None, reason
        return key, None


@dataclass
class ImportReport:
    """What an import did: rows read, trials kept, unresolved items by reason (with examples)."""

    file: str
    md5: str
    kind: str
    rows: int = 0
    trials: int = 0
    unresolved: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, reason: str, path: str) -> None:
        self.unresolved[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(path)

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "md5": self.md5,
            "kind": self.kind,
            "rows": self.rows,
            "trials": self.trials,
            "dropped_rows": self.rows - self.trials,
            "unresolved_items": dict(self.unresolved),
            "examples": self.examples,
        }

    def summary(self) -> str:
        lines = [f"{Path(self.file).name}: {self.rows} rows -> {self.trials} trials"]
        for reason, n in self.unresolved.most_common():
            lines.append(f"  unresolved {n:>7}  {reason}  (e.g. {self.examples[reason][0]})")
        return "\n".join(lines)


# ---------------------------------------------------------------- raw readers (no store needed)


def list_kind(path: str | os.PathLike) -> tuple[str, str]:
    """(kind, direction) from the published file name; kind in pins_verify|wang|match|verify|retrieval."""
    name = Path(path).name
    if name.startswith("veriflist_test_"):
        return "pins_verify", "v2f"
    if "_label" in name and name.startswith(("test_", "train_")):
        return "wang", "f2v" if "F2V" in name else "v2f"
    direction = "f2v" if "f2v" in name else "v2f"
    if name.startswith(("matching_", "match_")):
        return "match", direction
    if name.startswith("verify_"):
        return "verify", direction
    if name.startswith(("reterival_", "retrieval_")) or name in ("jpg_20k.csv.gz", "wav_20k.csv.gz"):
        return "retrieval", direction
    raise ValueError(
        f"{name}: not a known published trial list (PINs veriflist_test_*, CMPC "
        "matching_*, Wen match_*/verify_*/reterival_*, Wang test_*_label50)"
    )


def read_rows(path: str | os.PathLike) -> list[tuple]:
    """Parse a published list into raw rows (paths as written), without any store.

    pins_verify: (voice, face, label); match: (probe, positive, negative); wang: (probe,
    candidate_A, candidate_B, index of the matching one); verify: (probe, candidate); retrieval: one row per item (path,), queries and gallery concatenated for the
    two-line Wen files, the item column for the CMPC 20k files.
    """
    kind, _ = list_kind(path)
    text = _open_text(path)
    if kind == "pins_verify":
        reader = csv.DictReader(io.StringIO(text))
        need = {"label", "voice-path", "face-path"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: PINs veriflist header must contain {sorted(need)}")
        return [(r["voice-path"], r["face-path"], int(r["label"])) for r in reader]
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if kind == "retrieval":
        if lines and "\t" in lines[0]:  # CMPC: header + `id<TAB>path`
            return [(ln.split("\t")[1].strip(),) for ln in lines[1:]]
        return [(p,) for ln in lines for p in ln.split()]
    if kind == "wang":
        rows = []
        for n, ln in enumerate(lines, 1):
            fields = ln.split()
            if len(fields) not in (4, 5) or fields[-1] not in ("0", "1"):
                raise ValueError(f"{path}:{n}: expected `probe cand_A cand_B [identity] label(0/1)`")
            rows.append((fields[0], fields[1], fields[2], int(fields[-1])))
        return rows
    width = 3 if kind == "match" else 2
    rows = []
    for n, ln in enumerate(lines, 1):
        fields = ln.split()
        if len(fields) != width:
            raise ValueError(f"{path}:{n}: expected {width} space-separated paths, got {len(fields)}")
        rows.append(tuple(fields))
    return rows


# ---------------------------------------------------------------- resolve into trials


def import_list(
    path: str | os.PathLike, resolver: StoreResolver, names: dict[str, str], split: str = ""
) -> tuple[TrialSet, ImportReport]:
    """Import one published list as a TrialSet (K = 2 matching or verification pairs)."""
    kind, direction = list_kind(path)
    if kind == "retrieval":
        raise ValueError(
            f"{Path(path).name}: retrieval lists have no trials to score; use resolve_items() to check their coverage"
        )
    rows = read_rows(path)
    report = ImportReport(file=str(path), md5=file_md5(path), kind=kind, rows=len(rows))
    cache: dict[str, tuple[str | None, str | None]] = {}

    def key_of(p: str) -> str | None:
        if p not in cache:
            cache[p] = resolver.resolve(parse_item(p, names))
        key, reason = cache[p]
        if key is None:
            report.note(reason, p)
        return key

    match: dict[str, list[dict]] = {}
    verify: dict[str, list[dict]] = {}
    if kind in ("match", "wang"):
        out = []
        for row in rows:
            if kind == "wang":  # (probe, A, B, label) -> positive = the labelled candidate
                probe, pos, neg, slot = row[0], row[1 + row[3]], row[2 - row[3]], row[3]
            else:  # CMPC / Wen: the positive is always the second column
                (probe, pos, neg), slot = row, 0
            keys = [key_of(p) for p in (probe, pos, neg)]
            if None in keys:
                continue
            ident = resolver.identity_of[keys[0]]
            out.append(
                {
                    "probe": keys[0],
                    "positive": keys[1],
                    "negatives": [keys[2]],
                    "negative_identities": [resolver.identity_of[keys[2]]],
                    # the published lists fix the positive's column; our K=2 slot follows it
                    "slots": [slot],
                    "identity": ident,
                }
            )
        match[direction] = out
        report.trials = len(out)
    else:
        out = []
        for row in rows:
            probe, cand = row[0], row[1]
            kp, kc = key_of(probe), key_of(cand)
            if kp is None or kc is None:
                continue
            ip, ic = resolver.identity_of[kp], resolver.identity_of[kc]
            label = int(row[2]) if kind == "pins_verify" else int(ip == ic)
            out.append({"probe": kp, "candidate": kc, "label": label, "identity": ip, "candidate_identity": ic})
        verify[direction] = out
        report.trials = len(out)
    header = {
        "seed": None,
        "split": split,
        "source": f"imported:{Path(path).name}",
        "list_md5": report.md5,
        "store": resolver.store_path,
        "store_fingerprint": resolver.fingerprint,
        "options": {"face_fallback": resolver.face_fallback},
        "max_k": 2,
        "counts": {"rows": report.rows, "trials": report.trials},
        "skipped": dict(report.unresolved),
    }
    return TrialSet(header=header, match=match, verify=verify), report


def resolve_items(
    path: str | os.PathLike, resolver: StoreResolver, names: dict[str, str]
) -> tuple[list[str], ImportReport]:
    """Resolve the items of a retrieval list; returns the resolved keys and the report."""
    rows = read_rows(path)
    report = ImportReport(file=str(path), md5=file_md5(path), kind="retrieval", rows=len(rows))
    keys = []
    for (p,) in rows:
        key, reason = resolver.resolve(parse_item(p, names))
        if key is None:
            report.note(reason, p)
        else:
            keys.append(key)
    report.trials = len(keys)
    return keys, report


def merge_trial_sets(sets: list[TrialSet]) -> TrialSet:
    """Combine imports (e.g. a v2f and an f2v list) into one TrialSet for one evaluation run."""
    if not sets:
        raise ValueError("nothing to merge")
    fps = {s.header["store_fingerprint"] for s in sets}
    if len(fps) != 1:
        raise ValueError("imported lists were resolved against different stores")
    match: dict[str, list[dict]] = {}
    verify: dict[str, list[dict]] = {}
    for s in sets:
        for sec_in, sec_out in ((s.match, match), (s.verify, verify)):
            for d, rows in sec_in.items():
                if d in sec_out and rows:
                    raise ValueError(f"two imported lists both provide {d} trials; import one per direction")
                if rows:
                    sec_out[d] = rows
    header = dict(sets[0].header)
    header["source"] = "imported:" + "+".join(s.header["source"].split(":", 1)[1] for s in sets)
    header["list_md5"] = {s.header["source"]: s.header.get("list_md5") for s in sets}
    header["counts"] = {s.header["source"]: s.header["counts"] for s in sets}
    header["skipped"] = {s.header["source"]: s.header["skipped"] for s in sets}
    return TrialSet(header=header, match=match, verify=verify)
