"""Tiny VoxCeleb-layout corpora written with PyAV / soundfile / PIL for the ingest tests.

Independent of `pipeline.synth` on purpose: the ingest tests must pin down the real layouts and
formats (BOM + padded vox2 meta, TAB vox1 meta, 1-fps face folders, txt track files), and be able to
plant each kind of bad input exactly where a test wants it.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

SR = 16000
FPS = 25


def _tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _frame(i: int, size: int, colour: tuple[int, int, int]) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[...] = colour
    c = size // 2 + int(10 * np.sin(i / 3))
    img[c - size // 4 : c + size // 4, size // 4 : 3 * size // 4] = (230, 190, 160)
    return img


def write_mp4(
    path: Path,
    seconds: float = 1.0,
    size: int = 224,
    audio: bool = True,
    colour=(40, 80, 120),
    freq: float = 220.0,
    seed: int = 0,
    silent: bool = False,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        v.options = {"threads": "1"}
        a = None
        if audio:
            a = c.add_stream("aac", rate=SR)
            a.layout = "mono"
        for i in range(int(seconds * FPS)):
            for p in v.encode(av.VideoFrame.from_ndarray(_frame(i, size, colour), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            wav = np.zeros(int(seconds * SR), np.float32) if silent else _tone(seconds, freq, seed)
            _encode_audio(c, a, wav)
    return path


def write_m4a(path: Path, seconds: float = 1.0, freq: float = 330.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=SR)
        a.layout = "mono"
        _encode_audio(c, a, _tone(seconds, freq, seed))
    return path


def _encode_audio(container, stream, wav: np.ndarray) -> None:
    """Encode a mono float waveform into `stream` in 1024-sample AAC frames, then flush."""
    for s in range(0, wav.size, 1024):
        frame = av.AudioFrame.from_ndarray(wav[None, s : s + 1024], format="fltp", layout="mono")
        frame.sample_rate = SR
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_wav(path: Path, seconds: float = 1.0, freq: float = 200.0, seed: int = 0, silent: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = np.zeros(int(seconds * SR), np.float32) if silent else _tone(seconds, freq, seed)
    sf.write(str(path), wav, SR, subtype="PCM_16")
    return path


def write_jpgs(folder: Path, frame_numbers: list[int], size: int = 224, colour=(90, 60, 30)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, n in enumerate(frame_numbers):
        p = folder / f"{n:07d}.jpg"
        Image.fromarray(_frame(i, size, colour)).save(p, quality=90)
        out.append(p)
    return out


def write_track(path: Path, identity: str, ytid: str, first: int, count: int, normalised: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Identity  : \t{identity}",
        f"Reference : \t{ytid}",
        "Offset    : \t1",
        "FV Conf   : \t17.5\t(1)",
        "ASD Conf  : \t4.2",
        "",
        "FRAME \tX \tY \tW \tH ",
    ]
    for f in range(first, first + count):
        if normalised:
            lines.append(f"{f:06d} \t0.300 \t0.100 \t0.400 \t0.700 ")
        else:
            lines.append(f"{f:06d} \t223 \t80 \t130 \t130 ")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_vox2_meta(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """rows: (identity, gender, set). Real format: BOM, comma, every field padded with a space."""
    lines = ["VoxCeleb2 ID,VGGFace2 ID,Gender,Set"]
    lines += [f"{i} ,n{i[2:]}0 ,{g} ,{s} " for i, g, s in rows]
    path.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode())
    return path


def write_vox1_meta(path: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    """rows: (identity, name, gender, nationality, set). Real format: TAB-separated."""
    lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    lines += ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


VOX2_IDS = [
    ("id00012", "m", "dev"),
    ("id00015", "f", "dev"),
    ("id00017", "m", "dev"),
    ("id00019", "f", "test"),
    ("id00020", "m", "test"),
]


def make_vox2_corpus(
    root: Path,
    clips_per_video: int = 2,
    videos: int = 1,
    seconds: float = 1.0,
    with_m4a_for: tuple[str, ...] = ("id00012",),
    with_txt: bool = True,
) -> Path:
    """5 identities (3 dev, 2 test); ytids start with '-'/'_' like real ones."""
    root.mkdir(parents=True, exist_ok=True)
    write_vox2_meta(root / "vox2_meta.csv", VOX2_IDS)
    for k, (ident, _, part) in enumerate(VOX2_IDS):
        for v in range(videos):
            ytid = ("-" if v % 2 == 0 else "_") + f"vid{k}{v}abcde"[:10]
            for c in range(clips_per_video):
                clip = f"{v * clips_per_video + c + 1:05d}"
                rel = Path(part) / "mp4" / ident / ytid / f"{clip}.mp4"
                write_mp4(root / rel, seconds, colour=(30 * k, 60, 200 - 30 * k), freq=150 + 40 * k, seed=k)
                if ident in with_m4a_for:
                    write_m4a(root / part / "aac" / ident / ytid / f"{clip}.m4a", seconds, seed=k)
                if with_txt:
                    write_track(
                        root / part / "txt" / ident / ytid / f"{clip}.txt",
                        ident,
                        ytid,
                        1000 + 100 * c,
                        int(seconds * FPS),
                        normalised=True,
                    )
    return root


VOX1_ROWS = [
    ("id10001", "A.J._Buckley", "m", "Ireland", "dev"),
    ("id10002", "Bea_Smith", "f", "USA", "dev"),
    ("id10003", "Cara_Dune", "f", "UK", "dev"),
    ("id10004", "Dan_Ode", "m", "USA", "test"),
    ("id10005", "Fay_Ray", "f", "USA", "dev"),
    ("id10006", "Gus_Ho", "m", "Canada", "dev"),
]


def make_vox1_corpus(root: Path, clips_per_video: int = 2, seconds: float = 1.0) -> Path:
    """6 identities (wen1251: A/B val, C/D test, F/G train), 1-fps interval faces per utterance."""
    root.mkdir(parents=True, exist_ok=True)
    write_vox1_meta(root / "vox1_meta.csv", VOX1_ROWS)
    for k, (ident, name, *_rest) in enumerate(VOX1_ROWS):
        ytid = f"{'_-'[k % 2]}yt{k}xxxxxxx"[:11]
        for c in range(clips_per_video):
            utt = c + 1
            write_wav(root / "wav" / ident / ytid / f"{utt:05d}.wav", seconds, freq=120 + 30 * k, seed=k)
            first = 2000 + 500 * c
            frames = [first + 25 * j for j in range(3)]
            write_jpgs(
                root / "unzippedIntervalFaces" / "data" / name / "1.6" / ytid / str(utt),
                frames,
                size=112,
                colour=(20 * k, 100, 50),
            )
            write_track(root / "txt" / ident / ytid / f"{utt:05d}.txt", ident, ytid, first, 75, normalised=False)
    return root
