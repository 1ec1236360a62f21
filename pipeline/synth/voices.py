"""Source-filter speech synthesis: glottal pulses -> formant filters, with syllable rhythm.

Speech-like rather than intelligible: what matters for voice-face matching is that the audio path
has to estimate pitch, formant spacing (vocal-tract length), speaking rate and voice quality from
log-mel features, exactly the cues that carry gender/age/accent in real voices.

Model (classic Klatt-style cascade synthesiser, much simplified):

* Syllables: onset consonant (unvoiced fricative/stop noise burst, voiced onset, or none) + vowel
  nucleus drawn from the identity's accent vowel weights; durations ~ 1/speaking rate; phrases of
  3-8 syllables separated by pauses.
* F0 contour: base F0 x 2^(semitones/12), where semitones = phrase declination (intonation slope)
  + accents on stressed syllables (pitch range) + slow drift; cycle-to-cycle jitter.
* Source: Rosenberg glottal flow pulse per cycle, differentiated (lip radiation), plus aspiration
  noise gated by the flow (breathiness).
* Filter: cascade of 4 second-order formant resonators whose frequencies glide between vowel
  targets, updated every 10 ms with filter state carried across blocks; optional nasal resonance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from .attributes import VoiceTraits

SAMPLE_RATE = 16000
VOWELS = ("a", "e", "i", "o", "u")
#: Formant targets (Hz) of an adult male vocal tract (Peterson & Barney style averages).
VOWEL_FORMANTS = {
    "a": (730.0, 1090.0, 2440.0, 3400.0),
    "e": (530.0, 1840.0, 2480.0, 3500.0),
    "i": (270.0, 2290.0, 3010.0, 3600.0),
    "o": (570.0, 840.0, 2410.0, 3400.0),
    "u": (300.0, 870.0, 2240.0, 3400.0),
}
#: How far the jaw opens for each vowel (drives the rendered mouth).
VOWEL_OPENNESS = {"a": 1.0, "e": 0.7, "i": 0.45, "o": 0.8, "u": 0.4}
FORMANT_BANDWIDTHS = (80.0, 100.0, 140.0, 200.0)
BLOCK = 160  # 10 ms formant update step
#: Unvoiced onsets: (low Hz, high Hz, duration s, level relative to the vowel RMS).
FRICATIVES = {
    "s": (4000.0, 7500.0, 0.09, 0.5),
    "sh": (2200.0, 4500.0, 0.09, 0.5),
    "f": (1200.0, 7000.0, 0.07, 0.2),
    "t": (3000.0, 7000.0, 0.03, 0.7),
    "k": (1500.0, 3000.0, 0.035, 0.6),
}
_FRICATIVE_FILTERS = {k: butter(2, [lo, hi], btype="band", fs=SAMPLE_RATE) for k, (lo, hi, _, _) in FRICATIVES.items()}


@dataclass
class Utterance:
    """A synthesised utterance plus what the face renderer needs to move the mouth in sync."""

    waveform: np.ndarray  # float32 [samples], peak ~0.5 before nuisance
    mouth: np.ndarray  # float32 [frames] in [0, 1], jaw opening per 25-fps video frame


def _resonator(freq: float, bw: float, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Second-order all-pole resonator with unit gain at DC (Klatt 1980)."""
    r = np.exp(-np.pi * bw / sr)
    c = -r * r
    b = 2 * r * np.cos(2 * np.pi * freq / sr)
    a0 = 1 - b - c
    return np.array([a0]), np.array([1.0, -b, -c])


def _plan_syllables(voice: VoiceTraits, seconds: float, rng: np.random.Generator) -> list[dict]:
    """Syllable/pause schedule filling `seconds` (times in seconds)."""
    syllables, t = [], float(rng.uniform(0.05, 0.25))
    weights = np.asarray(voice.vowel_weights, dtype=float)
    weights = weights / weights.sum()
    phrase_left = int(rng.integers(3, 9))
    phrase_start = t
    while t < seconds - 0.1:
        dur = float(rng.gamma(8.0, 1.0 / (8.0 * voice.speaking_rate)))
        dur = float(np.clip(dur, 0.08, 0.5))
        onset_kind = rng.choice(["fricative", "voiced", "none"], p=[0.45, 0.35, 0.2])
        fric = str(rng.choice(list(FRICATIVES))) if onset_kind == "fricative" else None
        syllables.append(
            {
                "start": t,
                "dur": dur,
                "vowel": VOWELS[int(rng.choice(len(VOWELS), p=weights))],
                "fricative": fric,
                "accent": float(rng.normal(0, 1)) * (rng.random() < 0.4),
                "phrase_start": phrase_start,
                "level": float(rng.uniform(0.7, 1.0)),
            }
        )
        t += dur
        phrase_left -= 1
        if phrase_left == 0:
            t += float(rng.uniform(0.15, 0.45))
            phrase_left = int(rng.integers(3, 9))
            phrase_start = t
    return syllables


def _rosenberg_flow(phase: np.ndarray, open_quotient: float = 0.6, speed: float = 2.0) -> np.ndarray:
    """Rosenberg glottal flow sampled at fractional cycle phase in [0, 1); the caller
    differentiates it (flow derivative = source with lip radiation)."""
    tp = open_quotient * speed / (1 + speed)
    tn = open_quotient / (1 + speed)
    flow = np.where(phase < tp, 0.5 * (1 - np.cos(np.pi * phase / tp)), 0.0)
    closing = (phase >= tp) & (phase < tp + tn)
    flow = np.where(closing, np.cos(0.5 * np.pi * (phase - tp) / tn), flow)
    return flow


def synthesise(voice: VoiceTraits, num_samples: int, fps: int, rng: np.random.Generator) -> Utterance:
    """Speech-like waveform of exactly `num_samples` samples at 16 kHz for one identity."""
    sr = SAMPLE_RATE
    seconds = num_samples / sr
    syllables = _plan_syllables(voice, seconds, rng)
    t = np.arange(num_samples) / sr

    # --- per-sample control tracks from the syllable schedule ---
    voiced_env = np.zeros(num_samples)
    semitones = np.zeros(num_samples)
    f_targets = np.zeros((num_samples // BLOCK + 2, 4))
    block_times = np.arange(f_targets.shape[0]) * BLOCK / sr
    openness = np.zeros(num_samples)
    noise_out = np.zeros(num_samples)
    scale = voice.formant_scale * np.array([*voice.vowel_offsets, 1.0])
    last_vowel = "a"
    for syl in syllables:
        s0 = int(syl["start"] * sr)
        s1 = min(num_samples, int((syl["start"] + syl["dur"]) * sr))
        if s1 <= s0:
            continue
        onset = 0
        if syl["fricative"]:
            _, _, dur, level = FRICATIVES[syl["fricative"]]
            n = min(int(dur * sr), (s1 - s0) // 2)
            b, a = _FRICATIVE_FILTERS[syl["fricative"]]
            burst = lfilter(b, a, rng.normal(0, 1, n))
            burst *= np.hanning(n) * level / (np.std(burst) + 1e-9)
            noise_out[s0 : s0 + n] += burst
            onset = n
        v0 = s0 + onset
        n_v = s1 - v0
        if n_v > 8:
            env = np.sin(np.linspace(0, np.pi, n_v)) ** 0.6 * syl["level"]
            voiced_env[v0:s1] = np.maximum(voiced_env[v0:s1], env)
            openness[v0:s1] = np.maximum(openness[v0:s1], env * VOWEL_OPENNESS[syl["vowel"]])
        # phrase declination + syllable accent (rise-fall over the syllable)
        seg = t[s0:s1]
        semitones[s0:s1] = voice.intonation_slope * (seg - syl["phrase_start"]) + syl[
            "accent"
        ] * voice.pitch_range * np.sin(np.linspace(0, np.pi, s1 - s0))
        # formant targets: glide from previous vowel over the first 30% of the syllable
        blocks = (block_times >= syl["start"]) & (block_times < syl["start"] + syl["dur"])
        idx = np.nonzero(blocks)[0]
        if len(idx):
            frac = np.clip((block_times[idx] - syl["start"]) / (0.3 * syl["dur"]), 0, 1)[:, None]
            prev = np.array(VOWEL_FORMANTS[last_vowel]) * scale
            cur = np.array(VOWEL_FORMANTS[syl["vowel"]]) * scale
            f_targets[idx] = (1 - frac) * prev + frac * cur
        last_vowel = syl["vowel"]
    # blocks in pauses keep the last vowel's formants (the source is silent there anyway)
    for i in range(len(f_targets)):
        if not f_targets[i].any():
            f_targets[i] = f_targets[i - 1] if i else np.array(VOWEL_FORMANTS["a"]) * scale
    f_targets = np.minimum(f_targets, 0.45 * sr)

    # --- glottal source with jitter and slow drift ---
    drift = np.interp(t, np.linspace(0, seconds, 8), rng.normal(0, 0.6, 8))
    f0 = voice.f0_hz * 2.0 ** ((semitones + drift) / 12.0)
    cycles = np.cumsum(f0 / sr)
    cycle_index = np.floor(cycles).astype(np.int64)
    jitter = 1.0 + voice.jitter * rng.normal(0, 1, cycle_index[-1] + 2)
    cycles = np.cumsum(f0 * jitter[cycle_index] / sr)
    phase = cycles - np.floor(cycles)
    flow = _rosenberg_flow(phase)
    source = np.diff(flow, prepend=flow[0]) * (sr / voice.f0_hz) * 0.05
    aspiration = rng.normal(0, 1, num_samples) * (0.3 + flow) * voice.breathiness * 0.15
    source = (source + aspiration) * voiced_env

    # --- time-varying formant cascade, 10 ms blocks, state carried across blocks ---
    # The 4 resonators form one second-order-section cascade; sosfilt runs it per block.
    out = np.empty_like(source)
    zi = np.zeros((4, 2))
    sos = np.zeros((4, 6))
    sos[:, 3] = 1.0
    bandwidths = np.asarray(FORMANT_BANDWIDTHS)
    radius = np.exp(-np.pi * bandwidths / sr)
    # consecutive blocks with identical formants (steady vowels, pauses) are filtered in one call
    n_blocks = -(-num_samples // BLOCK)
    changes = np.any(np.diff(f_targets[:n_blocks], axis=0) != 0, axis=1)
    starts = np.concatenate([[0], np.nonzero(changes)[0] + 1, [n_blocks]])
    for b0, b1 in zip(starts[:-1], starts[1:]):
        cos_term = 2 * radius * np.cos(2 * np.pi * f_targets[b0] / sr)
        sos[:, 4] = -cos_term
        sos[:, 5] = radius * radius
        sos[:, 0] = 1 - cos_term + radius * radius  # unit gain at DC, as _resonator
        seg = slice(b0 * BLOCK, min(b1 * BLOCK, num_samples))
        out[seg], zi = sosfilt(sos, source[seg], zi=zi)
    if voice.nasality > 0:
        b, a = _resonator(270.0, 100.0)
        out = out + voice.nasality * 0.3 * lfilter(b, a, source)
    voiced_rms = np.sqrt(np.mean(out[voiced_env > 0.3] ** 2)) if np.any(voiced_env > 0.3) else 1.0
    out = out + noise_out * voiced_rms
    peak = np.max(np.abs(out)) + 1e-9
    out = (0.5 * out / peak).astype(np.float32)

    n_frames = int(round(seconds * fps))
    per_frame = num_samples / max(n_frames, 1)
    mouth = np.array(
        [openness[int(i * per_frame) : int((i + 1) * per_frame)].mean() if n_frames else 0.0 for i in range(n_frames)],
        dtype=np.float32,
    )
    return Utterance(waveform=out, mouth=np.clip(mouth, 0, 1))
