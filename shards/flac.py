"""FLAC members that can be cut to a crop window without decoding: a per-frame SEEKTABLE.

Why: FLAC shards are ~0.74 of the PCM bytes (issue 12 measured 0.75x of the VoxCeleb2 source
against 1.10x with WAV), but the loader's buffer should hold only the crop window a sample will
be trained on (docs/LOADER.md, "Compact audio"). FLAC frames are independent (no prediction across
frames), so the frames covering a window, behind a copy of the stream header whose STREAMINFO
says how many samples follow, form a valid FLAC of their own that decodes to exactly those
samples. Finding frame boundaries by scanning for sync codes costs ~0.5-2 ms per clip in Python
(each candidate's header CRC-8 must be checked: the sync pattern also occurs inside frames), too
much for the loader's consuming process; so ingest scans once and stores a standard SEEKTABLE
metadata block with one seek point per frame (18 bytes per 4,096 samples: +0.4% of the member),
and cutting a window is a `bisect` plus two slices (~10-20 us).

Any decoder reads these files (a SEEKTABLE is part of the FLAC format). FLAC members without a
per-frame seek table (older shards, other tools) are not cut: the loader keeps them whole.
"""

from __future__ import annotations

import bisect
import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from shards.wav import crop_start

__all__ = ["FlacLayout", "parse_flac", "add_seektable", "encode_flac_seekable", "crop_flac_window"]

_STREAMINFO, _SEEKTABLE = 0, 3
_PLACEHOLDER = 0xFFFFFFFFFFFFFFFF


def _crc8_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC8 = _crc8_table()


@dataclass(frozen=True)
class FlacLayout:
    """Where things are in a FLAC member (nothing decoded)."""

    streaminfo: bytes  # the 34-byte STREAMINFO body
    sample_rate: int
    channels: int
    total_samples: int
    first_frame: int  # byte offset of the first audio frame
    points: tuple  # (first samples, byte offsets from first_frame): two lists, one entry per seek point; () if none


def parse_flac(data: bytes) -> FlacLayout | None:
    """The metadata of a FLAC member, or None when `data` is not a readable FLAC stream header."""
    if len(data) < 42 or data[:4] != b"fLaC":
        return None
    pos, info, points = 4, None, ()
    while True:
        if pos + 4 > len(data):
            return None
        head = data[pos]
        kind, size = head & 0x7F, int.from_bytes(data[pos + 1 : pos + 4], "big")
        body = data[pos + 4 : pos + 4 + size]
        if len(body) != size:
            return None
        if kind == _STREAMINFO and size == 34:
            info = body
        elif kind == _SEEKTABLE and size % 18 == 0:
            firsts, offsets, _ = zip(*struct.iter_unpack(">QQH", body)) if size else ((), (), ())
            keep = firsts.index(_PLACEHOLDER) if _PLACEHOLDER in firsts else len(firsts)  # placeholders come last
            points = (list(firsts[:keep]), list(offsets[:keep]))
        pos += 4 + size
        if head & 0x80:
            break
    if info is None:
        return None
    packed = int.from_bytes(info[10:18], "big")
    rate, channels, total = packed >> 44, ((packed >> 41) & 7) + 1, packed & ((1 << 36) - 1)
    return FlacLayout(info, rate, channels, total, pos, points)


def _frame_header(data: bytes, i: int) -> int | None:
    """The frame number of a valid fixed-blocksize frame header at `i` (CRC-8 checked), else None."""
    if i + 6 > len(data) or data[i] != 0xFF or data[i + 1] != 0xF8:
        return None
    b2, b3 = data[i + 2], data[i + 3]
    size_code, rate_code = b2 >> 4, b2 & 15
    if size_code == 0 or rate_code == 15 or (b3 >> 4) >= 11 or ((b3 >> 1) & 7) in (3, 7) or b3 & 1:
        return None
    c = data[i + 4]
    # `extra` of the matching row is read after the loop
    for mask, lead, extra in (  # noqa: B007
        (0x80, 0x00, 0),
        (0xE0, 0xC0, 1),
        (0xF0, 0xE0, 2),
        (0xF8, 0xF0, 3),
        (0xFC, 0xF8, 4),
        (0xFE, 0xFC, 5),
    ):
        if c & mask == lead:
            number = c & (~mask & 0xFF)
            break
    else:
        return None
    p = i + 5
    for _ in range(extra):
        if p >= len(data) or data[p] & 0xC0 != 0x80:
            return None
        number = (number << 6) | (data[p] & 0x3F)
        p += 1
    p += {6: 1, 7: 2}.get(size_code, 0) + {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if p >= len(data):
        return None
    crc = 0
    for v in data[i:p]:
        crc = _CRC8[crc ^ v]
    return number if crc == data[p] else None


def add_seektable(data: bytes) -> bytes:
    """`data` with a SEEKTABLE holding one point per frame (replacing any seek table). Only for
    fixed-blocksize streams (what libFLAC / libsndfile write); others are returned unchanged."""
    layout = parse_flac(data)
    if layout is None:
        raise ValueError("not a FLAC stream")
    block = struct.unpack(">H", layout.streaminfo[:2])[0]
    if block != struct.unpack(">H", layout.streaminfo[2:4])[0]:
        return data
    starts, pos, expect = [], layout.first_frame, 0
    while True:
        i = data.find(b"\xff\xf8", pos)
        if i < 0:
            break
        if _frame_header(data, i) == expect:  # sequential numbers: a sync pattern inside a frame is not a frame
            starts.append(i - layout.first_frame)
            expect += 1
        pos = i + 2
    if len(starts) != -(-layout.total_samples // block):
        return data  # could not find every frame: keep the stream as it was (it is cut nowhere)
    table = b"".join(
        struct.pack(">QQH", n * block, off, min(block, layout.total_samples - n * block))
        for n, off in enumerate(starts)
    )
    # rebuild the metadata: STREAMINFO, SEEKTABLE, then the other blocks as they were
    blocks, pos = [], 4
    while True:
        head = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if head & 0x7F not in (_STREAMINFO, _SEEKTABLE):
            blocks.append((head & 0x7F, data[pos + 4 : pos + 4 + size]))
        pos += 4 + size
        if head & 0x80:
            break
    blocks = [(_STREAMINFO, layout.streaminfo), (_SEEKTABLE, table), *blocks]
    out = [b"fLaC"]
    for n, (kind, body) in enumerate(blocks):
        out.append(bytes([kind | (0x80 if n == len(blocks) - 1 else 0)]) + len(body).to_bytes(3, "big") + body)
    return b"".join(out) + data[layout.first_frame :]


def encode_flac_seekable(samples: np.ndarray, sample_rate: int) -> bytes:
    """int16 samples -> a FLAC member (PCM_16, libsndfile's default compression) with a per-frame
    seek table, so the loader can cut crop windows from it without decoding."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        raise TypeError(f"encode_flac_seekable needs int16 samples, got {x.dtype}")
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format="FLAC", subtype="PCM_16")
    return add_seektable(buf.getvalue())


def crop_flac_window(data: bytes, crop: int, start_fraction: float) -> tuple[bytes, int] | None:
    """The frames covering the `crop`-sample window at `start_fraction` (`crop_start`, as for WAV),
    as a FLAC of their own, and where the window starts in it. None when `data` has no per-frame
    seek table (or is not FLAC): the caller keeps the whole member then."""
    layout = parse_flac(data)
    if layout is None or not layout.points or not layout.points[0] or layout.total_samples == 0:
        return None
    (firsts, offsets), total = layout.points, layout.total_samples
    if firsts[0] != 0 or firsts[-1] >= total or firsts != sorted(set(firsts)):
        return None  # not one point per frame (another tool's sparse table): keep the member whole
    start = crop_start(total, crop, start_fraction)
    stop = min(total, start + crop)
    a = bisect.bisect_right(firsts, start) - 1
    b = bisect.bisect_left(firsts, stop)  # first frame at or after the window's end
    first_sample = firsts[a]
    lo = layout.first_frame + offsets[a]
    hi = layout.first_frame + offsets[b] if b < len(firsts) else len(data)
    samples = (firsts[b] if b < len(firsts) else total) - first_sample
    if not (layout.first_frame <= lo < hi <= len(data)) or data[lo : lo + 2] != b"\xff\xf8":
        return None
    info = bytearray(layout.streaminfo)
    packed = int.from_bytes(info[10:18], "big")
    info[10:18] = ((packed & ~((1 << 36) - 1)) | samples).to_bytes(8, "big")
    info[18:34] = bytes(16)  # MD5 of the whole stream no longer applies: zero means "not set"
    window = b"".join((b"fLaC", bytes([0x80 | _STREAMINFO]), (34).to_bytes(3, "big"), info, memoryview(data)[lo:hi]))
    return window, start - first_sample
