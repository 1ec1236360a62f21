"""Deliberately bad inputs (`--inject-faults`) that an ingest must skip, count and report.

Every fault is an EXTRA clip or identity next to the good corpus: good files are byte-identical
with and without faults (their random streams never see the fault plan), so a test can compare
the ingest of a faulty corpus with that of a clean one. `faults.json` lists each bad file:

    {"path": relative path of the bad file or folder, "dataset": "voxceleb1"|"voxceleb2",
     "kind": one of KINDS, "identity", "video", "clip" (null for identity-level faults),
     "key": shards.format.make_key(...) of the clip (null for identity-level faults),
     "keys": all clip keys affected, "reason": what is wrong, in words}

Kinds and where they are written:

=====================  =========  ============================================================
kind                   dataset    bad file(s)
=====================  =========  ============================================================
truncated_mp4          voxceleb2  mp4 and m4a cut to 40% of their bytes (the moov atom is lost)
no_audio_track         voxceleb2  mp4 with only a video stream; m4a likewise has no audio stream
silent_audio           both       mp4+m4a (vox2) / wav (vox1) holding digital silence
zero_length_audio      voxceleb1  wav with a valid header and 0 samples
unreadable_image       voxceleb1  every 1-fps face jpg of the clip is random bytes
bad_box_file           voxceleb1  txt whose box table has non-numeric cells
missing_meta_row       both       a whole identity folder on disk without a meta-file row
=====================  =========  ============================================================
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from shards.format import make_key

from . import layout_vox1, layout_vox2, media
from .attributes import SharedAttributes, draw_face_traits, draw_voice_traits
from .clip import ClipRenderer
from .naming import unique_ytids
from .plan import FPS, SAMPLES_PER_FRAME, ClipPlan, CorpusSpec, IdentityPlan, VideoPlan
from .seeding import rng_for

KINDS = (
    "truncated_mp4",
    "no_audio_track",
    "silent_audio",
    "zero_length_audio",
    "unreadable_image",
    "missing_meta_row",
    "bad_box_file",
)
REASONS = {
    "truncated_mp4": "file is cut short; the container index (moov) is missing, nothing decodes",
    "no_audio_track": "the container has no audio stream",
    "silent_audio": "the audio is all zeros (digital silence), no voice to learn from",
    "zero_length_audio": "the audio has 0 samples",
    "unreadable_image": "the jpg is not an image (random bytes)",
    "missing_meta_row": "the identity is on disk but has no row in the meta file (no gender/split)",
    "bad_box_file": "the face-track txt has a non-numeric box table",
}


def _entry(rel: str, identity: IdentityPlan, video: str | None, clip: str | None, kind: str, keys: list[str]) -> dict:
    key = make_key(identity.dataset, identity.identity, video, clip) if clip else None
    return {
        "path": rel,
        "dataset": identity.dataset,
        "kind": kind,
        "identity": identity.identity,
        "video": video,
        "clip": clip,
        "key": key,
        "keys": keys,
        "reason": REASONS[kind],
    }


def _extra_video(spec: CorpusSpec, identity: IdentityPlan, taken: set[str], tag: str, number: int) -> VideoPlan:
    rng = rng_for(spec.seed, "fault-video", identity.identity, tag)
    (ytid,) = unique_ytids(rng, 1, taken)
    frames = int(round(spec.min_seconds * FPS))
    return VideoPlan(
        ytid=ytid, clips=(ClipPlan(clip=f"{number:05d}", start_frame=int(rng.integers(0, 3000)), num_frames=frames),)
    )


def _last_clip_number(identity: IdentityPlan) -> int:
    return max(int(c.clip) for v in identity.videos for c in v.clips)


def _orphan_identity(
    spec: CorpusSpec, dataset: str, identity: str, name: str, set_: str, taken: set[str]
) -> IdentityPlan:
    shared = SharedAttributes("f", "middle", "g1")
    uid = f"fault/{dataset}/{identity}"
    person = IdentityPlan(
        dataset=dataset,
        identity=identity,
        name=name,
        set=set_,
        wen_split=None,
        nationality=None,
        shared=shared,
        face=draw_face_traits(spec.seed, uid, shared),
        voice=draw_voice_traits(spec.seed, uid, shared),
        videos=(),
    )
    return replace(person, videos=(_extra_video(spec, person, taken, "orphan", 1),))


def _write_vox2_fault(out: Path, spec: CorpusSpec, person: IdentityPlan, video: VideoPlan, kind: str) -> list[dict]:
    clip = video.clips[0]
    paths = layout_vox2.clip_paths(person, video, clip)
    layout_vox2.write_clip(out, spec.seed, person, video, clip)
    r = ClipRenderer(spec.seed, person, video, clip)
    if kind == "truncated_mp4":
        for rel in (paths["mp4"], paths["m4a"]):
            data = (out / rel).read_bytes()
            (out / rel).write_bytes(data[: int(len(data) * 0.4)])
    elif kind == "no_audio_track":
        media.write_mp4(out / paths["mp4"], media.lazy_frames(r.frame, clip.num_frames))
        # an .m4a container holding only the video stream: "no audio track" for audio readers too
        media.write_mp4(out / paths["m4a"], media.lazy_frames(r.frame, clip.num_frames))
    elif kind == "silent_audio":
        silence = np.zeros(clip.num_frames * SAMPLES_PER_FRAME, dtype=np.float32)
        media.write_m4a(out / paths["m4a"], silence)
        media.write_mp4(out / paths["mp4"], media.lazy_frames(r.frame, clip.num_frames), audio_from=out / paths["m4a"])
    key = [make_key(person.dataset, person.identity, video.ytid, clip.clip)]
    return [_entry(paths[k], person, video.ytid, clip.clip, kind, key) for k in ("mp4", "m4a")]


def _write_vox1_fault(out: Path, spec: CorpusSpec, person: IdentityPlan, video: VideoPlan, kind: str) -> list[dict]:
    clip = video.clips[0]
    paths = layout_vox1.clip_paths(person, video, clip)
    layout_vox1.write_clip(out, spec.seed, person, video, clip)
    key = [make_key(person.dataset, person.identity, video.ytid, clip.clip)]
    if kind == "zero_length_audio":
        media.write_wav(out / paths["wav"], np.zeros(0, dtype=np.float32))
        bad = [paths["wav"]]
    elif kind == "silent_audio":
        media.write_wav(out / paths["wav"], np.zeros(clip.num_frames * SAMPLES_PER_FRAME, dtype=np.float32))
        bad = [paths["wav"]]
    elif kind == "unreadable_image":
        rng = rng_for(spec.seed, "fault-bytes", person.identity, video.ytid)
        for rel in paths["jpg"]:
            (out / rel).write_bytes(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
        bad = list(paths["jpg"])
    else:  # bad_box_file
        text = (out / paths["txt"]).read_text(encoding="utf-8").splitlines()
        text[8] = "000x12 \tleft \t?? \t-- \t"
        (out / paths["txt"]).write_text("\n".join(text[:12]) + "\n", encoding="utf-8")
        bad = [paths["txt"]]
    return [_entry(rel, person, video.ytid, clip.clip, kind, key) for rel in bad]


def write_faults(out: Path, spec: CorpusSpec, plans: list[IdentityPlan]) -> list[dict]:
    """Write all faults; returns the faults.json entries. The two orphan identities (kind
    `missing_meta_row`) are never added to `plans`, so the meta files leave them out."""
    taken = {v.ytid for p in plans for v in p.videos}
    vox1 = [p for p in plans if p.dataset == "voxceleb1"]
    vox2 = [p for p in plans if p.dataset == "voxceleb2"]
    entries: list[dict] = []
    host2 = next(p for p in vox2 if p.set == "dev")
    number = _last_clip_number(host2)
    for kind in ("truncated_mp4", "no_audio_track", "silent_audio"):
        number += 1
        entries += _write_vox2_fault(out, spec, host2, _extra_video(spec, host2, taken, kind, number), kind)
    host1 = vox1[-1]  # a Wen 'train' identity when there are >= 3 identities
    for kind in ("zero_length_audio", "silent_audio", "unreadable_image", "bad_box_file"):
        entries += _write_vox1_fault(out, spec, host1, _extra_video(spec, host1, taken, kind, 1), kind)

    last1 = max(int(p.identity[2:]) for p in vox1)
    orphan1 = _orphan_identity(spec, "voxceleb1", f"id{last1 + 1}", "Zz_Unlisted", "dev", taken)
    layout_vox1.write_clip(out, spec.seed, orphan1, orphan1.videos[0], orphan1.videos[0].clips[0])
    last2 = max(int(p.identity[2:]) for p in vox2)
    orphan2 = _orphan_identity(spec, "voxceleb2", f"id{last2 + 1:05d}", f"n{last2 + 1:06d}", "dev", taken)
    layout_vox2.write_clip(out, spec.seed, orphan2, orphan2.videos[0], orphan2.videos[0].clips[0])
    for person, dirs in (
        (
            orphan1,
            [
                f"voxceleb1/wav/{orphan1.identity}",
                f"voxceleb1/txt/{orphan1.identity}",
                f"{layout_vox1.FACE_ROOT}/{orphan1.name}",
            ],
        ),
        (orphan2, [f"voxceleb2/dev/{k}/{orphan2.identity}" for k in ("mp4", "aac", "txt")]),
    ):
        keys = [make_key(person.dataset, person.identity, v.ytid, c.clip) for v in person.videos for c in v.clips]
        entries += [_entry(rel, person, None, None, "missing_meta_row", keys) for rel in dirs]
    return entries


def save_faults(out: Path, entries: list[dict]) -> None:
    media.write_text(Path(out) / "faults.json", json.dumps(entries, indent=1) + "\n")
