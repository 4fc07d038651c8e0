"""Shape families as polygons, polygon clipping and rasterisation.

Every object is one simple polygon, so the same outline gives the painted pixels, the COCO segmentation,
the Cityscapes polygon and the VOC mask. Rasterisation uses PIL's `ImageDraw.polygon`, the very routine
cityscapesscripts' `json2labelImg` uses, so label images redrawn from our polygons match pixel for pixel.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SHAPE_FAMILIES = (
    "ellipse",
    "rectangle",
    "triangle",
    "star",
    "arc",
    "cross",
    "ngon",
    "diamond",
    "trapezoid",
    "lshape",
)


def unit_shape(family: str, param: float) -> np.ndarray:
    """Outline of a shape family in unit coordinates (about -1..1), (K, 2) float64, counter-clockwise.

    `param` is family-specific: star/ngon vertex count, cross arm width, arc opening.
    """
    if family == "ellipse":
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if family == "rectangle":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if family == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(t), -np.sin(t)], axis=1)
    if family == "star":
        k = int(param)
        t = -np.pi / 2 + np.arange(2 * k) * np.pi / k
        r = np.where(np.arange(2 * k) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if family == "arc":
        t_out = np.linspace(param, 2 * np.pi - param, 16)
        outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
        inner = 0.55 * outer[::-1]
        return np.concatenate([outer, inner], axis=0)
    if family == "cross":
        w = param
        arm = [[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w]]  # top arm, then right arm
        return np.array([*arm, *(np.negative(arm).tolist())], dtype=np.float64)
    if family == "ngon":
        k = int(param)
        t = np.arange(k) * 2 * np.pi / k
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if family == "diamond":
        return np.array([[0, -1], [0.65, 0], [0, 1], [-0.65, 0]], dtype=np.float64)
    if family == "trapezoid":
        return np.array([[-0.55, -0.8], [0.55, -0.8], [1, 0.8], [-1, 0.8]], dtype=np.float64)
    if family == "lshape":
        return np.array([[-1, -1], [-0.3, -1], [-0.3, 0.3], [1, 0.3], [1, 1], [-1, 1]], dtype=np.float64)
    raise ValueError(f"unknown shape family {family!r}; expected one of {SHAPE_FAMILIES}")


def place_polygon(
    unit: np.ndarray,
    center: tuple[float, float],
    radius: float,
    aspect: float,
    angle: float,
    rng: np.random.Generator,
    jitter: float = 0.04,
) -> np.ndarray:
    """Scale a unit outline to `radius` pixels (x stretched by `aspect`), rotate, jitter vertices, move."""
    pts = unit * np.array([np.sqrt(aspect), 1.0 / np.sqrt(aspect)])
    pts = pts + rng.normal(0.0, jitter, size=pts.shape)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T * radius + np.asarray(center)


def clip_to_rect(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (K, 2) to the image rectangle [0, width] x [0, height]."""
    out = poly
    edges = ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True))
    for axis, bound, keep_below in edges:
        if len(out) == 0:
            break
        src, out_pts = out, []
        for i in range(len(src)):
            cur, prev = src[i], src[i - 1]
            cur_in = cur[axis] <= bound if keep_below else cur[axis] >= bound
            prev_in = prev[axis] <= bound if keep_below else prev[axis] >= bound
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out_pts.append(prev + t * (cur - prev))
            if cur_in:
                out_pts.append(cur)
        out = np.array(out_pts, dtype=np.float64).reshape(-1, 2)
    return out


def polygon_area(poly: np.ndarray) -> float:
    """Shoelace area of a simple polygon (K, 2)."""
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def rasterize(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boolean mask (height, width) of a polygon, drawn with PIL exactly as cityscapesscripts does."""
    img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in poly], fill=1)
    return np.asarray(img, dtype=bool)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive pixel bounds (x0, y0, x1, y1) of a mask, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])
