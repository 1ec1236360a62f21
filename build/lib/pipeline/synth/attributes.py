"""The latent identity model: shared attributes drive both modalities, traits do not.

Each synthetic person has three *shared* attributes (gender, age band, appearance group). They are
the ONLY channel between face and voice: face traits are drawn from a face-only random stream
conditioned on the shared attributes, voice traits from a separate voice-only stream conditioned on
the same attributes. So a voice predicts its face exactly as far as the shared attributes are
recoverable from both, as in real data where gender, age and ethnicity/nationality carry most of
the cross-modal signal (Nagrani et al. 2018; Wen et al. 2019, DIMNet). Because the attributes are
discrete, the Bayes ceiling of 1:2 matching for someone who knows them is exact and cheap to
compute (see oracle.py).

Mapping from attributes to traits (all means; every trait also has identity noise):

=================  ===============================  ======================================
trait              face (faces.py)                  voice (voices.py)
=================  ===============================  ======================================
gender             face width, jaw, brows, hair     F0 (~118 vs ~208 Hz), formant scale
                   length, beard, lip fullness      (vocal-tract length), breathiness
age band           wrinkles, grey hair, width       speaking rate, jitter, breathiness, F0
appearance group   skin tone, hair colour           vowel preference (accent), intonation
                                                    slope, speaking-rate offset
independent        eye size/spacing/colour, nose,   pitch range, personal vowel formant
(identity only)    mouth width, ears, hair parting  offsets, nasality
=================  ===============================  ======================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .seeding import rng_for

GENDERS = ("m", "f")
AGE_BANDS = ("young", "middle", "older")
GROUPS = ("g0", "g1", "g2")

#: Mean skin colour (sRGB) per appearance group; the per-identity lightness noise makes the
#: group distributions overlap, so skin tone alone does not identify the group.
GROUP_SKIN_RGB = {"g0": (234, 194, 166), "g1": (196, 146, 104), "g2": (122, 84, 60)}
#: Hair colour palettes and their probabilities per group.
HAIR_PALETTE = {
    "blond": (206, 170, 104),
    "brown": (104, 68, 40),
    "black": (34, 28, 26),
    "auburn": (132, 58, 30),
}
GROUP_HAIR_PROBS = {
    "g0": {"blond": 0.35, "brown": 0.4, "black": 0.1, "auburn": 0.15},
    "g1": {"blond": 0.03, "brown": 0.42, "black": 0.55, "auburn": 0.0},
    "g2": {"blond": 0.0, "brown": 0.12, "black": 0.88, "auburn": 0.0},
}
GREY_HAIR_RGB = (196, 196, 192)
IRIS_PALETTE = ((70, 45, 25), (40, 30, 20), (70, 110, 150), (80, 110, 70), (110, 90, 50))

#: Vowel preference (accent) per group over the five cardinal vowels of voices.VOWELS.
GROUP_VOWEL_WEIGHTS = {
    "g0": (0.15, 0.3, 0.3, 0.15, 0.1),
    "g1": (0.35, 0.15, 0.1, 0.3, 0.1),
    "g2": (0.2, 0.1, 0.1, 0.25, 0.35),
}
#: Intonation slope (semitones per second over an utterance) per group.
GROUP_INTONATION = {"g0": -1.2, "g1": 0.8, "g2": 0.0}
GROUP_RATE_OFFSET = {"g0": 0.0, "g1": 0.45, "g2": -0.35}


@dataclass(frozen=True)
class SharedAttributes:
    """What the face and the voice of one person have in common."""

    gender: str
    age_band: str
    group: str

    def key(self) -> tuple[str, str, str]:
        return (self.gender, self.age_band, self.group)


@dataclass(frozen=True)
class FaceTraits:
    """Identity-level face parameters (per-clip pose/light/blur/occlusion live in nuisance.py)."""

    skin_rgb: tuple[int, int, int]
    face_width: float  # half-width of the head ellipse / half-height
    jaw: float  # 0 = pointed/rounded, 1 = square
    hair_rgb: tuple[int, int, int]
    hair_style: str  # "short", "long", "bald"
    brow_thickness: float
    beard: float  # 0 = none, 1 = full beard
    wrinkles: float  # 0..1
    lip_fullness: float
    # independent of the shared attributes:
    eye_size: float
    eye_spacing: float
    iris_rgb: tuple[int, int, int]
    nose_length: float
    nose_width: float
    mouth_width: float
    ear_size: float
    hair_part: float  # -1 (left) .. 1 (right)
    face_length: float


@dataclass(frozen=True)
class VoiceTraits:
    """Identity-level voice parameters (per-clip noise/music/reverb/level live in nuisance.py)."""

    f0_hz: float
    formant_scale: float  # >1 means a shorter vocal tract, higher formants
    speaking_rate: float  # syllables per second
    breathiness: float  # 0..1 aspiration noise mixed into the glottal source
    jitter: float  # relative cycle-to-cycle F0 perturbation
    vowel_weights: tuple[float, ...]
    intonation_slope: float  # semitones per second
    # independent of the shared attributes:
    pitch_range: float  # semitones of syllable accents
    vowel_offsets: tuple[float, float, float]  # personal multipliers of F1, F2, F3
    nasality: float  # 0..1


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    names = list(probs)
    p = np.array([probs[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _clip_rgb(values) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(values), 0, 255))


def draw_face_traits(seed: int, uid: str, shared: SharedAttributes) -> FaceTraits:
    """Face traits of one identity: shared attributes + a FACE-ONLY random stream."""
    rng = rng_for(seed, "face", uid)
    male = shared.gender == "m"
    age = AGE_BANDS.index(shared.age_band)
    lightness = rng.normal(1.0, 0.08)
    warmth = rng.normal(0.0, 6.0)
    base = np.array(GROUP_SKIN_RGB[shared.group], dtype=float) * lightness
    skin = _clip_rgb(base + np.array([warmth, 0.0, -warmth]))
    hair = np.array(HAIR_PALETTE[_choice(rng, GROUP_HAIR_PROBS[shared.group])], dtype=float)
    grey = (0.0, 0.15, 0.65)[age] + rng.uniform(-0.1, 0.2) * (age > 0)
    hair = (1 - np.clip(grey, 0, 1)) * hair + np.clip(grey, 0, 1) * np.array(GREY_HAIR_RGB)
    if male:
        style = _choice(rng, {"short": 0.78, "long": 0.1, "bald": 0.12 + 0.18 * (age == 2)})
    else:
        style = _choice(rng, {"long": 0.8, "short": 0.2})
    beard = float(rng.uniform(0.35, 1.0)) if (male and rng.random() < 0.4) else 0.0
    return FaceTraits(
        skin_rgb=skin,
        face_width=float(0.70 + 0.06 * male + 0.02 * age + rng.normal(0, 0.025)),
        jaw=float(np.clip((0.72 if male else 0.28) + rng.normal(0, 0.12), 0, 1)),
        hair_rgb=_clip_rgb(hair),
        hair_style=style,
        brow_thickness=float(np.clip((1.0 if male else 0.62) + rng.normal(0, 0.12), 0.3, 1.5)),
        beard=beard,
        wrinkles=float(np.clip((0.0, 0.35, 0.8)[age] + rng.normal(0, 0.08), 0, 1)),
        lip_fullness=float((0.85 if male else 1.15) + rng.normal(0, 0.08)),
        eye_size=float(rng.normal(1.0, 0.12)),
        eye_spacing=float(rng.normal(1.0, 0.07)),
        iris_rgb=IRIS_PALETTE[int(rng.integers(len(IRIS_PALETTE)))],
        nose_length=float(rng.normal(1.0, 0.1)),
        nose_width=float(rng.normal(1.0, 0.12)),
        mouth_width=float(rng.normal(1.0, 0.1)),
        ear_size=float(rng.normal(1.0, 0.1)),
        hair_part=float(rng.uniform(-1, 1)),
        face_length=float(rng.normal(1.0, 0.035)),
    )


def draw_voice_traits(seed: int, uid: str, shared: SharedAttributes) -> VoiceTraits:
    """Voice traits of one identity: shared attributes + a VOICE-ONLY random stream."""
    rng = rng_for(seed, "voice", uid)
    male = shared.gender == "m"
    age = AGE_BANDS.index(shared.age_band)
    f0 = 118.0 if male else 208.0
    f0 *= ((1.0, 1.0, 1.06) if male else (1.03, 1.0, 0.9))[age]
    f0 *= {"g0": 1.0, "g1": 1.03, "g2": 0.97}[shared.group]
    f0 *= float(np.exp(rng.normal(0, 0.09)))
    rate = (5.2, 4.6, 3.9)[age] + GROUP_RATE_OFFSET[shared.group] + rng.normal(0, 0.3)
    return VoiceTraits(
        f0_hz=float(f0),
        formant_scale=float((1.0 if male else 1.16) * (1.0, 1.0, 0.98)[age] * np.exp(rng.normal(0, 0.035))),
        speaking_rate=float(np.clip(rate, 2.5, 7.0)),
        breathiness=float(np.clip((0.08, 0.18, 0.35)[age] + 0.1 * (not male) + rng.normal(0, 0.06), 0, 0.8)),
        jitter=float(np.clip((0.006, 0.009, 0.018)[age] + rng.normal(0, 0.002), 0.002, 0.04)),
        vowel_weights=GROUP_VOWEL_WEIGHTS[shared.group],
        intonation_slope=float(GROUP_INTONATION[shared.group] + rng.normal(0, 0.3)),
        pitch_range=float(rng.uniform(1.5, 5.0)),
        vowel_offsets=tuple(float(v) for v in rng.normal(1.0, 0.04, size=3)),
        nasality=float(rng.uniform(0, 1)),
    )


def balanced_draws(rng: np.random.Generator, values: tuple[str, ...], weights: tuple[float, ...], n: int) -> list[str]:
    """n labels whose counts follow `weights` as closely as integers allow, in random order.

    Stratified rather than i.i.d. so that even a 4-identity test corpus contains both genders,
    which the association tests and gender-matched evaluation need.
    """
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    counts = np.floor(w * n).astype(int)
    remainder = w * n - counts
    for idx in np.argsort(-remainder, kind="stable")[: n - counts.sum()]:
        counts[idx] += 1
    labels = [v for v, c in zip(values, counts) for _ in range(c)]
    return [labels[i] for i in rng.permutation(n)]


def draw_shared_attributes(seed: int, dataset: str, n: int) -> list[SharedAttributes]:
    """Shared attributes for n identities of one dataset (stratified gender, age band, group)."""
    rng = rng_for(seed, "shared", dataset)
    genders = balanced_draws(rng, GENDERS, (0.55, 0.45), n)  # VoxCeleb1 is 55% male
    ages = balanced_draws(rng, AGE_BANDS, (0.4, 0.4, 0.2), n)
    groups = balanced_draws(rng, GROUPS, (0.5, 0.3, 0.2), n)
    return [SharedAttributes(g, a, c) for g, a, c in zip(genders, ages, groups)]


def traits_to_json(traits) -> dict:
    """Plain-JSON form of a traits dataclass (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(traits).items()}
