"""VoxCeleb `txt/` face-track files: the real 6-line header and a TAB table of boxes.

Real example (VoxCeleb2; VoxCeleb1 rows hold integer pixels of a 360-high frame instead)::

    Identity  : \tid00012
    Reference : \t_raOc3-IRsw
    Offset    : \t2
    FV Conf   : \t20.230\t(1)
    ASD Conf  : \t2.765
    <blank>
    FRAME \tX \tY \tW \tH \n    000349 \t0.319 \t0.067 \t0.424 \t0.753 \n

Like `meta.py`, the reader here is a strict conformance check used by the generator's tests;
the ingest reads txt files with the lenient `pipeline.boxes.read_track`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER_LINES = 6
TABLE_HEADER = "FRAME \tX \tY \tW \tH "


class TrackFormatError(ValueError):
    """A txt file that is not a VoxCeleb face track; the message names the file and line."""


@dataclass(frozen=True)
class FaceTrack:
    identity: str
    reference: str  # YouTube id
    offset: int
    fv_conf: float
    asd_conf: float
    frames: np.ndarray  # int64 [T] absolute frame numbers at 25 fps
    boxes: np.ndarray  # float64 [T, 4] X, Y, W, H


def format_track(identity: str, ytid: str, rng: np.random.Generator, frames, boxes, normalised: bool) -> str:
    """Text of a txt file; boxes are fractions (VoxCeleb2) or integer pixels (VoxCeleb1)."""
    fv = f"{rng.uniform(10, 22):.3f}" + ("\t(1)" if rng.random() < 0.5 else "")
    lines = [
        f"Identity  : \t{identity}",
        f"Reference : \t{ytid}",
        f"Offset    : \t{int(rng.integers(-3, 4))}",
        f"FV Conf   : \t{fv}",
        f"ASD Conf  : \t{rng.uniform(1, 8):.3f}",
        "",
        TABLE_HEADER,
    ]
    for frame, (x, y, w, h) in zip(frames, boxes):
        if normalised:
            lines.append(f"{int(frame):06d} \t{x:.3f} \t{y:.3f} \t{w:.3f} \t{h:.3f} ")
        else:
            lines.append(f"{int(frame):06d} \t{int(round(x))} \t{int(round(y))} \t{int(round(w))} \t{int(round(h))} ")
    return "\n".join(lines) + "\n"


def read_track(path: Path) -> FaceTrack:
    """Parse a VoxCeleb txt file (real or synthetic). Raises TrackFormatError when malformed."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if len(lines) < HEADER_LINES + 1:
        raise TrackFormatError(f"{path}: only {len(lines)} lines, expected a 6-line header and a table")
    header = {}
    for lineno, line in enumerate(lines[:5], start=1):
        if ":" not in line or "\t" not in line:
            raise TrackFormatError(f"{path}:{lineno}: header line {line!r} is not 'Key : <TAB>value'")
        key, value = line.split("\t", 1)
        header[key.rstrip(" :").strip()] = value.split("\t")[0].strip()
    if lines[5].strip():
        raise TrackFormatError(f"{path}:6: expected a blank line after the header")
    if [c.strip() for c in lines[6].split("\t")] != ["FRAME", "X", "Y", "W", "H"]:
        raise TrackFormatError(f"{path}:7: expected the table header 'FRAME X Y W H'")
    rows = []
    for lineno, line in enumerate(lines[7:], start=8):
        if not line.strip():
            continue
        cells = line.split("\t")
        try:
            values = [float(c) for c in cells]
        except ValueError:
            raise TrackFormatError(f"{path}:{lineno}: non-numeric box row {line!r}") from None
        if len(values) != 5:
            raise TrackFormatError(f"{path}:{lineno}: expected 5 columns, got {len(values)}")
        rows.append(values)
    if not rows:
        raise TrackFormatError(f"{path}: the box table is empty")
    try:
        table = np.asarray(rows, dtype=np.float64)
        return FaceTrack(
            identity=header["Identity"],
            reference=header["Reference"],
            offset=int(header["Offset"]),
            fv_conf=float(header["FV Conf"]),
            asd_conf=float(header["ASD Conf"]),
            frames=table[:, 0].astype(np.int64),
            boxes=table[:, 1:],
        )
    except (KeyError, ValueError) as err:
        raise TrackFormatError(f"{path}: bad header field ({err})") from None
