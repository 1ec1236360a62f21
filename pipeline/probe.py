"""Cheap per-file readability checks for the data doctor (`pipeline.doctor --full`).

The ingest's own extraction (`pipeline.extract.extract_clip`) is the exact verdict on a clip but
costs a full decode (tens of ms per clip, CPU-hours for VoxCeleb2). Checking a whole copy for
broken downloads needs only the structure: an mp4/m4a is *demuxed* (packets counted against the
header's frame count, nothing decoded), a wav/flac is read, an image decoded (small), a txt box
file parsed. That finds what an interrupted or corrupted copy produces - files that do not open,
lost `moov` atoms, truncation, missing streams, empty files - at a small fraction of the cost.

Kinds are the ingest's skip kinds (docs/INGEST.md "Bad inputs"), so the doctor and the ingest
report the same words for the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Same rule as the ingest (`pipeline.extract._MIN_FRAME_FRACTION`): fewer packets than this
#: fraction of the header's frame count means the file was cut short.
_MIN_PACKET_FRACTION = 0.9
ROLES = ("video", "video+audio", "audio", "image", "box")


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _probe_container(path: str, role: str) -> tuple[str, str] | None:
    import av

    broken = "corrupt_video" if role.startswith("video") else "unreadable_audio"
    try:
        with av.open(path) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if role.startswith("video") and video is None:
                return "no_video_track", "the file has no video stream"
            if role in ("video+audio", "audio") and audio is None:
                return "no_audio_track", "the file has no audio stream"
            # (type, declared frames, index) read while the container is open
            streams = [(s.type, s.frames, s.index) for s in (video, audio) if s is not None]
            counted = dict.fromkeys((index for _, _, index in streams), 0)
            for packet in container.demux(*[s for s in (video, audio) if s is not None]):
                if packet.size:
                    counted[packet.stream.index] += 1
    except Exception as err:  # av.FFmpegError and friends: the container does not read
        return broken, f"cannot read the container: {_first_line(err)}"
    for kind_of_stream, declared, index in streams:  # video first: a cut container is corrupt_video
        kind = "corrupt_video" if kind_of_stream == "video" else "unreadable_audio"
        got = counted[index]
        if got == 0:
            return kind, f"the {kind_of_stream} stream holds no packets"
        if declared and got < _MIN_PACKET_FRACTION * declared:
            return kind, f"truncated: {got} of {declared} declared {kind_of_stream} packets present"
    return None


def _probe_sound(path: str) -> tuple[str, str] | None:
    import soundfile as sf

    try:
        data, _ = sf.read(path, dtype="int16", always_2d=True)
    except Exception as err:  # libsndfile errors
        return "unreadable_audio", f"soundfile cannot read it: {_first_line(err)}"
    if data.shape[0] == 0:
        return "zero_length_audio", "the file holds 0 samples"
    return None


def _probe_image(path: str, min_side: int) -> tuple[str, str] | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            width, height = img.size
    except Exception as err:  # PIL raises many types for broken images
        return "unreadable_image", f"cannot decode image: {_first_line(err)}"
    if min_side and min(width, height) < min_side:
        return "small_face", f"{width}x{height} image, below the {min_side} px minimum (--min-face-size)"
    return None


def _probe_box(path: str) -> tuple[str, str] | None:
    from .boxes import BoxFileError, read_track

    try:
        read_track(path)
    except BoxFileError as err:
        return "bad_box_file", str(err)
    return None


def probe_file(path: str, role: str, min_face_size: int = 0) -> tuple[str, str] | None:
    """`(kind, reason)` when the file would be skipped by the ingest for a structural reason,
    else None. `role`: `video` (an mp4 whose audio comes from an m4a), `video+audio` (an mp4 that
    is also the clip's audio), `audio` (m4a/wav/flac), `image` (a face jpg/png), `box` (txt)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    try:
        size = os.stat(path).st_size
    except OSError as err:
        return ("unreadable_file", f"cannot stat: {err.strerror or err}")
    if size == 0:
        return {
            "video": ("corrupt_video", "file is empty (0 bytes)"),
            "video+audio": ("corrupt_video", "file is empty (0 bytes)"),
            "audio": ("zero_length_audio", "file is empty (0 bytes)"),
            "image": ("unreadable_image", "file is empty (0 bytes)"),
            "box": ("bad_box_file", "file is empty (0 bytes)"),
        }[role]
    try:
        if role == "image":
            return _probe_image(path, min_face_size)
        if role == "box":
            return _probe_box(path)
        if role == "audio" and Path(path).suffix.lower() in (".wav", ".flac"):
            return _probe_sound(path)
        return _probe_container(path, role)
    except OSError as err:  # e.g. an I/O error of a failing disk while reading
        return ("unreadable_file", f"read error: {err.strerror or err}")


def probe_job(item: tuple[str, str, int]) -> tuple[str, str, tuple[str, str] | None]:
    """Worker entry point: `(path, role, min_face_size)` -> `(path, role, result of probe_file)`."""
    path, role, min_face_size = item
    return path, role, probe_file(path, role, min_face_size)


def quiet_ffmpeg() -> None:
    """FFmpeg's own complaints about broken files are not printed (the probe reports them) and
    its last error is kept in the exception text: the same in the main process and in workers."""
    import av

    av.logging.set_level(av.logging.PANIC)
