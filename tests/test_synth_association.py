"""Faces and voices are associated only through the shared attributes, and the media carry them.

Measurements here are independent of the generator's internals: F0 is estimated from waveforms
by autocorrelation, skin tone is read from rendered pixels, the mouth opening is counted in
rendered frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.synth.attributes import GROUPS
from pipeline.synth.clip import ClipRenderer
from pipeline.synth.faces import FaceCanvas, Pose, render_face_layers
from pipeline.synth.plan import CorpusSpec, plan_corpus
from pipeline.synth.seeding import rng_for
from pipeline.synth.testing import cached_corpus, load_ground_truth
from pipeline.synth.voices import synthesise

SR = 16000


def estimate_f0(x: np.ndarray, sr: int = SR) -> float:
    """Median autocorrelation pitch (60-400 Hz) over the loud 40-ms frames."""
    frame, hop = 640, 320
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    energy = np.sqrt(np.mean(frames**2, axis=1))
    pitches = []
    lo, hi = sr // 400, sr // 60
    for f in frames[energy > 0.4 * energy.max()]:
        f = f - f.mean()
        ac = np.correlate(f, f, mode="full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            pitches.append(sr / lag)
    return float(np.median(pitches)) if pitches else float("nan")


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))


@pytest.fixture(scope="module")
def people():
    """300 identities (150 per dataset) with a clean 1-s utterance and a neutral face render each."""
    plans = plan_corpus(CorpusSpec(identities=150, videos_per_identity=1, clips_per_video=1))
    f0 = np.array([estimate_f0(synthesise(p.voice, SR, 25, rng_for(0, "t", p.uid)).waveform) for p in plans])
    cv = FaceCanvas(224)
    x, y = (int(round(v / 2)) for v in cv.xy(0.3, 0.05))  # a cheek patch below the eye
    skin = []
    for p in plans:
        (layer,) = render_face_layers(p.face, Pose(), 224, 1, (90, 90, 90))
        patch = np.asarray(layer, dtype=float)[y - 2 : y + 3, x - 2 : x + 3, :3]
        skin.append(patch.reshape(-1, 3).mean(0) @ [0.299, 0.587, 0.114])
    return plans, f0, np.array(skin)


def residual(values: np.ndarray, plans) -> np.ndarray:
    """Values minus the mean of their (gender, age band, group) cell."""
    keys = [p.shared.key() for p in plans]
    out = values.astype(float).copy()
    for key in set(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        out[idx] -= out[idx].mean()
    return out


def test_measured_pitch_tracks_the_voice_trait_and_separates_genders(people):
    plans, f0, _ = people
    truth = np.array([p.voice.f0_hz for p in plans])
    assert np.median(np.abs(f0 / truth - 1)) < 0.06
    male = np.array([p.shared.gender == "m" for p in plans])
    assert auc(f0[~male], f0[male]) > 0.97
    assert np.mean(f0[~male]) - np.mean(f0[male]) > 60


def test_rendered_skin_tone_follows_the_appearance_group(people):
    plans, _, skin = people
    truth = np.array([np.array(p.face.skin_rgb) @ [0.299, 0.587, 0.114] for p in plans])
    assert np.corrcoef(skin, truth)[0, 1] > 0.95
    means = [skin[[p.shared.group == g for p in plans]].mean() for g in GROUPS]
    assert means[0] > means[1] > means[2]


def test_face_and_voice_correlate_only_through_shared_attributes(people):
    plans, f0, skin = people
    width = np.array([p.face.face_width for p in plans])
    rate = np.array([p.voice.speaking_rate for p in plans])
    eyes = np.array([p.face.eye_spacing for p in plans])
    # through gender: wider faces, lower voices; through group: skin tone and speaking rate
    assert np.corrcoef(width, f0)[0, 1] < -0.5
    rate_by_group = {g: rate[[p.shared.group == g for p in plans]].mean() for g in GROUPS}
    skin_by_group = {g: skin[[p.shared.group == g for p in plans]].mean() for g in GROUPS}
    assert rate_by_group["g1"] > rate_by_group["g0"] + 0.2 > rate_by_group["g2"] + 0.4
    assert skin_by_group["g0"] > skin_by_group["g1"] + 20 > skin_by_group["g2"] + 60
    # identity-only traits carry nothing across modalities
    assert abs(np.corrcoef(eyes, f0)[0, 1]) < 0.12
    # and given the shared attributes, nothing at all is left (conditional independence)
    assert abs(np.corrcoef(residual(width, plans), residual(f0, plans))[0, 1]) < 0.15
    assert abs(np.corrcoef(residual(skin, plans), residual(rate, plans))[0, 1]) < 0.15


def test_corpus_wavs_carry_each_identitys_pitch(tmp_path_factory):
    corpus = cached_corpus(tmp_path_factory.getbasetemp())
    truth = {p["identity"]: p for p in load_ground_truth(corpus)["identities"]}
    ratios, by_gender = [], {"m": [], "f": []}
    for wav in sorted(Path(corpus).glob("voxceleb1/wav/*/*/*.wav")):
        person = truth[wav.parent.parent.name]
        f0 = estimate_f0(sf.read(str(wav))[0])
        ratios.append(f0 / person["voice"]["f0_hz"])
        by_gender[person["gender"]].append(f0)
    # noise, music and reverb are on, so allow a few misses, but the bulk must match
    assert np.mean(np.abs(np.array(ratios) - 1) < 0.12) >= 0.75
    assert np.mean(by_gender["f"]) > np.mean(by_gender["m"]) + 40


def test_the_mouth_opens_with_the_speech_energy():
    plans = plan_corpus(
        CorpusSpec(identities=3, videos_per_identity=1, clips_per_video=1, min_seconds=3, max_seconds=3)
    )
    person = plans[0]
    video = person.videos[0]
    r = ClipRenderer(0, person, video, video.clips[0])
    frames = np.stack([r.frame(i) for i in range(video.clips[0].num_frames)]).astype(int)
    # the mouth interior is drawn near (70, 20, 25); count such pixels per frame
    dark_red = (np.abs(frames - [70, 20, 25]).sum(-1) < 90) & (frames[..., 0] > frames[..., 1] + 25)
    opening = dark_red.reshape(len(frames), -1).sum(1)
    speech = r.clean_speech.reshape(len(frames), -1)
    energy = np.sqrt(np.mean(speech**2, axis=1))
    assert opening.max() > 0 and np.corrcoef(opening, energy)[0, 1] > 0.4


def test_voices_have_syllable_rhythm_at_the_speaking_rate():
    """Syllable nuclei (peaks of the low-band energy envelope) come at the speaking-rate trait."""
    from scipy.signal import butter, find_peaks, sosfiltfilt

    lowpass = butter(4, 1000, fs=SR, output="sos")
    plans = plan_corpus(CorpusSpec(identities=30, videos_per_identity=1, clips_per_video=1))
    measured, trait = [], []
    for p in plans:
        x = synthesise(p.voice, 4 * SR, 25, rng_for(0, "rhythm", p.uid)).waveform
        env = np.sqrt(np.mean(sosfiltfilt(lowpass, x).reshape(-1, 160) ** 2, axis=1))  # 100 Hz
        env = np.convolve(env, np.ones(3) / 3, mode="same")
        peaks, _ = find_peaks(env, height=0.25 * env.max(), distance=8, prominence=0.15 * env.max())
        speaking = np.mean(env > 0.1 * env.max()) * 4.0  # seconds not in pauses
        measured.append(len(peaks) / speaking)
        trait.append(p.voice.speaking_rate)
    measured, trait = np.array(measured), np.array(trait)
    assert 2.5 <= np.median(measured) <= 7.0  # real speech: roughly 3-7 syllables per second
    assert np.corrcoef(measured, trait)[0, 1] > 0.4


def test_interference_adds_a_stranger_to_the_frame_and_the_audio_and_nothing_else():
    """--interference P: a second person with *random* attributes (wrong cues for the oracle's
    attributes) talks underneath at 0-8 dB SIR and shows in the background; P = 0 changes nothing."""
    from pipeline.synth.nuisance import mix_at_sir

    plans = plan_corpus(
        CorpusSpec(identities=3, videos_per_identity=1, clips_per_video=1, min_seconds=2, max_seconds=2)
    )
    person = plans[0]
    video = person.videos[0]
    plain, same = (
        ClipRenderer(0, person, video, video.clips[0]),
        ClipRenderer(0, person, video, video.clips[0], interference=0.0),
    )
    mixed = ClipRenderer(0, person, video, video.clips[0], interference=1.0)
    assert plain.interference is None and np.array_equal(plain.audio, same.audio)
    inter = mixed.interference
    assert inter.voice_sir_db is not None and 0 <= inter.voice_sir_db <= 8 and inter.face_box is not None
    x, y, size = inter.face_box
    a, b = plain.frame(0).astype(int), mixed.frame(0).astype(int)
    outside = np.ones(a.shape[:2], dtype=bool)
    outside[y : y + size, x : x + size] = False
    assert np.array_equal(a[outside], b[outside])  # only the stranger's box changes
    assert np.abs(a[~outside] - b[~outside]).mean() > 5  # and it does change there
    assert not np.array_equal(plain.audio, mixed.audio)
    s, o = np.random.default_rng(0).normal(0, 1, (2, 16000)).astype(np.float32)
    m = mix_at_sir(s, 3 * o, 6.0) - s
    assert 10 * np.log10(np.mean(s.astype(float) ** 2) / np.mean(m.astype(float) ** 2)) == pytest.approx(6.0, abs=1e-3)
