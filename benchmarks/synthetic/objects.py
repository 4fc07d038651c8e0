"""Object instances of the vocabulary: sample an outline and an appearance, then paint them.

An instance draws its shape, aspect, rotation, colours and texture frequency around its class's values
(`vocabulary.ObjectClass`), so classes overlap a little in every single cue and are told apart by the
combination, as real categories are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.synthetic.shapes import clip_to_rect, mask_bbox, place_polygon, polygon_area, unit_shape
from benchmarks.synthetic.textures import hsv_to_rgb, local_coords, texture_field
from benchmarks.synthetic.vocabulary import VOCABULARY, ObjectClass


@dataclass(frozen=True)
class Appearance:
    """Colours and texture of one painted region."""

    color1: np.ndarray  # (3,) RGB 0..255, where the texture weight is 0
    color2: np.ndarray  # (3,) RGB 0..255, where the texture weight is 1
    texture: str
    freq: float
    tex_angle: float  # radians, relative to the region's own axes
    noise: float = 6.0  # std of per-pixel Gaussian noise (grey levels)


@dataclass(frozen=True)
class ObjectInstance:
    """One placed object: its class (index into VOCABULARY), outline clipped to the image, appearance."""

    class_id: int
    polygon: np.ndarray  # (K, 2) x, y in pixels, clipped to the image
    center: tuple[float, float]
    radius: float
    angle: float
    appearance: Appearance
    truncated: bool  # the outline was cut by the image border


def sample_appearance(cls: ObjectClass, rng: np.random.Generator) -> Appearance:
    """Jitter a class's colours (hue +-0.03, saturation/value +-0.12) and its texture frequency."""
    dh, ds, dv = rng.normal(0.0, [0.015, 0.06, 0.06])
    c1 = hsv_to_rgb(cls.hue + dh, cls.sat + ds, cls.val + dv)
    dh2, ds2, dv2 = rng.normal(0.0, [0.015, 0.06, 0.06])
    c2 = hsv_to_rgb(cls.hue2 + dh2, cls.sat2 + ds2, cls.val2 + dv2)
    freq = cls.freq * float(rng.uniform(0.8, 1.25))
    tex_angle = cls.tex_angle + float(rng.normal(0.0, 0.15))
    return Appearance(c1, c2, cls.texture, freq, tex_angle)


def sample_instance(
    class_id: int,
    rng: np.random.Generator,
    center: tuple[float, float],
    radius: float,
    width: int,
    height: int,
    aspect_scale: float = 1.0,
) -> ObjectInstance | None:
    """Outline + appearance of a `class_id` object of about `radius` pixels at `center`.

    Returns None when fewer than 16 square pixels of the outline remain inside the image.
    """
    cls = VOCABULARY[class_id]
    aspect = cls.aspect * aspect_scale * float(np.exp(rng.normal(0.0, 0.15)))
    angle = float(rng.normal(0.0, 0.12)) if cls.upright else float(rng.uniform(0.0, 2 * np.pi))
    full = place_polygon(unit_shape(cls.shape, cls.shape_param), center, radius, aspect, angle, rng)
    clipped = clip_to_rect(full, width, height)
    if len(clipped) < 3 or polygon_area(clipped) < 16.0:
        return None
    truncated = polygon_area(clipped) < 0.98 * polygon_area(full)
    return ObjectInstance(
        class_id, clipped, center, radius, angle, sample_appearance(cls, rng), bool(truncated)
    )


def paint(
    canvas: np.ndarray,
    mask: np.ndarray,
    appearance: Appearance,
    center: tuple[float, float],
    radius: float,
    angle: float,
    rng: np.random.Generator,
) -> None:
    """Paint `appearance` into `canvas` (H, W, 3) float32 where `mask` (H, W) is True, in place.

    The texture lives in the region's own coordinates (it turns and scales with the object); a soft
    shading ramp and per-pixel noise keep flat regions from being trivially thresholdable.
    """
    box = mask_bbox(mask)
    if box is None:
        return
    x0, y0, x1, y1 = box
    h, w = y1 - y0 + 1, x1 - x0 + 1
    u, v = local_coords(h, w, (x0, y0), center, max(radius, 1.0), angle)  # (h, w) each
    t = texture_field(appearance.texture, u, v, appearance.freq, appearance.tex_angle, rng)
    rgb = appearance.color1 + (appearance.color2 - appearance.color1) * t[..., None]  # (h, w, 3)
    shade = 1.0 + 0.12 * np.clip(v, -1.5, 1.5)[..., None]
    rgb = rgb * shade + rng.normal(0.0, appearance.noise, size=(h, w, 1)).astype(np.float32)
    region = canvas[y0 : y1 + 1, x0 : x1 + 1]
    m = mask[y0 : y1 + 1, x0 : x1 + 1]
    region[m] = rgb[m]
