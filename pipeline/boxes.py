"""Parser for the VoxCeleb `txt` face-track files (one per utterance).

Real format (docs/REFERENCES.md#e8): six header lines, then a TAB table

    Identity  : 	id10661
    Reference : 	<ytid>
    Offset    : 	<int>              (audio-visual offset)
    FV Conf   : 	<float>	(1)        (face verification confidence)
    ASD Conf  : 	<float>            (active speaker confidence)

    FRAME 	X 	Y 	W 	H
    002316 	223 	80 	130 	130

VoxCeleb1 boxes are pixels of the original video resized to height 360; VoxCeleb2 boxes are
fractions of the frame width/height. FRAME numbers count 25-fps frames of the original video, so
row `FRAME - first FRAME` belongs to frame index 0.. of the clip, and VoxCeleb1's 1-fps face jpgs
are named by the same FRAME number. A file that breaks this shape is a `BoxFileError`: the ingest
skips the clip and reports it rather than cropping with garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: VoxCeleb1 pixel boxes refer to frames resized to this height (video-preprocessing crop_vox.py).
VOX1_REFERENCE_HEIGHT = 360


class BoxFileError(ValueError):
    """The txt file is unreadable or does not have the VoxCeleb track shape."""


@dataclass
class Track:
    """The header values and the box table of one txt file."""

    header: dict[str, str]
    frames: np.ndarray  # int64 [N], FRAME column
    boxes: np.ndarray  # float64 [N, 4], X Y W H
    normalised: bool  # True: fractions of width/height (VoxCeleb2); False: pixels (VoxCeleb1)

    def summary(self) -> dict:
        """Small JSON-able description stored with the sample (not the whole table)."""
        out = {"first_frame": int(self.frames[0]), "last_frame": int(self.frames[-1]), "rows": int(len(self.frames))}
        for name, key in (("offset", "Offset"), ("fv_conf", "FV Conf"), ("asd_conf", "ASD Conf")):
            raw = self.header.get(key)
            if raw is not None:
                try:
                    out[name] = float(raw.split()[0])
                except (ValueError, IndexError):
                    out[name] = raw
        return out

    def box_for_frame(self, frame_number: int) -> np.ndarray:
        """X Y W H of the row with the nearest FRAME number (rows can have gaps)."""
        i = int(np.argmin(np.abs(self.frames - frame_number)))
        return self.boxes[i]

    def box_for_index(self, index: int) -> np.ndarray:
        """X Y W H for the clip's `index`-th video frame (FRAME = first FRAME + index)."""
        return self.box_for_frame(int(self.frames[0]) + index)

    def pixel_box(self, box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
        """Convert a row to an integer (left, top, right, bottom) box inside a width x height image."""
        x, y, w, h = (float(v) for v in box)
        if self.normalised:
            x, w = x * width, w * width
            y, h = y * height, h * height
        else:
            scale = height / VOX1_REFERENCE_HEIGHT
            x, y, w, h = x * scale, y * scale, w * scale, h * scale
        left, top = max(0, int(round(x))), max(0, int(round(y)))
        right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
        if right - left < 2 or bottom - top < 2:
            raise BoxFileError(f"box {box.tolist()} lies outside the {width}x{height} frame")
        return left, top, right, bottom


def read_track(path: str | Path) -> Track:
    """Parse one txt track file; raises `BoxFileError` with the reason when it is malformed."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BoxFileError(f"cannot read box file: {err}") from None
    lines = text.splitlines()
    header: dict[str, str] = {}
    table_start = None
    for i, line in enumerate(lines):
        if line.strip().upper().startswith("FRAME"):
            table_start = i + 1
            break
        if ":" in line:
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
    if table_start is None:
        raise BoxFileError("no 'FRAME X Y W H' table header")
    rows = []
    for lineno, line in enumerate(lines[table_start:], table_start + 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise BoxFileError(f"line {lineno}: expected 5 columns FRAME X Y W H, got {line!r}")
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            raise BoxFileError(f"line {lineno}: non-numeric value in {line!r}") from None
    if not rows:
        raise BoxFileError("the box table has no rows")
    table = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(table)):
        raise BoxFileError("the box table contains NaN or infinite values")
    frames = table[:, 0]
    if np.any(frames != np.round(frames)) or np.any(np.diff(frames) <= 0):
        raise BoxFileError("FRAME numbers must be increasing integers")
    boxes = table[:, 1:]
    if np.any(boxes[:, 2:] <= 0):
        raise BoxFileError("box width and height must be positive")
    if np.any(boxes[:, :2] < -boxes[:, 2:]):
        raise BoxFileError("box lies entirely left of / above the frame")
    normalised = bool(np.all(boxes <= 1.5))
    if normalised and np.any(boxes[:, :2] + boxes[:, 2:] > 1.5):
        raise BoxFileError("normalised box extends far beyond the frame")
    return Track(header, frames.astype(np.int64), boxes, normalised)
