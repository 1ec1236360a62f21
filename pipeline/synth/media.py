"""Byte-deterministic writers for the corpus's media files (mp4, m4a, wav, jpg).

Determinism: libx264 (without mbtree, see X264_PARAMS) and the native AAC encoder run
single-threaded with the `bitexact` flags and the container carries no creation time, so the
same frames always give the same bytes. Every file is written to `<name>.tmp` and renamed, so an interrupted run never leaves a
half-written file under a real name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

AAC_FRAME = 1024
#: Single-threaded x264 WITHOUT macroblock-tree rate control. With mbtree on, the bundled x264
#: (core 165) gave different bytes for the same frames in about 1 of 4 runs of some short clips
#: (measured: 12 clips x 4 fresh processes; mbtree=0 gave 4/4 identical runs, aq-mode=0 or
#: weightp=0 alone did not), so mbtree is off to keep the corpus byte-deterministic.
X264_PARAMS = "threads=1:lookahead-threads=1:mbtree=0"


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _finish(tmp: Path, path: Path) -> int:
    os.replace(tmp, path)
    return path.stat().st_size


def _bitexact(stream) -> None:
    stream.codec_context.flags |= av.codec.context.Flags.bitexact


def _add_audio(container, sample_rate: int):
    stream = container.add_stream("aac", rate=sample_rate, layout="mono")
    stream.bit_rate = 48000
    stream.options = {"aac_coder": "fast"}  # half the CPU of the default two-loop search
    stream.codec_context.thread_count = 1
    _bitexact(stream)
    return stream


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    for start in range(0, len(audio), AAC_FRAME):
        frame = av.AudioFrame.from_ndarray(audio[None, start : start + AAC_FRAME], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_mp4(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: int = 25,
    size: int = 224,
    audio_from: Path | None = None,
    video_kbps: int | None = None,
) -> int:
    """H.264 yuv420p video plus an AAC mono track; returns the file size.

    The audio track is copied packet by packet from the .m4a file `audio_from` (VoxCeleb2 clips
    exist as both; copying saves a second AAC encode and makes the two tracks identical by
    construction). Without it, the mp4 has no audio stream. `video_kbps`: x264 average bitrate
    instead of constant quality (CRF 23), for --realistic clips.
    """
    path = Path(path)
    tmp = _tmp(path)
    with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        if video_kbps is None:
            video.options = {"preset": "veryfast", "crf": "23", "x264-params": X264_PARAMS}
        else:
            video.bit_rate = video_kbps * 1000
            video.options = {"preset": "veryfast", "x264-params": X264_PARAMS}
        video.codec_context.thread_count = 1
        _bitexact(video)
        source = av.open(str(audio_from)) if audio_from is not None else None
        try:
            if source is not None:
                astream = container.add_stream_from_template(source.streams.audio[0])
            for img in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            if source is not None:
                for packet in source.demux(source.streams.audio[0]):
                    if packet.dts is not None:
                        packet.stream = astream
                        container.mux(packet)
        finally:
            if source is not None:
                source.close()
    return _finish(tmp, path)


def write_m4a(path: Path, audio: np.ndarray, sample_rate: int = 16000) -> int:
    """AAC mono in an MP4 (.m4a) container, as VoxCeleb2's `aac/` release."""
    path = Path(path)
    tmp = _tmp(path)
    with av.open(str(tmp), "w", format="ipod", options={"fflags": "+bitexact"}) as container:
        _encode_audio(container, _add_audio(container, sample_rate), audio, sample_rate)
    return _finish(tmp, path)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = 16000) -> int:
    """16-bit PCM mono WAV, as VoxCeleb1's `wav/` release."""
    path = Path(path)
    tmp = _tmp(path)
    sf.write(str(tmp), np.asarray(audio, dtype=np.float32), sample_rate, subtype="PCM_16", format="WAV")
    return _finish(tmp, path)


def write_jpg(path: Path, img: np.ndarray | Image.Image, quality: int = 90) -> int:
    path = Path(path)
    tmp = _tmp(path)
    image = img if isinstance(img, Image.Image) else Image.fromarray(img)
    image.save(tmp, format="JPEG", quality=quality)
    return _finish(tmp, path)


def write_text(path: Path, text: str) -> int:
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_bytes(text.encode("utf-8"))
    return _finish(tmp, path)


def lazy_frames(render: Callable[[int], np.ndarray], count: int) -> Iterable[np.ndarray]:
    return (render(i) for i in range(count))
