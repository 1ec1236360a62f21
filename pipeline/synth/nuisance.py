"""Per-clip nuisance: what changes between two clips of the same person.

Face side: head pose, lighting (direction, brightness, colour temperature), blur, occlusion
(microphone, hand, caption bar, sunglasses), background and clothing (per video). Voice side:
additive noise, background music, reverberation, recording level. Drawn from the clip's own random
stream, independent of identity, so a model cannot use them as identity cues across videos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from .faces import Pose

OCCLUSIONS = ("none", "microphone", "hand", "caption", "sunglasses")


@dataclass(frozen=True)
class FaceNuisance:
    pose: Pose
    light_angle: float  # radians, direction the light comes from
    light_strength: float  # 0..0.5 gain slope across the frame
    brightness: float
    tint: tuple[float, float, float]  # per-channel gains (colour temperature)
    blur_radius: float  # 0 = sharp
    occlusion: str
    occlusion_pos: tuple[float, float]  # where a hand/microphone sits (fractions of the frame)
    bob_seed: int  # seeds the small per-frame head motion


@dataclass(frozen=True)
class VoiceNuisance:
    snr_db: float | None  # white/pink noise, None = clean
    noise_colour: str  # "white" | "pink"
    music_snr_db: float | None  # background music, None = none
    rt60: float | None  # reverberation time in seconds, None = dry
    level_db: float  # RMS level of the final clip in dBFS


def draw_face_nuisance(rng: np.random.Generator) -> FaceNuisance:
    occ = str(rng.choice(OCCLUSIONS, p=[0.72, 0.08, 0.07, 0.08, 0.05]))
    return FaceNuisance(
        pose=Pose(
            yaw=float(np.clip(rng.normal(0, 12), -30, 30)),
            pitch=float(np.clip(rng.normal(0, 6), -15, 15)),
            roll=float(np.clip(rng.normal(0, 5), -15, 15)),
        ),
        light_angle=float(rng.uniform(0, 2 * np.pi)),
        light_strength=float(rng.uniform(0, 0.45)),
        brightness=float(rng.uniform(0.65, 1.25)),
        tint=tuple(float(v) for v in rng.normal(1.0, 0.06, 3)),
        blur_radius=float(rng.uniform(0.6, 2.2)) if rng.random() < 0.3 else 0.0,
        occlusion=occ,
        occlusion_pos=(float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.7, 0.95))),
        bob_seed=int(rng.integers(2**31)),
    )


def draw_voice_nuisance(rng: np.random.Generator) -> VoiceNuisance:
    return VoiceNuisance(
        snr_db=float(rng.uniform(5, 30)) if rng.random() < 0.7 else None,
        noise_colour=str(rng.choice(["white", "pink"])),
        music_snr_db=float(rng.uniform(5, 20)) if rng.random() < 0.25 else None,
        rt60=float(rng.uniform(0.15, 0.7)) if rng.random() < 0.4 else None,
        level_db=float(rng.uniform(-32, -14)),
    )


def light_map(n: FaceNuisance, size: int) -> np.ndarray:
    """[size, size, 3] multiplicative gain: directional light x brightness x colour tint."""
    coords = np.linspace(-1, 1, size, dtype=np.float32)
    gx, gy = np.meshgrid(coords, coords)
    gain = 1 + n.light_strength * (np.cos(n.light_angle) * gx + np.sin(n.light_angle) * gy)
    return (gain[..., None] * n.brightness * np.asarray(n.tint, dtype=np.float32)).astype(np.float32)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(0, 1, n))
    spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
    return np.fft.irfft(spec, n)


def _music(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A few sustained harmonic notes in a chord progression (no speech-like formants)."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    beat = rng.uniform(0.4, 0.8)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    for start in np.arange(0, n / sr, beat * 4):
        seg = (t >= start) & (t < start + beat * 4)
        chord = root * 2 ** (np.array([0, 4, 7]) / 12 + rng.integers(0, 3))
        for f in chord:
            for h in (1, 2, 3):
                out[seg] += np.sin(2 * np.pi * f * h * t[seg]) / h
    return out * np.exp(-((t % beat) / beat) * 2.0)


def _rir(rng: np.random.Generator, rt60: float, sr: int) -> np.ndarray:
    """Exponentially decaying noise impulse response with a direct-path spike."""
    n = int(rt60 * sr)
    decay = np.exp(-6.9 * np.arange(n) / n)  # -60 dB at rt60
    rir = rng.normal(0, 1, n) * decay * 0.25
    rir[0] = 1.0
    return rir / np.sqrt(np.sum(rir**2))


def apply_voice_nuisance(x: np.ndarray, n: VoiceNuisance, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Reverb, then noise and music at their SNRs, then scale to the RMS level; float32 in [-1, 1]."""
    y = x.astype(np.float64)
    if n.rt60:
        y = fftconvolve(y, _rir(rng, n.rt60, sr))[: len(x)]
    power = np.mean(y**2) + 1e-12
    if n.snr_db is not None:
        noise = rng.normal(0, 1, len(y)) if n.noise_colour == "white" else _pink(rng, len(y))
        y = y + noise * np.sqrt(power / (np.mean(noise**2) + 1e-12) / 10 ** (n.snr_db / 10))
    if n.music_snr_db is not None:
        music = _music(rng, len(y), sr)
        y = y + music * np.sqrt(power / (np.mean(music**2) + 1e-12) / 10 ** (n.music_snr_db / 10))
    rms = np.sqrt(np.mean(y**2)) + 1e-12
    y *= 10 ** (n.level_db / 20) / rms
    return np.clip(y, -1.0, 1.0).astype(np.float32)


# ---- optional interference (--interference P): a second person in the clip ----------------------
#
# The papers' attention modules are meant to keep the cues of the speaker and drop interference
# such as "overlapping sound sources" and other people in the frame (BIANet §5.1, AICANet Fig. 6).
# The nuisance above is attribute-free noise; this one carries *wrong attribute cues*: a random
# stranger (own gender, age band and group, drawn per clip) talks underneath the speaker and
# appears small in the background of the frame. A model that reads gender or age off the whole
# clip is misled by it; one that attends to the speaker is not.


@dataclass(frozen=True)
class Interference:
    stranger_uid: str  # seeds the stranger's traits (unique per clip)
    shared: object  # the stranger's SharedAttributes
    voice_sir_db: float | None  # speaker-to-stranger ratio, None = no second voice
    face_box: tuple[int, int, int] | None  # (x, y, size) of the background face, None = none


def draw_interference(
    rng: np.random.Generator, probability: float, clip_key: str, frame_size: int
) -> Interference | None:
    """With `probability` each, a second voice (SIR 0-8 dB) and a background face of a stranger."""
    from .attributes import AGE_BANDS, GENDERS, GROUPS, SharedAttributes

    if probability <= 0:
        return None
    voice = rng.random() < probability
    face = rng.random() < probability
    if not (voice or face):
        return None
    shared = SharedAttributes(str(rng.choice(GENDERS)), str(rng.choice(AGE_BANDS)), str(rng.choice(GROUPS)))
    size = int(frame_size * rng.uniform(0.32, 0.42))
    left = bool(rng.random() < 0.5)
    x = int(rng.uniform(0, 0.08) * frame_size) if left else frame_size - size - int(rng.uniform(0, 0.08) * frame_size)
    y = int(rng.uniform(0.0, 0.1) * frame_size)
    return Interference(
        stranger_uid=f"stranger/{clip_key}",
        shared=shared,
        voice_sir_db=float(rng.uniform(0, 8)) if voice else None,
        face_box=(x, y, size) if face else None,
    )


def mix_at_sir(speech: np.ndarray, other: np.ndarray, sir_db: float) -> np.ndarray:
    """speech + other scaled so that power(speech) / power(other) = sir_db (float32)."""
    p_s = float(np.mean(speech.astype(np.float64) ** 2)) + 1e-12
    p_o = float(np.mean(other.astype(np.float64) ** 2)) + 1e-12
    return (speech + other * np.sqrt(p_s / p_o / 10 ** (sir_db / 10))).astype(np.float32)
