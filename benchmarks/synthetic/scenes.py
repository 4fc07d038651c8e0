"""Cluttered backgrounds and multi-object scenes (the shared core of the imagenet, COCO and VOC sets).

A scene is painted back to front: a gradient with smooth noise, low-contrast clutter shapes (the same
shape families and textures as real objects, with background colours), the objects, then a few small
occluders. `instance_map` records which object is visible at each pixel, so VOC masks, visibility
fractions and "difficult" flags all come from the very pixels that were painted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.synthetic.objects import Appearance, ObjectInstance, paint, sample_instance
from benchmarks.synthetic.shapes import SHAPE_FAMILIES, place_polygon, rasterize, unit_shape
from benchmarks.synthetic.textures import TEXTURE_KINDS, hsv_to_rgb, smooth_noise

_CLUTTER_PARAMS = {"star": 5, "arc": 0.8, "cross": 0.3, "ngon": 6}


@dataclass
class Scene:
    """A painted image with its objects in painting order and the visible-instance map."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    instances: list[ObjectInstance]
    instance_map: np.ndarray  # (H, W) int32: 0 background/clutter, k + 1 where instances[k] is visible
    full_areas: list[int]  # pixels of each instance's outline before occlusion

    def visible_fraction(self, k: int) -> float:
        """Share of instance k's outline still visible after later objects and occluders."""
        return float((self.instance_map == k + 1).sum()) / max(self.full_areas[k], 1)


def paint_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Low-saturation two-colour gradient plus smooth noise, (H, W, 3) float32 in 0..255."""
    ca = hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.3, 0.8))
    cb = hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.3, 0.8))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (xs * np.cos(theta) + ys * np.sin(theta)) / max(width, height)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)  # (H, W) in 0..1
    canvas = ca + (cb - ca) * ramp[..., None]
    noise = smooth_noise(rng, height, width, cell=float(rng.uniform(8, 32))) - 0.5
    return canvas + 50.0 * noise[..., None]


def add_clutter(
    canvas: np.ndarray,
    rng: np.random.Generator,
    count: int,
    scale: tuple[float, float],
    accept: Callable[[np.ndarray], bool] | None = None,
) -> list[np.ndarray]:
    """Paint `count` low-contrast random shapes whose colours follow the local background.

    A shape whose mask `accept` rejects is skipped. Returns the painted masks (painting order) so a
    caller can mark occluded object pixels.
    """
    height, width = canvas.shape[:2]
    masks = []
    for _ in range(count):
        family = SHAPE_FAMILIES[rng.integers(len(SHAPE_FAMILIES))]
        center = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
        radius = float(rng.uniform(*scale)) * min(width, height)
        angle = float(rng.uniform(0, 2 * np.pi))
        unit = unit_shape(family, _CLUTTER_PARAMS.get(family, 0.0))
        poly = place_polygon(unit, center, radius, float(np.exp(rng.normal(0, 0.4))), angle, rng)
        mask = rasterize(poly, width, height)
        if not mask.any() or (accept is not None and not accept(mask)):
            continue
        local = canvas[mask].mean(axis=0)
        c1 = np.clip(local + rng.normal(0.0, 20.0, size=3), 0, 255).astype(np.float32)
        c2 = np.clip(c1 + rng.normal(0.0, 14.0, size=3), 0, 255).astype(np.float32)
        kind = TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
        look = Appearance(c1, c2, kind, float(rng.uniform(2, 8)), float(rng.uniform(0, np.pi)), noise=5.0)
        paint(canvas, mask, look, center, radius, angle, rng)
        masks.append(mask)
    return masks


def finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Global brightness/contrast jitter and sensor noise, then clip to uint8."""
    gain = rng.uniform(0.85, 1.15)
    bias = rng.normal(0.0, 8.0)
    out = canvas * gain + bias + rng.normal(0.0, 3.0, size=canvas.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ObjectSpec:
    """What to place: a vocabulary class, a radius range (times half the short side), where."""

    class_id: int
    radius_range: tuple[float, float]
    centered: bool = False  # center in the middle third of the image (object-centric photos)


def compose_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    specs: list[ObjectSpec],
    clutter: int,
    occluders: int,
    max_overlap: float = 0.25,
) -> Scene:
    """Paint a scene with one object per spec, in order (a spec that finds no place in 10 tries is dropped).

    Radii are log-uniform in the spec's range; a new object may cover at most `max_overlap` of an
    earlier one; occluders never leave an object less than 60% visible.
    """
    canvas = paint_background(rng, width, height)
    add_clutter(canvas, rng, clutter, (0.05, 0.3))
    instance_map = np.zeros((height, width), dtype=np.int32)
    instances: list[ObjectInstance] = []
    full_areas: list[int] = []
    half = min(width, height) / 2.0
    for spec in specs:
        lo, hi = (1 / 3, 2 / 3) if spec.centered else (0.05, 0.95)
        log_r = np.log(spec.radius_range)
        for _ in range(10):
            radius = float(np.exp(rng.uniform(log_r[0], log_r[1]))) * half
            center = (float(rng.uniform(lo, hi)) * width, float(rng.uniform(lo, hi)) * height)
            inst = sample_instance(spec.class_id, rng, center, radius, width, height)
            if inst is None:
                continue
            mask = rasterize(inst.polygon, width, height)
            area = int(mask.sum())
            if area < 24:
                continue
            covered = np.bincount(instance_map[mask], minlength=len(instances) + 1)[1:]
            if any(c > max_overlap * a for c, a in zip(covered, full_areas)):
                continue
            paint(canvas, mask, inst.appearance, inst.center, inst.radius, inst.angle, rng)
            instance_map[mask] = len(instances) + 1
            instances.append(inst)
            full_areas.append(area)
            break

    def leaves_most_visible(mask: np.ndarray) -> bool:
        hidden = np.bincount(instance_map[mask], minlength=len(instances) + 1)[1:]
        visible = np.bincount(instance_map.ravel(), minlength=len(instances) + 1)[1:]
        return bool(np.all(visible - hidden >= 0.6 * np.asarray(full_areas)))

    for mask in add_clutter(canvas, rng, occluders, (0.04, 0.12), accept=leaves_most_visible):
        instance_map[mask] = 0
    return Scene(finish(canvas, rng), instances, instance_map, full_areas)


def random_scene(
    rng: np.random.Generator,
    sizes: tuple[tuple[int, int], ...],
    n_objects: tuple[int, int],
    n_classes: int,
    radii: tuple[float, float] = (0.15, 0.6),
) -> Scene:
    """A scene-centric image (COCO, VOC): a size from `sizes`, n_objects[0]..n_objects[1] objects of
    uniformly drawn classes, radii in `radii` (fractions of half the short side), 8 clutter shapes, 0-2
    occluders."""
    width, height = sizes[int(rng.integers(len(sizes)))]
    count = int(rng.integers(n_objects[0], n_objects[1] + 1))
    specs = [ObjectSpec(int(rng.integers(n_classes)), radii) for _ in range(count)]
    return compose_scene(rng, width, height, specs, clutter=8, occluders=int(rng.integers(0, 3)))
