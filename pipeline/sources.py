"""Layout readers: turn a VoxCeleb1 / VoxCeleb2 folder tree into one `ClipRecord` per utterance.

Scanning only lists and stats files (no decoding), so it is cheap enough to run on every ingest
and gives the deterministic input list the shard plan is derived from. Layouts understood
(docs/REFERENCES.md#e7):

VoxCeleb2  `[dev|test/]mp4/idNNNNN/<ytid>/000NN.mp4`, optional audio `.../aac/<same>.m4a` and
           track files `.../txt/<same>.txt` next to the `mp4` folder.
VoxCeleb1  audio `[<part>/]wav/idNNNNN/<ytid>/000NN.wav` (or the older name-keyed
           `wav/<VGGFace1 name>/<ytid>_<7 digits>.wav`), optional `txt/` like VoxCeleb2, faces from
           one of
           * `unzippedIntervalFaces/data/<Name>/1.6/<ytid>/<utt#>/<frame>.jpg` - the 1-fps frames
             per utterance (`utt#` may be `1`, `00001`, ...: it is matched by number to the wav's
             `000NN`); the version level (`1.6`) is optional;
           * `<faces>/<Name>/<ytid>/<frame>.jpg` - frames per video (all frames of the video);
           * `<faces>/<Name>/<image>.jpg` - VGGFace-style stills per identity (e.g.
             `VGG_ALL_FRONTAL`); each clip then draws its faces from the identity's stills.
           Face folders may be named by VGGFace1 name or by VoxCeleb1 id.

Anything the readers cannot place is reported (`ScanResult.skipped` / `ignored`), never dropped
silently.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from shards.format import make_key

from .meta import ID_RE, Meta

_OLD_VOX1_STEM = re.compile(r"^(?P<ytid>.+)_(?P<utt>\d{7})$")
_TRAILING_NUMBER = re.compile(r"(\d+)$")
VOX1_FACE_DIRS = (
    "unzippedIntervalFaces/data",
    "unzippedIntervalFaces",
    "unzippedFaces/data",
    "unzippedFaces",
    "VGG_ALL_FRONTAL",
    "faces",
)
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_IGNORED_LIST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class ClipRecord:
    """Everything the extractor needs for one utterance; paths are absolute."""

    dataset: str  # "voxceleb1" | "voxceleb2"
    identity: str
    video: str
    clip: str
    source: str  # primary input relative to the root (mp4 or wav): stored in the sample json
    audio_path: str  # mp4 / m4a / wav
    video_path: str | None = None  # VoxCeleb2 mp4
    frame_paths: tuple[str, ...] = ()  # VoxCeleb1 face images, in frame order
    face_source: str = "video"  # video | interval_faces | video_frames | stills
    box_path: str | None = None
    fingerprint: str = ""  # hash of the relative input paths and sizes

    @property
    def key(self) -> str:
        return make_key(self.dataset, self.identity, self.video, self.clip)


@dataclass(frozen=True)
class Skip:
    """One unusable input: which file, a machine-readable kind and a human reason."""

    path: str
    kind: str
    reason: str
    key: str | None = None
    identity: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class ScanResult:
    clips: list[ClipRecord] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)  # inputs that cannot become a sample
    ignored: list[str] = field(default_factory=list)  # files that are not part of the layout
    ignored_count: int = 0

    def ignore(self, path: str) -> None:
        self.ignored_count += 1
        if len(self.ignored) < _IGNORED_LIST_LIMIT:
            self.ignored.append(path)


def _rel(path: str | Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _fingerprint(root: Path, paths: list[str | None]) -> str:
    sha = hashlib.sha1()
    for p in paths:
        if p is None:
            continue
        try:
            size = os.stat(p).st_size
        except OSError:
            size = -1
        sha.update(f"{_rel(p, root)}\0{size}\n".encode())
    return sha.hexdigest()[:16]


def _sorted_dirs(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _find_layout_dirs(root: Path, name: str) -> list[Path]:
    """`root/name` and `root/<part>/name` (dev/test or archive parts), in sorted order."""
    found = [root / name] if (root / name).is_dir() else []
    for entry in _sorted_dirs(root):
        if entry.is_dir() and (Path(entry.path) / name).is_dir():
            found.append(Path(entry.path) / name)
    return found


def _walk_three_levels(top: Path, ext: str, result: ScanResult, root: Path, tick=None):
    """Yield (identity_dir_name, video, stem, path) for `top/<id>/<video>/<stem><ext>`, and
    (identity_dir_name, None, file name, path) for a file directly in `top/<id>/` (the old
    name-keyed VoxCeleb1 layout; the caller decides whether it belongs to the layout).
    `tick()` is called once per identity folder (a progress bar for long scans)."""
    for id_entry in _sorted_dirs(top):
        if tick is not None:
            tick()
        if not id_entry.is_dir():
            result.ignore(_rel(id_entry.path, root))
            continue
        for vid_entry in _sorted_dirs(Path(id_entry.path)):
            if not vid_entry.is_dir():
                yield id_entry.name, None, vid_entry.name, vid_entry.path
                continue
            for f in _sorted_dirs(Path(vid_entry.path)):
                if f.is_file() and f.name.endswith(ext):
                    yield id_entry.name, vid_entry.name, f.name[: -len(ext)], f.path
                else:
                    result.ignore(_rel(f.path, root))


def _add_unique(result: ScanResult, seen: set[str], record: ClipRecord) -> None:
    """Keys must be unique in a shard set; the first input (sorted layout order) wins."""
    if record.key in seen:
        result.skipped.append(
            Skip(
                record.source,
                "duplicate_clip",
                f"another input already provides sample {record.key}",
                record.key,
                record.identity,
            )
        )
        return
    seen.add(record.key)
    result.clips.append(record)


def scan_voxceleb2(root: str | Path, audio: str = "auto", tick=None) -> ScanResult:
    """List VoxCeleb2 clips. `audio`: `auto` (the m4a when present, else the mp4's track),
    `m4a` (require the m4a), `mp4` (always the mp4's own audio track). `tick()`: called per
    identity folder walked (progress)."""
    if audio not in ("auto", "m4a", "mp4"):
        raise ValueError(f"audio must be auto, m4a or mp4, got {audio!r}")
    root = Path(root)
    result = ScanResult()
    mp4_dirs = _find_layout_dirs(root, "mp4")
    if not mp4_dirs:
        raise FileNotFoundError(
            f"no 'mp4' folder under {root} (expected {root}/dev/mp4/idNNNNN/... "
            f"or {root}/mp4/idNNNNN/...); is --root the VoxCeleb2 folder?"
        )
    seen: set[str] = set()
    used_m4a: set[str] = set()
    for mp4_dir in mp4_dirs:
        base = mp4_dir.parent
        for ident, video, stem, path in _walk_three_levels(mp4_dir, ".mp4", result, root, tick):
            if video is None or not ID_RE.match(ident):
                result.ignore(_rel(path, root))
                continue
            m4a = base / "aac" / ident / video / f"{stem}.m4a"
            txt = base / "txt" / ident / video / f"{stem}.txt"
            has_m4a = m4a.is_file()
            if has_m4a:
                used_m4a.add(str(m4a))
            if audio == "m4a" and not has_m4a:
                result.skipped.append(
                    Skip(
                        _rel(path, root),
                        "missing_audio",
                        f"no m4a at {_rel(m4a, root)} (--vox2-audio m4a)",
                        make_key("voxceleb2", ident, video, stem),
                        ident,
                    )
                )
                continue
            audio_path = str(m4a) if has_m4a and audio != "mp4" else path
            box = str(txt) if txt.is_file() else None
            record = ClipRecord(
                dataset="voxceleb2",
                identity=ident,
                video=video,
                clip=stem,
                source=_rel(path, root),
                audio_path=audio_path,
                video_path=path,
                face_source="video",
                box_path=box,
                fingerprint=_fingerprint(root, [path, audio_path if audio_path != path else None, box]),
            )
            _add_unique(result, seen, record)
    for aac_dir in _find_layout_dirs(root, "aac"):
        for ident, video, stem, path in _walk_three_levels(aac_dir, ".m4a", result, root):
            if video is not None and path not in used_m4a:
                result.skipped.append(
                    Skip(
                        _rel(path, root),
                        "missing_video",
                        "m4a without a matching mp4: no faces for this clip",
                        make_key("voxceleb2", ident, video, stem),
                        ident,
                    )
                )
    return result


@dataclass
class _FaceIndex:
    """Face images of one identity folder, grouped by utterance, by video, or as stills."""

    kind: str  # interval_faces | video_frames | stills
    by_utterance: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    by_video: dict[str, list[str]] = field(default_factory=dict)
    stills: list[str] = field(default_factory=list)


def _frame_sort_key(path: str) -> tuple[int, str]:
    stem = Path(path).stem
    m = _TRAILING_NUMBER.search(stem)
    return (int(m.group(1)) if m else -1, stem)


def _images(path: Path) -> list[str]:
    imgs = [e.path for e in _sorted_dirs(path) if e.is_file() and e.name.lower().endswith(IMAGE_EXTS)]
    return sorted(imgs, key=_frame_sort_key)


def _index_identity_faces(folder: Path) -> _FaceIndex | None:
    subdirs = [e for e in _sorted_dirs(folder) if e.is_dir()]
    # Skip version levels like `1.6` (YouTube ids never contain a dot).
    while len(subdirs) == 1 and "." in subdirs[0].name:
        folder = Path(subdirs[0].path)
        subdirs = [e for e in _sorted_dirs(folder) if e.is_dir()]
    stills = _images(folder)
    if not subdirs:
        return _FaceIndex("stills", stills=stills) if stills else None
    index = _FaceIndex("video_frames")
    for vid in subdirs:
        utt_dirs = [e for e in _sorted_dirs(Path(vid.path)) if e.is_dir()]
        if utt_dirs:
            index.kind = "interval_faces"
            for utt in utt_dirs:
                m = _TRAILING_NUMBER.search(utt.name)
                if m:
                    index.by_utterance[(vid.name, int(m.group(1)))] = _images(Path(utt.path))
        else:
            index.by_video[vid.name] = _images(Path(vid.path))
    return index


def find_vox1_face_root(root: Path, faces: str | Path | None) -> Path | None:
    if faces is not None:
        faces = Path(faces)
        if not faces.is_dir():
            raise FileNotFoundError(f"--faces {faces} is not a folder")
        return faces
    for name in VOX1_FACE_DIRS:
        if (root / name).is_dir():
            return root / name
    return None


def scan_voxceleb1(root: str | Path, meta: Meta, faces: str | Path | None = None, tick=None) -> ScanResult:
    """List VoxCeleb1 utterances with their face images (see the module docstring for layouts).
    `tick()`: called per identity folder walked (progress)."""
    root = Path(root)
    result = ScanResult()
    wav_dirs = _find_layout_dirs(root, "wav")
    if not wav_dirs:
        raise FileNotFoundError(
            f"no 'wav' folder under {root} (expected {root}/wav/idNNNNN/<ytid>/"
            "000NN.wav); is --root the VoxCeleb1 folder?"
        )
    face_root = find_vox1_face_root(root, faces)
    if face_root is None:
        raise FileNotFoundError(
            f"no face folder under {root} (looked for {', '.join(VOX1_FACE_DIRS)}); "
            "pass --faces DIR with <Name>/... face images"
        )
    face_cache: dict[str, _FaceIndex | None] = {}
    shared_digest: dict[tuple, str] = {}  # per-video frames / stills are shared by many clips

    def faces_of(identity: str) -> _FaceIndex | None:
        if identity not in face_cache:
            name = meta.name_for_id(identity)
            folder = next((face_root / n for n in (name, identity) if n and (face_root / n).is_dir()), None)
            face_cache[identity] = _index_identity_faces(folder) if folder else None
            if len(face_cache) > 64:  # identities are walked in order: keep memory flat
                face_cache.pop(next(iter(face_cache)))
        return face_cache[identity]

    seen: set[str] = set()
    for wav_dir in wav_dirs:
        base = wav_dir.parent
        for folder, video, stem, path in _walk_three_levels(wav_dir, ".wav", result, root, tick):
            if video is None:
                # old name-keyed layout: wav/<Name>/<ytid>_<7 digits>.wav
                m = _OLD_VOX1_STEM.match(stem[:-4]) if stem.endswith(".wav") else None
                identity = meta.id_for_name(folder)
                if not m or identity is None:
                    result.ignore(_rel(path, root))
                    continue
                video, utt = m.group("ytid"), int(m.group("utt"))
            else:
                identity = folder if ID_RE.match(folder) else meta.id_for_name(folder)
                if identity is None:
                    result.skipped.append(
                        Skip(
                            _rel(path, root),
                            "missing_meta_row",
                            f"folder {folder!r} is neither an id nor a VGGFace1 name in the meta file",
                        )
                    )
                    continue
                m = _TRAILING_NUMBER.search(stem)
                if not m:
                    result.ignore(_rel(path, root))
                    continue
                utt = int(m.group(1))
            clip = f"{utt:05d}"
            key = make_key("voxceleb1", identity, video, clip)
            index = faces_of(identity)
            frames: list[str] = []
            if index is not None:
                if index.kind == "interval_faces":
                    frames = index.by_utterance.get((video, utt), [])
                elif index.kind == "video_frames":
                    frames = index.by_video.get(video, [])
                else:
                    frames = index.stills
            if not frames:
                where = (
                    "no face folder for this identity"
                    if index is None
                    else f"no {index.kind} images for video {video} utterance {utt}"
                )
                result.skipped.append(Skip(_rel(path, root), "missing_faces", where, key, identity))
                continue
            txt = base / "txt" / folder / video / f"{stem}.txt"
            box = str(txt) if txt.is_file() else None
            if index.kind == "interval_faces":
                faces_digest = _fingerprint(face_root, list(frames))
            else:
                group = (identity, video if index.kind == "video_frames" else None)
                if group not in shared_digest:
                    if len(shared_digest) > 4096:
                        shared_digest.clear()
                    shared_digest[group] = _fingerprint(face_root, list(frames))
                faces_digest = shared_digest[group]
            record = ClipRecord(
                dataset="voxceleb1",
                identity=identity,
                video=video,
                clip=clip,
                source=_rel(path, root),
                audio_path=path,
                frame_paths=tuple(frames),
                face_source=index.kind,
                box_path=box,
                fingerprint=_fingerprint(root, [path, box]) + faces_digest,
            )
            _add_unique(result, seen, record)
    return result
