"""VoxCeleb1 layout: audio, 1-fps face frames and face tracks.

* `voxceleb1/wav/idNNNNN/<ytid>/000NN.wav`: 16 kHz mono PCM_16.
* `voxceleb1/txt/idNNNNN/<ytid>/000NN.txt`: face track, boxes in integer pixels of a 360-high
  (640x360) source frame, one row per 25-fps frame.
* `voxceleb1/unzippedIntervalFaces/data/<VGGFace1 name>/1.6/<ytid>/<utt>/<frame>.jpg`: face crops
  at 1 fps, i.e. the frames whose absolute number is a multiple of 25 (every frame number in the
  published lists is), named with 7 digits (`0005575.jpg`, as in the CMPC/Wang lists). The
  per-utterance folder `<utt>` is the clip number WITHOUT zero padding (`00003.wav` -> `3/`), as
  in public code that maps txt/wav clips to this tree
  (`"%s/1.6/%s/%d" % (name, ytid, int(utterance_id))`). Each crop is the face box region,
  so its size varies from clip to clip like the real crops.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from . import media
from .clip import ClipRenderer, VideoLook
from .plan import FPS, ClipPlan, IdentityPlan, VideoPlan, clip_rng
from .txtfile import format_track

ROOT = "voxceleb1"
FACE_ROOT = f"{ROOT}/unzippedIntervalFaces/data"


def face_frame_numbers(clip: ClipPlan) -> list[int]:
    """Absolute frame numbers of the clip that lie on a whole second (multiples of 25)."""
    first = -(-clip.start_frame // FPS) * FPS
    return list(range(first, clip.start_frame + clip.num_frames, FPS))


def clip_paths(identity: IdentityPlan, video: VideoPlan, clip: ClipPlan) -> dict[str, object]:
    faces_dir = f"{FACE_ROOT}/{identity.name}/1.6/{video.ytid}/{int(clip.clip)}"
    return {
        "wav": f"{ROOT}/wav/{identity.identity}/{video.ytid}/{clip.clip}.wav",
        "txt": f"{ROOT}/txt/{identity.identity}/{video.ytid}/{clip.clip}.txt",
        "faces_dir": faces_dir,
        "jpg": [f"{faces_dir}/{frame:07d}.jpg" for frame in face_frame_numbers(clip)],
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
    """Render and write one VoxCeleb1 clip; returns {"files": n, "bytes": n}.

    `realistic` changes nothing here: the wav is PCM (its size follows the clip length, which the
    plan sets) and the face jpgs are stills; only VoxCeleb2's video coding is made realistic."""
    r = ClipRenderer(seed, identity, video, clip, look, interference)
    paths = clip_paths(identity, video, clip)
    for key in ("wav", "txt", "faces_dir"):
        target = out / paths[key]
        (target if key == "faces_dir" else target.parent).mkdir(parents=True, exist_ok=True)
    size = media.write_wav(out / paths["wav"], r.audio)
    for frame, rel in zip(face_frame_numbers(clip), paths["jpg"]):
        i = frame - clip.start_frame
        _, _, w, h = r.box(i)
        crop = Image.fromarray(r.frame(i)).resize((int(round(w)), int(round(h))), Image.Resampling.BILINEAR)
        size += media.write_jpg(out / rel, crop)
    frames = [clip.start_frame + i for i in range(clip.num_frames)]
    boxes = [r.box(i) for i in range(clip.num_frames)]
    text = format_track(
        identity.identity, video.ytid, clip_rng(seed, identity, video, clip, "txt"), frames, boxes, normalised=False
    )
    size += media.write_text(out / paths["txt"], text)
    return {"files": 2 + len(paths["jpg"]), "bytes": size}
