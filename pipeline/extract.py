"""Per-clip extraction: face crops (JPEG) + 16 kHz mono audio (WAV or FLAC) + the sample json.

Runs inside ingest worker processes, one clip at a time, and turns every problem with the input
into a `ClipError(kind, path, reason)` so the orchestrator can skip and report it instead of
crashing. Output bytes depend only on the input files and `ExtractSettings` (no timestamps, fixed
JPEG/FLAC encoders, frame choice seeded by (seed, key)), which is what makes resumed and
uninterrupted ingests byte-identical.

Choices and why:
* Frames are decoded with PyAV by default (`video_backend="pyav"`: one sequential pass that keeps
  only the chosen frames; for ~8 s clips this beats seeking and avoids decord's ~550 MB import);
  `decord` (frame-accurate `get_batch` with keyframe seeking) gives the same frames. `even`
  spreads the F frames over the clip (frame `floor((i + 0.5) * n / F)`); `random` draws F
  distinct frames from a generator seeded by (seed, key), so it is random across clips but
  identical on every re-run.
* A truncated `faststart` mp4 opens with fewer frames than the header declares (decord trusts the
  sample table; PyAV's decode ends early); comparing with the header's frame count catches that.
* Audio is kept losslessly as PCM_16, by default as a `flac` member with a per-frame seek table
  (`shards.flac.encode_flac_seekable`; ARCHITECTURE.md §1): ~0.74 of the PCM bytes, which brings
  VoxCeleb2 shards under the source's size, and the loader cuts each sample's crop window from it
  without decoding when the sample enters its buffer. `wav` (`audio_format`) is plain PCM
  (a crop is a byte slice; no decode at all, more disk). docs/LOADER.md ("Compact audio") has
  the measured trade-off. Input wav is read exactly with soundfile (resampled
  with a polyphase filter only if it is not 16 kHz mono); mp4/m4a audio is decoded and resampled
  to 16 kHz mono by the selected backend.
* Silence and near-empty clips carry no voice: below `silence_dbfs` RMS or `min_audio_seconds`
  the clip is skipped, as are zero-length tracks.
* txt boxes describe the original YouTube frame, not the released face crops (VoxCeleb2 mp4s
  and VoxCeleb1 face jpgs are already cropped), so cropping by them is opt-in (`crop_boxes`);
  box files are always parsed, and a malformed one skips the clip (a broken download).
"""

from __future__ import annotations

import io
import json
import math
import zlib
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from shards.flac import encode_flac_seekable
from shards.wav import encode_pcm16_wav

from .boxes import BoxFileError, Track, read_track
from .sources import ClipRecord

SAMPLE_RATE = 16000
JPEG_QUALITY = 90
#: Fraction of the header's frame count that decord must be able to index; below it the file
#: is treated as truncated.
_MIN_FRAME_FRACTION = 0.9
#: Default smallest face side kept (pixels of the square cut from the frame, before resizing).
#: Below it a "face" is a smear: a 17x9 video upscaled to 224x224 crops teaches nothing and
#: used to pass silently. 32 px is conservative: VoxCeleb2 mp4s are 224x224 and VoxCeleb1 face
#: boxes are about 100-200 px of a 360-high frame (the txt example row is 130 px); it rejects
#: thumbnails and broken encodes. (Not measured on the whole real VoxCeleb1 face release.)
MIN_FACE_SIZE = 32


class ClipError(Exception):
    """An input of this clip cannot be used; `kind` is machine-readable, `reason` for humans."""

    def __init__(self, kind: str, path: str, reason: str):
        super().__init__(f"{kind}: {path}: {reason}")
        self.kind, self.path, self.reason = kind, path, reason


@dataclass(frozen=True)
class ExtractSettings:
    frames_per_clip: int = 4
    face_size: int = 224
    frame_selection: str = "even"  # even | random
    seed: int = 0
    crop_boxes: bool = False
    jpeg_quality: int = JPEG_QUALITY
    min_audio_seconds: float = 0.5
    silence_dbfs: float = -60.0
    video_backend: str = "pyav"  # pyav | decord (mp4/m4a decoding)
    audio_format: str = "flac"  # flac (PCM_16 with a per-frame seek table, ~0.74 of wav) | wav (PCM_16)
    #: smallest face square (pixels, before resizing to face_size) worth keeping; 0 = no limit
    min_face_size: int = MIN_FACE_SIZE

    def __post_init__(self) -> None:
        if self.frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be >= 1, got {self.frames_per_clip}")
        if not 16 <= self.face_size <= 1024:
            raise ValueError(f"face_size must be in [16, 1024], got {self.face_size}")
        if self.frame_selection not in ("even", "random"):
            raise ValueError(f"frame_selection must be even or random, got {self.frame_selection!r}")
        if self.video_backend not in ("pyav", "decord"):
            raise ValueError(f"video_backend must be pyav or decord, got {self.video_backend!r}")
        if self.audio_format not in AUDIO_ENCODERS:
            raise ValueError(f"audio_format must be one of {sorted(AUDIO_ENCODERS)}, got {self.audio_format!r}")
        if self.min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0 (0 = no limit), got {self.min_face_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExtractedSample:
    key: str
    members: dict[str, bytes]
    duration: float
    dropped: list[dict]  # inputs dropped while the clip itself was kept (e.g. one bad jpg)


def clip_rng(seed: int, key: str) -> np.random.Generator:
    """Generator for (seed, key): same stream in any process and any order (crc32, not hash())."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode())])


def choose_frames(n: int, count: int, mode: str, rng: np.random.Generator | None = None) -> list[int]:
    """Indices of `count` frames out of `n` (sorted). Repeats frames only when n < count."""
    if n <= 0:
        raise ValueError("no frames to choose from")
    if mode == "even":
        return [min(n - 1, int((i + 0.5) * n / count)) for i in range(count)]
    if rng is None:
        raise ValueError("random frame selection needs a generator")
    picks = rng.choice(n, size=count, replace=n < count)
    return sorted(int(i) for i in picks)


def _square_box(left: int, top: int, right: int, bottom: int, width: int, height: int):
    """Grow a box to a square around its centre (faces must not be squashed), inside the image."""
    side = min(max(right - left, bottom - top), width, height)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x0, y0, x0 + side, y0 + side


def face_side(frame: np.ndarray, box: tuple[int, int, int, int] | None) -> int:
    """Side in pixels of the square `to_face_crop` cuts from `frame` (before resizing)."""
    height, width = frame.shape[:2]
    left, top, right, bottom = box if box is not None else (0, 0, width, height)
    x0, _, x1, _ = _square_box(left, top, right, bottom, width, height)
    return x1 - x0


def _small_face(side: int, settings: ExtractSettings) -> str | None:
    """The reason a face of `side` pixels is too small to keep, or None."""
    if settings.min_face_size and side < settings.min_face_size:
        return (
            f"the face is {side} px, below the {settings.min_face_size} px minimum "
            f"(--min-face-size); it would be upscaled to {settings.face_size} px"
        )
    return None


def to_face_crop(frame: np.ndarray, size: int, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """Crop (box, else the centred square) and resize to size x size, antialiased bilinear."""
    height, width = frame.shape[:2]
    left, top, right, bottom = box if box is not None else (0, 0, width, height)
    square = _square_box(left, top, right, bottom, width, height)
    img = Image.fromarray(np.ascontiguousarray(frame))
    if square != (0, 0, width, height):
        img = img.crop(square)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img.convert("RGB"))


def encode_jpeg(face: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_flac(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """int16 mono -> FLAC with one seek point per frame, so the loader can cut crop windows
    from it without decoding (`shards.flac`; +0.3% bytes, ~0.3 ms of ingest CPU per clip)."""
    return encode_flac_seekable(audio, sample_rate)


# the audio member's name (= its extension in the tar) -> encoder of int16 mono 16 kHz samples;
# docs/LOADER.md ("Compact audio") has the measured trade-off
AUDIO_ENCODERS = {"wav": partial(encode_pcm16_wav, sample_rate=SAMPLE_RATE), "flac": encode_flac}


def _float_to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _resample_int16(x: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(rate, SAMPLE_RATE)
    y = resample_poly(x.astype(np.float64) / 32768.0, SAMPLE_RATE // g, rate // g)
    return _float_to_int16(y)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def downmix(samples: np.ndarray) -> np.ndarray:
    """The one downmix rule of every container: the mean of the channels (``[channels, n]`` float).

    Each reader used its own: the channel mean for WAV, FFmpeg's matrix for m4a/mp4 (PyAV's mono
    resampler, decord's mono reader), and decord's came out 3 dB above the mean for the same
    stereo recording (tested). Every container is now decoded with its channels and downmixed here.
    """
    return samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]


def _read_audio_pyav(path: str) -> np.ndarray:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ClipError("no_audio_track", path, "the file has no audio stream")
            stream = container.streams.audio[0]
            # resample only (float, planar, the source's own channels), then downmix() ourselves
            resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)
            chunks = []
            for frame in container.decode(stream):
                chunks += [downmix(r.to_ndarray()) for r in resampler.resample(frame)]
            chunks += [downmix(r.to_ndarray()) for r in resampler.resample(None)]
    except ClipError:
        raise
    except Exception as err:  # av.FFmpegError and friends
        raise ClipError("unreadable_audio", path, f"cannot decode audio: {_first_line(err)}") from None
    return _float_to_int16(np.concatenate(chunks)) if chunks else np.zeros(0, np.int16)


def read_audio(path: str, backend: str = "pyav") -> np.ndarray:
    """16 kHz mono int16 samples of a wav / m4a / mp4 file; `ClipError` when unusable."""
    if Path(path).stat().st_size == 0:
        raise ClipError("zero_length_audio", path, "file is empty (0 bytes)")
    if path.lower().endswith((".wav", ".flac")):
        try:
            # float, whatever the subtype: asking libsndfile for int16 turns a FLOAT/DOUBLE WAV
            # into zeros (no scaling), which then looked like digital silence
            data, rate = sf.read(path, dtype="float64", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise ClipError("unreadable_audio", path, f"soundfile cannot read it: {err}") from None
        audio = _float_to_int16(downmix(data.T)) if data.size else np.zeros(0, np.int16)
        return audio if rate == SAMPLE_RATE or audio.size == 0 else _resample_int16(audio, rate)
    if backend == "pyav":
        return _read_audio_pyav(path)
    import decord

    try:
        reader = decord.AudioReader(path, ctx=decord.cpu(0), sample_rate=SAMPLE_RATE, mono=False)
        samples = downmix(np.atleast_2d(reader[:].asnumpy()))
    except Exception as err:  # decord raises its own error classes plus RuntimeError
        if "audio stream" in str(err).lower():
            raise ClipError("no_audio_track", path, "the file has no audio stream") from None
        raise ClipError("unreadable_audio", path, f"cannot decode audio: {_first_line(err)}") from None
    return _float_to_int16(samples)


def check_audio(audio: np.ndarray, path: str, settings: ExtractSettings) -> float:
    """Return the duration in seconds, or raise for empty, too short or silent audio."""
    if audio.size == 0:
        raise ClipError("zero_length_audio", path, "the audio track has no samples")
    duration = audio.size / SAMPLE_RATE
    rms = float(np.sqrt(np.mean(np.square(audio.astype(np.float64)))))
    if rms == 0:
        raise ClipError("silent_audio", path, "digital silence (every sample is zero)")
    dbfs = 20 * math.log10(rms / 32768.0)
    if dbfs < settings.silence_dbfs:
        raise ClipError(
            "silent_audio", path, f"RMS level {dbfs:.1f} dBFS is below {settings.silence_dbfs} dBFS (--silence-dbfs)"
        )
    if duration < settings.min_audio_seconds:
        raise ClipError(
            "short_audio",
            path,
            f"{duration:.3f} s is shorter than {settings.min_audio_seconds} s (--min-audio-seconds)",
        )
    return duration


_REFORMATTER = None


def _reformatter():
    """One per process: it keeps FFmpeg's colour-conversion context from frame to frame and clip
    to clip (VoxCeleb2 clips share one size), 3-4x faster than `frame.to_ndarray(format="rgb24")`,
    which builds a new context per frame; the pixels are identical (tested against decord)."""
    global _REFORMATTER
    if _REFORMATTER is None:
        from av.video.reformatter import VideoReformatter

        _REFORMATTER = VideoReformatter()
    return _REFORMATTER


def _decode_frames_pyav(path: str, settings: ExtractSettings, key: str):
    """Sequential decode keeping only the chosen frames: for short clips (VoxCeleb: ~8 s at
    25 fps) this beats seeking and avoids importing decord (~550 MB RSS per process)."""
    import av

    reformatter = _reformatter()

    def one_pass(container, wanted: set[int]):
        stream = container.streams.video[0]
        got, n = {}, 0
        for frame in container.decode(stream):
            if n in wanted:
                got[n] = reformatter.reformat(frame, format="rgb24").to_ndarray()
            n += 1
            if wanted and len(got) == len(wanted) and n > max(wanted):
                return got, None
        return got, n

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ClipError("no_video_track", path, "the file has no video stream")
            container.streams.video[0].thread_type = "NONE"  # one thread per worker process
            declared = container.streams.video[0].frames
            n = declared
            if n <= 0:  # frame count not in the header: count first
                _, n = one_pass(container, set())
                container.seek(0)
            if not n:
                raise ClipError("corrupt_video", path, "the video has no decodable frames")
            idx = choose_frames(n, settings.frames_per_clip, settings.frame_selection, clip_rng(settings.seed, key))
            got, counted = one_pass(container, set(idx))
            if counted is not None and len(got) < len(set(idx)):
                # fewer frames than the header says: judge, then choose again among those present
                if counted == 0 or (declared and counted < _MIN_FRAME_FRACTION * declared):
                    raise ClipError(
                        "corrupt_video", path, f"truncated: {counted} of {declared} declared frames decodable"
                    )
                container.seek(0)
                idx = choose_frames(
                    counted, settings.frames_per_clip, settings.frame_selection, clip_rng(settings.seed, key)
                )
                got, _ = one_pass(container, set(idx))
    except ClipError:
        raise
    except Exception as err:
        raise ClipError("corrupt_video", path, f"cannot decode the video: {_first_line(err)}") from None
    if len(got) < len(set(idx)):
        raise ClipError("corrupt_video", path, f"frames {sorted(set(idx) - set(got))} cannot be decoded")
    return [got[i] for i in idx], idx


def _decode_frames_decord(path: str, settings: ExtractSettings, key: str):
    import av
    import decord

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ClipError("no_video_track", path, "the file has no video stream")
            declared = container.streams.video[0].frames
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        n = len(reader)
    except ClipError:
        raise
    except Exception as err:
        raise ClipError("corrupt_video", path, f"cannot open the video: {_first_line(err)}") from None
    if n == 0:
        raise ClipError("corrupt_video", path, "the video has no decodable frames")
    if declared and n < _MIN_FRAME_FRACTION * declared:
        raise ClipError("corrupt_video", path, f"truncated: {n} of {declared} declared frames present")
    idx = choose_frames(n, settings.frames_per_clip, settings.frame_selection, clip_rng(settings.seed, key))
    try:
        frames = reader.get_batch(idx).asnumpy()
    except Exception as err:
        raise ClipError("corrupt_video", path, f"cannot decode frames {idx}: {_first_line(err)}") from None
    return list(frames), idx


def _read_video_frames(record: ClipRecord, settings: ExtractSettings, track: Track | None):
    path = record.video_path
    assert path is not None
    decode = _decode_frames_pyav if settings.video_backend == "pyav" else _decode_frames_decord
    frames, idx = decode(path, settings, record.key)
    faces = []
    for i, frame in zip(idx, frames):
        box = None
        if track is not None and settings.crop_boxes:
            try:
                box = track.pixel_box(track.box_for_index(i), frame.shape[1], frame.shape[0])
            except BoxFileError as err:
                raise ClipError("bad_box_file", record.box_path or "", str(err)) from None
        small = _small_face(face_side(frame, box), settings)
        if small:
            raise ClipError("small_face", path, f"{small} (frame {i}, {frame.shape[1]}x{frame.shape[0]})")
        faces.append(to_face_crop(frame, settings.face_size, box))
    return faces, idx


def _frame_number(path: str) -> int | None:
    digits = "".join(ch for ch in Path(path).stem if ch.isdigit())
    return int(digits) if digits else None


def _read_image_frames(record: ClipRecord, settings: ExtractSettings, track: Track | None):
    """Decode F images; unreadable ones are dropped (and reported) and others chosen instead.

    Utterance folders are small, so every image is checked there (a bad jpg is always reported);
    for per-video frames and identity stills only the chosen ones are decoded.
    """
    paths = list(record.frame_paths)
    dropped: list[dict] = []
    decoded: dict[str, np.ndarray] = {}

    def load(p: str) -> np.ndarray | None:
        if p not in decoded:
            try:
                with Image.open(p) as img:
                    image = np.asarray(img.convert("RGB"))
            except Exception as err:
                dropped.append(
                    {"path": p, "kind": "unreadable_image", "reason": f"cannot decode image: {_first_line(err)}"}
                )
                return None
            small = None if settings.crop_boxes else _small_face(face_side(image, None), settings)
            if small:  # (with --crop-boxes the box decides, checked below)
                dropped.append(
                    {"path": p, "kind": "small_face", "reason": f"{small} ({image.shape[1]}x{image.shape[0]} image)"}
                )
                return None
            decoded[p] = image
        return decoded.get(p)

    if record.face_source == "interval_faces":
        paths = [p for p in paths if load(p) is not None]
    rng = clip_rng(settings.seed, record.key)
    mode = "random" if record.face_source == "stills" else settings.frame_selection
    while True:
        if not paths:
            first = dropped[0]["path"] if dropped else record.source
            if dropped and all(d["kind"] == "small_face" for d in dropped):
                raise ClipError(
                    "small_face", first, f"every face image of the clip is too small ({dropped[0]['reason']})"
                )
            raise ClipError(
                "unreadable_image",
                first,
                f"none of the clip's {len(record.frame_paths)} face images can be used "
                f"({dropped[0]['reason'] if dropped else 'no images'})",
            )
        idx = choose_frames(len(paths), settings.frames_per_clip, mode, rng)
        bad = [paths[i] for i in sorted(set(idx)) if load(paths[i]) is None]
        if not bad:
            break
        paths = [p for p in paths if p not in bad]
    faces, used = [], []
    for i in idx:
        frame = decoded[paths[i]]
        box = None
        if track is not None and settings.crop_boxes:
            number = _frame_number(paths[i])
            if number is not None:
                try:
                    box = track.pixel_box(track.box_for_frame(number), frame.shape[1], frame.shape[0])
                except BoxFileError as err:
                    raise ClipError("bad_box_file", record.box_path or "", str(err)) from None
            small = _small_face(face_side(frame, box), settings)
            if small:
                raise ClipError("small_face", paths[i], f"{small} (the txt box of this frame)")
        faces.append(to_face_crop(frame, settings.face_size, box))
        used.append(Path(paths[i]).name)
    return faces, used, dropped


def _real_cause(
    record: ClipRecord, settings: ExtractSettings, track: Track | None, audio_error: ClipError
) -> ClipError:
    """The error to report when the audio cannot be read. The audio is read first (cheaper, and
    most skips are audio skips), so a truncated, empty or non-media mp4 used to surface as
    `unreadable_audio` / `zero_length_audio`; when the clip's video is broken too, the damaged
    container is the cause: `corrupt_video` (a separate unreadable m4a is named in the reason)."""
    if audio_error.kind not in ("unreadable_audio", "zero_length_audio") or record.video_path is None:
        return audio_error
    try:
        _read_video_frames(record, settings, track)
    except ClipError as video_error:
        if video_error.kind in ("corrupt_video", "no_video_track"):
            also = (
                ""
                if record.audio_path == record.video_path
                else f"; its audio {Path(record.audio_path).name} is unreadable too"
            )
            return ClipError(video_error.kind, video_error.path, video_error.reason + also)
    return audio_error


def extract_clip(record: ClipRecord, split: str, identity_info: dict, settings: ExtractSettings) -> ExtractedSample:
    """Build the members (`f0.jpg`..`f{F-1}.jpg`, `wav` or `flac`, `json`) of one sample.

    `identity_info` holds the meta fields for the json: gender, nationality, name, vggface2_id.
    """
    track = None
    if record.box_path is not None:
        try:
            track = read_track(record.box_path)
        except BoxFileError as err:
            raise ClipError("bad_box_file", record.box_path, str(err)) from None
    try:
        audio = read_audio(record.audio_path, settings.video_backend)
    except ClipError as err:
        raise _real_cause(record, settings, track, err) from None
    duration = check_audio(audio, record.audio_path, settings)
    dropped: list[dict] = []
    if record.video_path is not None:
        faces, frames = _read_video_frames(record, settings, track)
    else:
        faces, frames, dropped = _read_image_frames(record, settings, track)
    members = {f"f{i}.jpg": encode_jpeg(face, settings.jpeg_quality) for i, face in enumerate(faces)}
    members[settings.audio_format] = AUDIO_ENCODERS[settings.audio_format](audio)
    info = {
        "key": record.key,
        "dataset": record.dataset,
        "identity": record.identity,
        "video": record.video,
        "clip": record.clip,
        "split": split,
        "gender": identity_info.get("gender"),
        "nationality": identity_info.get("nationality"),
        "name": identity_info.get("name"),
        "duration": round(duration, 6),
        "num_faces": settings.frames_per_clip,
        "face_size": settings.face_size,
        "sample_rate": SAMPLE_RATE,
        "source": record.source,
        "face_source": record.face_source,
        "frames": frames,
    }
    if identity_info.get("vggface2_id"):
        info["vggface2_id"] = identity_info["vggface2_id"]
    if track is not None:
        info["track"] = track.summary()
    members["json"] = json.dumps(info, sort_keys=True, separators=(",", ":")).encode("utf-8")
    # written in name order: manifest.jsonl rows are sort_keys JSON, so its `members` then lists
    # them in tar order, and the row's offsets and sha1 can be recomputed from the row alone
    return ExtractedSample(record.key, dict(sorted(members.items())), duration, dropped)
