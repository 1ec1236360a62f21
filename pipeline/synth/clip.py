"""Render one clip: the utterance audio, the face frames in sync with it, and the face-box track.

Everything is a pure function of (seed, identity plan, video plan, clip plan), so any worker can
render any clip and get the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .attributes import draw_face_traits, draw_voice_traits
from .faces import Pose, background, render_face_layers
from .nuisance import (
    FaceNuisance,
    VoiceNuisance,
    apply_voice_nuisance,
    draw_face_nuisance,
    draw_interference,
    draw_voice_nuisance,
    light_map,
    mix_at_sir,
)
from .plan import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, ClipPlan, IdentityPlan, VideoPlan, clip_rng
from .seeding import rng_for
from .voices import synthesise

FRAME_SIZE = 224
MOUTH_LEVELS = 6
BOB_PAD = 4  # max per-frame head shift in pixels
#: The virtual source video that VoxCeleb txt boxes refer to (VoxCeleb1 boxes are pixels of a
#: 360-high frame; VoxCeleb2 boxes are fractions of width/height).
SOURCE_W, SOURCE_H = 640, 360


@dataclass(frozen=True)
class VideoLook:
    """Per-video appearance shared by all clips of one YouTube video."""

    background: np.ndarray  # float32 [S, S, 3]
    clothing_rgb: tuple[int, int, int]
    box_centre: tuple[float, float]  # face centre in the source frame (pixels)
    box_size: float  # face box side in source pixels


def video_look(seed: int, identity: IdentityPlan, video: VideoPlan) -> VideoLook:
    rng = rng_for(seed, "video", identity.dataset, identity.identity, video.ytid)
    return VideoLook(
        background=background(rng, FRAME_SIZE),
        clothing_rgb=tuple(int(v) for v in rng.uniform(10, 230, 3)),
        box_centre=(float(rng.uniform(200, 440)), float(rng.uniform(120, 210))),
        box_size=float(rng.uniform(110, 190)),
    )


def _fixed_point(lit: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lit * alpha, 1 - alpha) as uint16 in 8.8 fixed point, 3 channels each."""
    premultiplied = np.rint(lit * alpha * 256).astype(np.uint16)
    keep = np.rint(np.repeat(1.0 - alpha, 3, axis=2) * 256).astype(np.uint16)
    return premultiplied, keep


class ClipRenderer:
    """Lazily renders the audio and any requested frames of one clip."""

    def __init__(
        self,
        seed: int,
        identity: IdentityPlan,
        video: VideoPlan,
        clip: ClipPlan,
        look: VideoLook | None = None,
        interference: float = 0.0,
    ):
        self.seed, self.identity, self.video, self.clip = seed, identity, video, clip
        self.look = look or video_look(seed, identity, video)
        self.face_nuisance: FaceNuisance = draw_face_nuisance(clip_rng(seed, identity, video, clip, "face-nuisance"))
        self.voice_nuisance: VoiceNuisance = draw_voice_nuisance(
            clip_rng(seed, identity, video, clip, "voice-nuisance")
        )
        # Optional second person (nuisance.py, --interference); its own random stream, so clips
        # rendered without it are byte-identical to a corpus made before the option existed.
        self.interference = draw_interference(
            clip_rng(seed, identity, video, clip, "interference"),
            interference,
            "/".join((identity.uid, video.ytid, clip.clip)),
            FRAME_SIZE,
        )
        self._parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        bob = np.random.default_rng(self.face_nuisance.bob_seed)
        t = np.arange(clip.num_frames) / FPS
        self._bob = [
            sum(
                a * np.sin(2 * np.pi * f * t + p)
                for a, f, p in zip(bob.uniform(0.5, amp, 3), bob.uniform(0.1, 0.9, 3), bob.uniform(0, 6.3, 3))
            )
            for amp in (1.5, 1.2)  # dx, dy in pixels (<= BOB_PAD)
        ]

    @cached_property
    def _utterance(self):
        rng = clip_rng(self.seed, self.identity, self.video, self.clip, "speech")
        return synthesise(self.identity.voice, self.clip.num_frames * SAMPLES_PER_FRAME, FPS, rng)

    @cached_property
    def audio(self) -> np.ndarray:
        """float32 [num_frames * 640] at 16 kHz with voice nuisance (and interference) applied."""
        rng = clip_rng(self.seed, self.identity, self.video, self.clip, "voice-nuisance-noise")
        speech = self._utterance.waveform
        if self.interference is not None and self.interference.voice_sir_db is not None:
            stranger = draw_voice_traits(self.seed, self.interference.stranger_uid, self.interference.shared)
            other = synthesise(
                stranger,
                len(speech),
                FPS,
                clip_rng(self.seed, self.identity, self.video, self.clip, "interference-speech"),
            )
            speech = mix_at_sir(speech, other.waveform, self.interference.voice_sir_db)
        return apply_voice_nuisance(speech, self.voice_nuisance, rng, SAMPLE_RATE)

    @property
    def clean_speech(self) -> np.ndarray:
        """float32 speech before noise, music, reverb and level (what drives the mouth)."""
        return self._utterance.waveform

    @property
    def mouth(self) -> np.ndarray:
        return self._utterance.mouth

    @cached_property
    def _layers(self) -> list[Image.Image]:
        n = self.face_nuisance
        return render_face_layers(
            self.identity.face,
            n.pose,
            FRAME_SIZE,
            MOUTH_LEVELS,
            self.look.clothing_rgb,
            sunglasses=n.occlusion == "sunglasses",
        )

    def _overlay_image(self) -> Image.Image | None:
        """Static occluder in frame coordinates (RGBA), or None."""
        n = self.face_nuisance
        if n.occlusion not in ("microphone", "hand", "caption"):
            return None
        s = FRAME_SIZE
        img = Image.new("RGBA", (s * 2, s * 2), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        px, py = n.occlusion_pos[0] * 2 * s, n.occlusion_pos[1] * 2 * s
        if n.occlusion == "microphone":
            d.rounded_rectangle((px - 14, py, px + 14, 2 * s + 10), radius=8, fill=(40, 40, 44, 255))
            d.ellipse((px - 34, py - 50, px + 34, py + 18), fill=(70, 70, 76, 255))
            for k in range(-30, 31, 10):
                d.line((px + k, py - 45, px + k, py + 12), fill=(50, 50, 55, 255), width=2)
        elif n.occlusion == "hand":
            skin = self.identity.face.skin_rgb
            d.ellipse((px - 70, py - 60, px + 70, py + 110), fill=skin + (255,))
            for k in range(4):
                d.rounded_rectangle(
                    (px - 66 + 34 * k, py - 130, px - 42 + 34 * k, py - 20), radius=11, fill=skin + (255,)
                )
        else:  # caption bar, as in TV interviews
            rng = clip_rng(self.seed, self.identity, self.video, self.clip, "caption")
            colour = tuple(int(v) for v in rng.uniform(0, 200, 3)) + (235,)
            d.rectangle((0, int(1.62 * s), 2 * s, int(1.86 * s)), fill=colour)
            x = 16
            while x < 2 * s - 40:
                w = int(rng.integers(10, 40))
                d.rectangle((x, int(1.68 * s), x + w, int(1.8 * s)), fill=(245, 245, 245, 255))
                x += w + int(rng.integers(6, 14))
        return img.resize((s, s), Image.Resampling.BOX)

    def _blur(self, img: Image.Image) -> np.ndarray:
        radius = self.face_nuisance.blur_radius
        if radius > 0:
            img = img.filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(img, dtype=np.float32)

    @cached_property
    def _light(self) -> np.ndarray:
        return light_map(self.face_nuisance, FRAME_SIZE)

    @cached_property
    def _padded_light(self) -> np.ndarray:
        p = BOB_PAD
        return np.pad(self._light, ((p, p), (p, p), (0, 0)), mode="edge")

    def _background_image(self) -> Image.Image:
        """The video's background, with the interfering stranger's face pasted in when drawn."""
        img = Image.fromarray(self.look.background.astype(np.uint8))
        if self.interference is not None and self.interference.face_box is not None:
            x, y, size = self.interference.face_box
            face = draw_face_traits(self.seed, self.interference.stranger_uid, self.interference.shared)
            clothing = tuple(int(v) for v in np.clip(np.asarray(face.skin_rgb) * 0.5 + 40, 0, 255))
            layer = render_face_layers(face, Pose(0.0, 0.0, 0.0), FRAME_SIZE, 1, clothing)[0]
            img.paste(
                layer.resize((size, size), Image.Resampling.BOX),
                (x, y),
                layer.resize((size, size), Image.Resampling.BOX),
            )
        return img

    @cached_property
    def _background(self) -> np.ndarray:
        """Lit (and blurred) background as uint16 [S, S, 3] in 0..255."""
        bg = self._blur(self._background_image()) * self._light
        return np.clip(np.rint(bg), 0, 255).astype(np.uint16)

    @cached_property
    def _overlay(self) -> tuple[np.ndarray, np.ndarray] | None:
        image = self._overlay_image()
        if image is None:
            return None
        ov = self._blur(image)
        alpha = ov[..., 3:] / 255.0
        lit = np.clip(ov[..., :3] * self._light, 0, 255)
        return _fixed_point(lit, alpha)

    def _face_parts(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """(face * alpha, 1 - alpha) of one mouth level, lit, blurred, padded, 8.8 fixed point.

        Frame = background * (1 - alpha) + lit face * alpha, then the occluder on top. Light and
        blur are applied once per clip and level instead of once per frame; the head moves by whole
        pixels (sliced out of a padded layer), so the smooth light map is off by at most BOB_PAD
        pixels on the face and blur commutes with the shift. Both parts are convex weights, so
        the 8.8 fixed-point sum never exceeds 255 * 256 and uint16 cannot overflow.
        """
        if level not in self._parts:
            rgba = self._blur(self._layers[level])
            alpha = rgba[..., 3:] / 255.0
            p = BOB_PAD
            light = self._padded_light
            lit = np.clip(np.pad(rgba[..., :3], ((p, p), (p, p), (0, 0))) * light, 0, 255)
            self._parts[level] = _fixed_point(lit, np.pad(alpha, ((p, p), (p, p), (0, 0))))
        return self._parts[level]

    def frame(self, i: int) -> np.ndarray:
        """uint8 [224, 224, 3] RGB video frame i (0-based within the clip)."""
        level = int(round(float(self.mouth[min(i, len(self.mouth) - 1)]) * (MOUTH_LEVELS - 1)))
        face, keep = self._face_parts(level)
        dx = int(np.clip(round(float(self._bob[0][i])), -BOB_PAD, BOB_PAD))
        dy = int(np.clip(round(float(self._bob[1][i])), -BOB_PAD, BOB_PAD))
        p, s = BOB_PAD, FRAME_SIZE
        window = (slice(p - dy, p - dy + s), slice(p - dx, p - dx + s))
        img = self._background * keep[window]
        img += face[window]
        img >>= 8
        if self._overlay is not None:
            img *= self._overlay[1]
            img += self._overlay[0]
            img >>= 8
        return img.astype(np.uint8)

    def box(self, i: int) -> tuple[float, float, float, float]:
        """Face box (x, y, w, h) in pixels of the 640x360 source frame for frame i."""
        cx, cy = self.look.box_centre
        size = self.look.box_size
        scale = size / FRAME_SIZE
        x = cx + self._bob[0][i] * scale - size / 2
        y = cy + self._bob[1][i] * scale - size / 2
        x = float(np.clip(x, 0, SOURCE_W - size))
        y = float(np.clip(y, 0, SOURCE_H - size))
        return (x, y, size, size)
