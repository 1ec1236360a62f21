"""The corpus plan: who exists, in which split, with which videos and clips (no media yet).

The plan is computed in the parent process from the seed alone and is small (O(identities x
videos x clips) records); workers render media from plan entries, so any number of workers gives
the same files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import naming
from .attributes import (
    FaceTraits,
    SharedAttributes,
    VoiceTraits,
    draw_face_traits,
    draw_shared_attributes,
    draw_voice_traits,
)
from .seeding import rng_for

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

#: Nationality column values per appearance group. 30% of people get a majority nationality
#: instead (the real file is 64% USA), so nationality is a noisy proxy of the group, as in reality.
GROUP_NATIONALITIES = {
    "g0": ("UK", "Canada", "Australia", "Ireland", "Norway", "Germany", "Sweden"),
    "g1": ("India", "Mexico", "Italy", "Spain", "Chile", "Philippines", "Sri Lanka"),
    "g2": ("South Africa", "Sudan", "Trinidad and Tobago", "USA"),
}
MAJORITY_NATIONALITIES = ("USA", "UK")


@dataclass(frozen=True)
class ClipPlan:
    clip: str  # "00001"
    start_frame: int  # first frame number in the (virtual) source YouTube video
    num_frames: int  # at 25 fps; audio has num_frames * 640 samples

    @property
    def seconds(self) -> float:
        return self.num_frames / FPS


@dataclass(frozen=True)
class VideoPlan:
    ytid: str
    clips: tuple[ClipPlan, ...]


@dataclass(frozen=True)
class IdentityPlan:
    dataset: str  # "voxceleb1" | "voxceleb2"
    identity: str  # "id10001" | "id00012"
    name: str  # VGGFace1 name (vox1) or VGGFace2 id (vox2)
    set: str  # meta-file Set column: "dev" | "test"
    wen_split: str | None  # vox1 only: "train" | "val" | "test"
    nationality: str | None  # vox1 only
    shared: SharedAttributes
    face: FaceTraits
    voice: VoiceTraits
    videos: tuple[VideoPlan, ...]

    @property
    def uid(self) -> str:
        return f"{self.dataset}/{self.identity}"


@dataclass(frozen=True)
class CorpusSpec:
    """Arguments that define a corpus; identical specs give identical bytes."""

    identities: int = 6
    videos_per_identity: int = 2
    clips_per_video: int = 1
    seed: int = 0
    min_seconds: float = 4.0
    max_seconds: float = 6.0
    interference: float = 0.0  # probability of a stranger's voice / face in a clip (nuisance.py)
    realistic: bool = False  # VoxCeleb2 mp4s with texture, grain and ~250 kbps (realistic.py)

    def validate(self) -> None:
        if not 0.0 <= self.interference <= 1.0:
            raise ValueError(f"--interference must be a probability in [0, 1], got {self.interference}")
        if self.identities < 1 or self.videos_per_identity < 1 or self.clips_per_video < 1:
            raise ValueError("--identities, --videos-per-identity and --clips-per-video must all be >= 1")
        if not (1.0 <= self.min_seconds <= self.max_seconds <= 60):
            raise ValueError(
                f"clip length must satisfy 1 <= min ({self.min_seconds}) <= max ({self.max_seconds}) <= 60 s"
            )
        if self.clips_per_video > 99999:
            raise ValueError("--clips-per-video must be < 100000 (clip names are 5 digits)")


def _videos(spec: CorpusSpec, uid: str, taken: set[str], continue_numbering: bool) -> tuple[VideoPlan, ...]:
    rng = rng_for(spec.seed, "videos", uid)
    ytids = naming.unique_ytids(rng, spec.videos_per_identity, taken)
    lo, hi = int(round(spec.min_seconds * FPS)), int(round(spec.max_seconds * FPS))
    videos, number = [], 0
    for ytid in ytids:
        clips, frame = [], int(rng.integers(0, 3000))
        if not continue_numbering:
            number = 0
        for _ in range(spec.clips_per_video):
            number += 1
            n = int(rng.integers(lo, hi + 1))
            clips.append(ClipPlan(clip=f"{number:05d}", start_frame=frame, num_frames=n))
            frame += n + int(rng.integers(10, 400))
        videos.append(VideoPlan(ytid=ytid, clips=tuple(clips)))
    return tuple(videos)


def _person(spec: CorpusSpec, dataset: str, identity: str, shared: SharedAttributes) -> tuple[FaceTraits, VoiceTraits]:
    uid = f"{dataset}/{identity}"
    return draw_face_traits(spec.seed, uid, shared), draw_voice_traits(spec.seed, uid, shared)


def plan_vox1(spec: CorpusSpec, taken_ytids: set[str]) -> list[IdentityPlan]:
    """VoxCeleb1 identities: names chosen so the Wen letter split has naming.split_counts() sizes."""
    rng = rng_for(spec.seed, "names", "voxceleb1")
    initials = naming.vox1_initials(rng, spec.identities)
    names: list[str] = []
    for i, initial in enumerate(initials):
        while True:
            name = naming.make_name(rng, initial, dotted=(i % 7 == 3))
            if name not in names:
                names.append(name)
                break
    names.sort()  # real VoxCeleb1 ids follow the ASCII order of the names
    shared = draw_shared_attributes(spec.seed, "voxceleb1", spec.identities)
    nat_rng = rng_for(spec.seed, "nationality", "voxceleb1")
    plans = []
    for i, (name, attrs) in enumerate(zip(names, shared)):
        identity = f"id{10001 + i}"
        pool = MAJORITY_NATIONALITIES if nat_rng.random() < 0.3 else GROUP_NATIONALITIES[attrs.group]
        nationality = pool[int(nat_rng.integers(len(pool)))]
        face, voice = _person(spec, "voxceleb1", identity, attrs)
        plans.append(
            IdentityPlan(
                dataset="voxceleb1",
                identity=identity,
                name=name,
                set="test" if name.startswith("E") else "dev",  # real: the 40 test ids are the E names
                wen_split=naming.wen_split(name),
                nationality=nationality,
                shared=attrs,
                face=face,
                voice=voice,
                videos=_videos(spec, f"voxceleb1/{identity}", taken_ytids, continue_numbering=False),
            )
        )
    return plans


def vox2_test_count(n: int) -> int:
    """About 25% of VoxCeleb2 identities in `test`, at least 4, always leaving one in `dev`."""
    if n < 2:
        return 0
    return min(max(4, int(round(0.25 * n))), n - 1)


def plan_vox2(spec: CorpusSpec, taken_ytids: set[str]) -> list[IdentityPlan]:
    """VoxCeleb2 identities (distinct people from VoxCeleb1, as in reality)."""
    rng = rng_for(spec.seed, "names", "voxceleb2")
    numbers = naming.vox2_numbers(rng, spec.identities)
    test_positions = set(rng.choice(spec.identities, size=vox2_test_count(spec.identities), replace=False).tolist())
    shared = draw_shared_attributes(spec.seed, "voxceleb2", spec.identities)
    plans = []
    for i, ((vox, vgg), attrs) in enumerate(zip(numbers, shared)):
        identity = f"id{vox:05d}"
        face, voice = _person(spec, "voxceleb2", identity, attrs)
        plans.append(
            IdentityPlan(
                dataset="voxceleb2",
                identity=identity,
                name=f"n{vgg:06d}",
                set="test" if i in test_positions else "dev",
                wen_split=None,
                nationality=None,
                shared=attrs,
                face=face,
                voice=voice,
                # VoxCeleb2 numbers utterances per identity across videos (00001.. continues)
                videos=_videos(spec, f"voxceleb2/{identity}", taken_ytids, continue_numbering=True),
            )
        )
    return plans


def plan_corpus(spec: CorpusSpec) -> list[IdentityPlan]:
    """All identities of both datasets, VoxCeleb1 first; YouTube ids unique across the corpus."""
    spec.validate()
    taken: set[str] = set()
    return plan_vox1(spec, taken) + plan_vox2(spec, taken)


def clip_seed_key(identity: IdentityPlan, video: VideoPlan, clip: ClipPlan) -> tuple[str, str, str, str]:
    return (identity.dataset, identity.identity, video.ytid, clip.clip)


def clip_rng(seed: int, identity: IdentityPlan, video: VideoPlan, clip: ClipPlan, purpose: str) -> np.random.Generator:
    return rng_for(seed, purpose, *clip_seed_key(identity, video, clip))
