"""VoxCeleb2 layout: `voxceleb2/{dev,test}/{mp4,aac,txt}/idNNNNN/<ytid>/000NN.{mp4,m4a,txt}`.

mp4: H.264 yuv420p 224x224 at 25 fps with an AAC mono 16 kHz track (the real release's crops are
224x224 at 25 fps); m4a: the same audio alone; txt: the face track with boxes as fractions of the
source frame's width/height, as in the real VoxCeleb2 txt files.
"""

from __future__ import annotations

from pathlib import Path

from . import media
from . import realistic as realistic_clips
from .clip import FRAME_SIZE, SOURCE_H, SOURCE_W, ClipRenderer, VideoLook
from .plan import ClipPlan, IdentityPlan, VideoPlan, clip_rng
from .seeding import rng_for
from .txtfile import format_track

ROOT = "voxceleb2"


def clip_paths(identity: IdentityPlan, video: VideoPlan, clip: ClipPlan) -> dict[str, str]:
    """Relative paths of the clip's files (relative to the corpus root)."""
    base = f"{ROOT}/{identity.set}/{{kind}}/{identity.identity}/{video.ytid}/{clip.clip}.{{ext}}"
    return {
        "mp4": base.format(kind="mp4", ext="mp4"),
        "m4a": base.format(kind="aac", ext="m4a"),
        "txt": base.format(kind="txt", ext="txt"),
    }


def write_clip(
    out: Path,
    seed: int,
    identity: IdentityPlan,
    video: VideoPlan,
    clip: ClipPlan,
    look: VideoLook | None = None,
    interference: float = 0.0,
    realistic: bool = False,
) -> dict:
    """Render and write one VoxCeleb2 clip; returns {"files": n, "bytes": n}.

    `realistic`: texture, grain and an average bitrate (realistic.py) instead of clean frames at
    constant quality."""
    r = ClipRenderer(seed, identity, video, clip, look, interference)
    paths = clip_paths(identity, video, clip)
    for rel in paths.values():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
    size = media.write_m4a(out / paths["m4a"], r.audio)
    frames = media.lazy_frames(r.frame, clip.num_frames)
    kbps = None
    if realistic:
        pattern = realistic_clips.texture(rng_for(seed, "realistic-texture", identity.uid, video.ytid), FRAME_SIZE)
        frames = realistic_clips.add_texture_and_grain(frames, pattern, clip_rng(seed, identity, video, clip, "grain"))
        kbps = realistic_clips.VIDEO_KBPS
    size += media.write_mp4(out / paths["mp4"], frames, audio_from=out / paths["m4a"], video_kbps=kbps)
    frames = [clip.start_frame + i for i in range(clip.num_frames)]
    boxes = []
    for i in range(clip.num_frames):
        x, y, w, h = r.box(i)
        boxes.append((x / SOURCE_W, y / SOURCE_H, w / SOURCE_W, h / SOURCE_H))
    text = format_track(
        identity.identity, video.ytid, clip_rng(seed, identity, video, clip, "txt"), frames, boxes, normalised=True
    )
    size += media.write_text(out / paths["txt"], text)
    return {"files": 3, "bytes": size}
