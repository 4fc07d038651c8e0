"""Texture fields and colour helpers, computed on coordinate grids (vectorised numpy, no per-pixel loops).

A texture maps object-local coordinates `(u, v)` (rotated with the object, about -1..1 across it) to a
blend weight `t` in [0, 1]; the painter mixes an object's two colours with `t`. Every random draw takes
the caller's `numpy.random.Generator`, so an image depends only on its own seed.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image

TEXTURE_KINDS = ("plain", "stripes", "checker", "dots", "rings", "blobs", "gradient", "speckle")


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] (hue wraps) -> RGB float32 in [0, 255]."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return np.array([r, g, b], dtype=np.float32) * 255.0


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid (one value per `cell` pixels) upsampled bilinearly."""
    gh = max(2, int(np.ceil(height / cell)) + 1)
    gw = max(2, int(np.ceil(width / cell)) + 1)
    coarse = rng.random((gh, gw), dtype=np.float32)
    up = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(up, dtype=np.float32)


def texture_field(
    kind: str,
    u: np.ndarray,
    v: np.ndarray,
    freq: float,
    angle: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Blend weight `t` (same shape as `u`) of a texture `kind` with spatial frequency `freq`.

    `freq` counts periods across the object (u, v span about 2); `angle` orients stripes and gradients.
    """
    if kind == "plain":
        return np.zeros_like(u)
    if kind == "stripes":
        phase = u * np.cos(angle) + v * np.sin(angle)
        return 0.5 + 0.5 * np.sin(np.pi * freq * phase)
    if kind == "checker":
        cu = np.floor((u + 4.0) * freq * 0.5)
        cv = np.floor((v + 4.0) * freq * 0.5)
        return ((cu + cv) % 2).astype(np.float32)
    if kind == "dots":
        fu = (u * freq * 0.5) % 1.0 - 0.5
        fv = (v * freq * 0.5) % 1.0 - 0.5
        return (fu * fu + fv * fv < 0.09).astype(np.float32)
    if kind == "rings":
        return 0.5 + 0.5 * np.cos(np.pi * freq * np.sqrt(u * u + v * v))
    if kind == "blobs":
        h, w = u.shape
        cell = max(2.0, max(h, w) / max(freq, 1.0))
        return (smooth_noise(rng, h, w, cell) > 0.5).astype(np.float32)
    if kind == "gradient":
        return np.clip(0.5 + 0.5 * (u * np.cos(angle) + v * np.sin(angle)), 0.0, 1.0)
    if kind == "speckle":
        return (rng.random(u.shape, dtype=np.float32) < 0.35).astype(np.float32)
    raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")


def local_coords(
    height: int,
    width: int,
    origin: tuple[float, float],
    center: tuple[float, float],
    radius: float,
    angle: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Object-local (u, v) on the pixel grid of a crop whose top-left is `origin` (x, y) in the image.

    The object's `center` maps to (0, 0), `radius` pixels to 1, and the axes turn with the object's `angle`.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx = (xs + origin[0] + 0.5 - center[0]) / radius
    dy = (ys + origin[1] + 0.5 - center[1]) / radius
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy
