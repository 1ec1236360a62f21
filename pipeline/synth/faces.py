"""Procedural face renderer (numpy + PIL): head, ears, hair, eyes, brows, nose, mouth, beard.

Faces are drawn at twice the output size and downsampled with a box filter, which antialiases
every edge. One clip renders its face a few times (one RGBA layer per mouth-opening level, with
the clip's head pose baked in); per frame the video code only picks the layer that matches the
audio's syllable energy, moves it slightly and composites it (see clip.py). That keeps
rendering well under a millisecond per frame while the mouth still moves with the speech.

Geometry is in units of the head half-height; (0, 0) is the head centre, y grows downwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .attributes import FaceTraits

SUPERSAMPLE = 2


@dataclass(frozen=True)
class Pose:
    """Per-clip head pose in degrees; yaw/pitch shift the inner features, roll rotates the layer."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


def _shade(rgb, factor: float, alpha: int = 255) -> tuple[int, int, int, int]:
    r, g, b = (int(np.clip(c * factor, 0, 255)) for c in rgb[:3])
    return (r, g, b, alpha)


def _mix(a, b, t: float, alpha: int = 255) -> tuple[int, int, int, int]:
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a[:3], b[:3])) + (alpha,)


class FaceCanvas:
    """Maps face units to supersampled pixels for one output size."""

    def __init__(self, size: int, face_scale: float = 0.36, centre_y: float = 0.54):
        self.px = size * SUPERSAMPLE
        self.unit = face_scale * self.px  # pixels per head half-height
        self.cx = self.px / 2
        self.cy = centre_y * self.px

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return (self.cx + x * self.unit, self.cy + y * self.unit)

    def box(self, x: float, y: float, rx: float, ry: float) -> tuple[float, float, float, float]:
        return (
            self.cx + (x - rx) * self.unit,
            self.cy + (y - ry) * self.unit,
            self.cx + (x + rx) * self.unit,
            self.cy + (y + ry) * self.unit,
        )

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.unit)))


def head_outline(face: FaceTraits, n: int = 72) -> np.ndarray:
    """Head contour in face units: elliptic crown, jaw between round (jaw=0) and square (jaw=1)."""
    w, h = face.face_width, face.face_length
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    exponent = np.where(s > 0, 2.0 + 2.2 * face.jaw, 2.0)  # lower half (y > 0) is squarer
    x = w * np.sign(c) * np.abs(c) ** (2 / exponent)
    y = h * np.sign(s) * np.abs(s) ** (2 / exponent)
    chin_taper = np.where(s > 0.6, 1 - 0.35 * (1 - face.jaw) * (s - 0.6) / 0.4, 1.0)
    return np.stack([x * chin_taper, y], axis=1)


def render_face_layers(
    face: FaceTraits,
    pose: Pose,
    size: int,
    mouth_levels: int,
    clothing_rgb: tuple[int, int, int],
    sunglasses: bool = False,
) -> list[Image.Image]:
    """RGBA face layers (transparent background), one per mouth opening level in [0, 1]."""
    cv = FaceCanvas(size)
    base = Image.new("RGBA", (cv.px, cv.px), (0, 0, 0, 0))
    d = ImageDraw.Draw(base)
    skin = face.skin_rgb
    hair = face.hair_rgb
    yaw = np.radians(pose.yaw)
    pitch = np.radians(pose.pitch)
    fx = 0.55 * np.sin(yaw) * face.face_width  # horizontal shift of inner features
    fy = 0.45 * np.sin(pitch)

    # shoulders, neck
    d.ellipse(cv.box(0, 1.95, 1.55, 0.75), fill=clothing_rgb + (255,))
    d.rectangle(
        (*cv.xy(-0.33 * face.face_width / 0.7, 0.6), *cv.xy(0.33 * face.face_width / 0.7, 1.5)), fill=_shade(skin, 0.82)
    )
    # long hair behind the head
    if face.hair_style == "long":
        d.rounded_rectangle(cv.box(0, 0.35, face.face_width + 0.2, 1.2), radius=cv.width(0.5), fill=_shade(hair, 0.85))
    # ears (the far ear shows more when the head turns)
    for side in (-1, 1):
        ex = side * (face.face_width - 0.02) - 0.25 * np.sin(yaw) * face.face_width
        d.ellipse(cv.box(ex, -0.02 + fy * 0.3, 0.11 * face.ear_size, 0.2 * face.ear_size), fill=_shade(skin, 0.9))
        d.ellipse(cv.box(ex, -0.02 + fy * 0.3, 0.05 * face.ear_size, 0.12 * face.ear_size), fill=_shade(skin, 0.72))
    # head: darker rim + lighter inner area gives a cheap 3-D look
    outline = head_outline(face)
    d.polygon([cv.xy(x, y) for x, y in outline], fill=_shade(skin, 0.88))
    inner = outline * np.array([0.9, 0.93]) + np.array([fx * 0.5, -0.02])
    d.polygon([cv.xy(x, y) for x, y in inner], fill=_shade(skin, 1.0))
    # beard: hair-coloured jaw region blended by strength
    if face.beard > 0:
        jaw = outline[(outline[:, 1] > 0.25)]
        jaw = jaw[np.argsort(np.arctan2(jaw[:, 1], jaw[:, 0]))]
        poly = [cv.xy(x, y) for x, y in jaw] + [cv.xy(fx + 0.25, 0.45 + fy), cv.xy(fx - 0.25, 0.45 + fy)]
        d.polygon(poly, fill=_mix(skin, hair, 0.35 + 0.5 * face.beard))
    # cheeks
    for side in (-1, 1):
        d.ellipse(
            cv.box(fx + side * 0.38 * face.face_width / 0.7, 0.22 + fy, 0.14, 0.09),
            fill=_mix(skin, (200, 90, 90), 0.12),
        )
    # hair on top: crown arc above, arched hairline with sideburns below, fringe at the parting
    part = face.hair_part * 0.2
    fw = face.face_width
    if face.hair_style != "bald":
        theta = np.linspace(np.pi, 2 * np.pi, 25)
        crown = [(np.cos(t) * (fw + 0.06), -0.4 + np.sin(t) * 0.74) for t in theta]
        xs = np.linspace(fw + 0.03, -fw - 0.03, 25)
        knots_x = [fw + 0.03, fw * 0.85, fw * 0.45, part, -fw * 0.45, -fw * 0.85, -fw - 0.03]
        knots_y = [-0.05, -0.36, -0.52, -0.47 + fy * 0.2, -0.52, -0.36, -0.05]
        order = np.argsort(knots_x)
        hairline = [(x, float(np.interp(x, np.array(knots_x)[order], np.array(knots_y)[order]))) for x in xs]
        d.polygon([cv.xy(x, y) for x, y in crown + hairline], fill=_shade(hair, 1.0))
        for k in range(-3, 4):  # a few strands give the cap texture
            x0 = part + 0.12 * k
            d.line([cv.xy(x0 * 0.6, -1.05), cv.xy(x0, -0.55)], fill=_shade(hair, 0.8), width=cv.width(0.012))
        if face.hair_style == "long":
            for side in (-1, 1):
                d.polygon(
                    [
                        cv.xy(side * (fw + 0.06), -0.45),
                        cv.xy(side * (fw - 0.02), -0.1),
                        cv.xy(side * (fw + 0.02), 0.55),
                        cv.xy(side * (fw + 0.1), 1.0),
                        cv.xy(side * (fw + 0.26), 0.95),
                        cv.xy(side * (fw + 0.2), 0.2),
                    ],
                    fill=_shade(hair, 0.95),
                )
    else:
        for side in (-1, 1):
            d.chord(cv.box(side * fw * 0.95, -0.1, 0.12, 0.3), 90 + side * 90, 270 + side * 90, fill=_shade(hair, 1.0))
    # eyes
    ey = -0.12 + fy
    spacing = 0.3 * face.eye_spacing * face.face_width / 0.7
    er = 0.1 * face.eye_size
    for side in (-1, 1):
        ex = fx + side * spacing * (1 + 0.25 * side * np.sin(yaw))
        d.ellipse(cv.box(ex, ey, er * 1.05, er * 0.55), fill=(245, 242, 236, 255))
        d.ellipse(cv.box(ex + 0.3 * fx, ey, er * 0.45, er * 0.45), fill=face.iris_rgb + (255,))
        d.ellipse(cv.box(ex + 0.3 * fx, ey, er * 0.2, er * 0.2), fill=(12, 10, 10, 255))
        d.ellipse(cv.box(ex + 0.3 * fx + er * 0.12, ey - er * 0.14, er * 0.07, er * 0.07), fill=(255, 255, 255, 230))
        d.arc(cv.box(ex, ey, er * 1.08, er * 0.6), 190, 350, fill=_shade(skin, 0.45), width=cv.width(0.018))
        # brows
        bw = 0.028 * face.brow_thickness
        brow = [
            cv.xy(ex - side * er * 1.2, ey - er * 1.0),
            cv.xy(ex, ey - er * 1.45),
            cv.xy(ex + side * er * 1.25, ey - er * 1.15),
        ]
        d.line(brow, fill=_shade(hair, 0.6), width=cv.width(bw), joint="curve")
    if sunglasses:
        for side in (-1, 1):
            ex = fx + side * spacing
            d.rounded_rectangle(cv.box(ex, ey, er * 1.5, er * 1.0), radius=cv.width(er * 0.5), fill=(18, 18, 22, 250))
        d.line(
            [cv.xy(fx - spacing + er * 1.4, ey - er * 0.3), cv.xy(fx + spacing - er * 1.4, ey - er * 0.3)],
            fill=(18, 18, 22, 255),
            width=cv.width(0.02),
        )
    # nose
    nl = 0.28 * face.nose_length
    nw = 0.075 * face.nose_width
    d.line(
        [cv.xy(fx * 1.2 - 0.02, ey + 0.05), cv.xy(fx * 1.35 - nw * 0.3, ey + nl)],
        fill=_shade(skin, 0.78),
        width=cv.width(0.016),
    )
    d.ellipse(cv.box(fx * 1.3, ey + nl, nw, nw * 0.55), fill=_shade(skin, 0.9))
    for side in (-1, 1):
        d.ellipse(cv.box(fx * 1.3 + side * nw * 0.6, ey + nl + nw * 0.15, nw * 0.28, nw * 0.18), fill=_shade(skin, 0.5))
    # wrinkles: forehead lines and nasolabial folds
    if face.wrinkles > 0.15:
        shade = _mix(skin, (60, 40, 30), 0.25 * face.wrinkles)
        for k in range(1 + int(face.wrinkles * 3)):
            y = -0.48 + 0.07 * k + fy
            if face.hair_style == "bald" or y > -0.42:
                d.arc(cv.box(fx, y + 0.25, 0.3, 0.25), 240, 300, fill=shade, width=cv.width(0.012))
        for side in (-1, 1):
            d.arc(
                cv.box(fx + side * 0.2, ey + nl + 0.12, 0.1, 0.18),
                90 - side * 60,
                90 + side * 60 if side > 0 else 150,
                fill=shade,
                width=cv.width(0.012),
            )

    mouth_y = ey + nl + 0.2 * face.face_length
    mw = 0.2 * face.mouth_width * face.face_width / 0.7
    lip = _mix(skin, (170, 70, 80), 0.45)
    layers = []
    for level in np.linspace(0, 1, mouth_levels):
        img = base.copy()
        md = ImageDraw.Draw(img)
        open_h = 0.11 * level
        lip_h = 0.035 * face.lip_fullness
        mx = fx * 1.1
        md.ellipse(cv.box(mx, mouth_y + open_h / 2, mw, lip_h + open_h / 2 + 0.01), fill=lip)
        if open_h > 0.01:
            md.ellipse(cv.box(mx, mouth_y + open_h / 2, mw * 0.8, open_h / 2), fill=(70, 20, 25, 255))
            md.chord(cv.box(mx, mouth_y, mw * 0.7, open_h * 0.35 + 0.005), 0, 180, fill=(235, 230, 220, 255))
        else:
            md.line(
                [cv.xy(mx - mw * 0.9, mouth_y), cv.xy(mx + mw * 0.9, mouth_y)],
                fill=_shade(lip, 0.6),
                width=cv.width(0.012),
            )
        layers.append(img.resize((size, size), Image.Resampling.BOX))
    if pose.roll:
        layers = [
            layer.rotate(pose.roll, resample=Image.Resampling.BILINEAR, center=(size / 2, size * 0.54))
            for layer in layers
        ]
    return layers


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A soft studio/street-like background: vertical colour gradient plus blurred blobs."""
    top, bottom = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    img = (1 - ramp) * top + ramp * bottom
    img = np.broadcast_to(img, (size, size, 3)).copy()
    small = Image.new("RGB", (16, 16))
    sd = ImageDraw.Draw(small)
    for _ in range(4):
        x, y = rng.uniform(-4, 16, 2)
        w, h = rng.uniform(3, 10, 2)
        sd.rectangle((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
    blobs = np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    mask = np.asarray(small.convert("L").resize((size, size), Image.Resampling.BICUBIC)) > 0
    img[mask] = 0.6 * img[mask] + 0.4 * blobs[mask]
    return img.astype(np.float32)
