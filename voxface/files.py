"""A user's own files -> the uint8 face crop and int16 voice that ingest would have stored.

Why here and not a new reader: a model only gives the numbers evaluation gives when its inputs
are prepared the same way. So every step is ingest's own code (``pipeline.extract``) followed by
what the evaluation store does with it:

* voice: ``pipeline.extract.read_audio`` (soundfile for wav/flac, FFmpeg through PyAV for every
  other container; any sample rate, any channel count; the one downmix rule, the channel mean;
  16 kHz int16), then ingest's checks (digital silence, under 0.5 s). A wav/flac that libsndfile
  rejects gets a second try with FFmpeg.
* face: the image as RGB (EXIF orientation applied: VoxCeleb frames carry none, phone photos
  do), ``pipeline.extract.to_face_crop`` (centred square, PIL bilinear to the ingest face size),
  JPEG at the ingest quality, decoded with PIL as ``pipeline.shardset.build_eval_store`` does.
  **A face crop is expected**: no face detector runs, so a wide photo is squared around its centre.

Every problem becomes :class:`BadFile` with one line a user can act on.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".m4a",
    ".mp4",
    ".mp3",
    ".aac",
    ".ogg",
    ".opus",
    ".webm",
    ".mkv",
    ".mov",
    ".aif",
    ".aiff",
    ".wma",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class BadFile(ValueError):
    """A file that cannot be used; ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def _check_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadFile(path, "no such file")
    if p.is_dir():
        raise BadFile(path, "is a folder (give files, or a folder where a list of files is expected)")
    if not os.access(p, os.R_OK):
        raise BadFile(path, "not readable (permissions)")
    return p


def read_voice(path) -> np.ndarray:
    """16 kHz mono int16 samples of an audio (or video) file, as ingest stores them."""
    from pipeline.extract import ClipError, ExtractSettings, _read_audio_pyav, check_audio, read_audio

    p = _check_file(path)
    try:
        try:
            audio = read_audio(str(p))
        except ClipError as err:
            if err.kind != "unreadable_audio" or p.suffix.lower() not in (".wav", ".flac"):
                raise
            audio = _read_audio_pyav(str(p))  # a wav codec libsndfile lacks, FFmpeg may have
        check_audio(audio, str(p), ExtractSettings())
    except ClipError as err:
        raise BadFile(path, err.reason) from None
    except OSError as err:
        raise BadFile(path, f"cannot read it ({err.strerror or err})") from None
    return audio


def read_face(path, ingest_face_size: int, jpeg_quality: int) -> np.ndarray:
    """uint8 ``[S, S, 3]`` crop (S = ``ingest_face_size``), as the evaluation store holds a face."""
    from PIL import Image, ImageOps

    from pipeline.extract import encode_jpeg, to_face_crop

    p = _check_file(path)
    try:
        with Image.open(p) as img:
            img = ImageOps.exif_transpose(img)
            frame = np.asarray(img.convert("RGB"))
    except Exception as err:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError...)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadFile(path, f"cannot decode it as an image ({first})") from None
    if frame.ndim != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise BadFile(path, f"image has no pixels (shape {frame.shape})")
    crop = to_face_crop(frame, int(ingest_face_size), None)
    with Image.open(io.BytesIO(encode_jpeg(crop, int(jpeg_quality)))) as img:
        return np.array(img.convert("RGB"))  # a writable copy (PIL's arrays are read-only)


def expand(paths, extensions) -> tuple[list[str], list[BadFile]]:
    """Files for a list of files and folders: a folder gives its files with ``extensions`` (sorted,
    not recursive); a given file is kept whatever its name. Missing paths come back as BadFile."""
    files, bad = [], []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(str(q) for q in p.iterdir() if q.is_file() and q.suffix.lower() in extensions)
            if not found:
                bad.append(BadFile(path, f"folder has no {'/'.join(e[1:] for e in extensions[:4])}... files"))
            files += found
        elif not p.exists():
            bad.append(BadFile(path, "no such file or folder"))
        else:
            files.append(str(p))
    return files, bad
