"""Synthetic Cityscapes: street-like scenes drawn from polygons, in the real gtFine formats.

Each scene is a list of labelled integer polygons in painting order (sky, buildings, vegetation, terrain,
sidewalks, road, poles with traffic signs, then persons/cars/... from far to near). The RGB image, the
labelIds, instanceIds (id * 1000 + k for instance classes, as cityscapesscripts numbers them) and color
images are all rasterised from those polygons with PIL, which is what cityscapesscripts' `json2labelImg`
does; `labelTrainIds` is written by cityscapesscripts itself from the polygons json. Label ids, train
ids and colours come from `cityscapesscripts.helpers.labels`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.helpers.labels import name2label
from cityscapesscripts.preparation.json2labelImg import json2labelImg
from PIL import Image

from benchmarks.synthetic.files import image_rng, save_png, write_text
from benchmarks.synthetic.objects import Appearance, paint, sample_instance
from benchmarks.synthetic.profiles import SyntheticProfile
from benchmarks.synthetic.scenes import finish
from benchmarks.synthetic.shapes import rasterize
from benchmarks.synthetic.textures import hsv_to_rgb
from benchmarks.synthetic.vocabulary import CITYSCAPES_THINGS, class_index

CITIES = {"train": ("aachen", "bremen"), "val": ("frankfurt",)}
SPLITS = {"train": 0, "val": 1}

# Stuff appearance: (hue, saturation, value) of two colours, texture, periods across the region.
_STUFF = {
    "sky": ((0.58, 0.45, 0.95), (0.58, 0.15, 0.85), "gradient", 1.0),
    "building": ((0.08, 0.20, 0.60), (0.60, 0.20, 0.30), "checker", 8.0),
    "vegetation": ((0.28, 0.70, 0.45), (0.22, 0.60, 0.25), "blobs", 6.0),
    "terrain": ((0.17, 0.45, 0.55), (0.20, 0.40, 0.40), "speckle", 1.0),
    "sidewalk": ((0.90, 0.12, 0.65), (0.90, 0.10, 0.50), "checker", 14.0),
    "road": ((0.70, 0.06, 0.32), (0.70, 0.04, 0.40), "speckle", 1.0),
    "pole": ((0.00, 0.00, 0.55), (0.00, 0.00, 0.45), "gradient", 1.0),
    "traffic sign": ((0.14, 0.90, 0.90), (0.00, 0.00, 0.95), "rings", 3.0),
}


@dataclass(frozen=True)
class Region:
    """One labelled polygon of a street scene, with what to paint inside it."""

    label: str  # cityscapesscripts label name
    polygon: list[tuple[int, int]]  # integer vertices, as in the real polygons json
    appearance: Appearance
    center: tuple[float, float]
    radius: float
    angle: float


def _int_polygon(points: np.ndarray) -> list[tuple[int, int]]:
    """Round to integer pixels and drop repeated consecutive vertices."""
    out: list[tuple[int, int]] = []
    for x, y in np.rint(points).astype(int).tolist():
        if not out or out[-1] != (x, y):
            out.append((x, y))
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def _stuff(label: str, points: np.ndarray, rng: np.random.Generator) -> Region | None:
    (h1, s1, v1), (h2, s2, v2), texture, freq = _STUFF[label]
    dh, ds, dv = rng.normal(0.0, [0.02, 0.05, 0.06])
    look = Appearance(
        hsv_to_rgb(h1 + dh, s1 + ds, v1 + dv), hsv_to_rgb(h2 + dh, s2 + ds, v2 + dv), texture, freq, 0.0, 4.0
    )
    polygon = _int_polygon(points)
    if len(polygon) < 3:
        return None
    lo, hi = points.min(axis=0), points.max(axis=0)
    center = tuple(((lo + hi) / 2).tolist())
    return Region(label, polygon, look, center, float(max(hi - lo) / 2 + 1), 0.0)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def street_regions(rng: np.random.Generator, width: int, height: int) -> list[Region]:
    """The labelled polygons of one street scene, in painting order (later regions cover earlier ones)."""
    horizon = float(rng.uniform(0.38, 0.5)) * height
    vx = float(rng.uniform(0.4, 0.6)) * width
    y_left, y_right = (horizon + float(rng.uniform(0.15, 0.4)) * height for _ in range(2))
    stuff: list[tuple[str, np.ndarray]] = [("sky", _rect(0, 0, width, horizon))]
    x = 0.0
    while x < width:
        w = float(rng.uniform(0.08, 0.25)) * width
        if rng.random() > 0.15:
            stuff.append(("building", _rect(x, float(rng.uniform(0.05, 0.8)) * horizon, x + w, horizon + 2)))
        x += w
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = float(rng.uniform(0, width)), horizon - float(rng.uniform(0, 0.25)) * height
        r = float(rng.uniform(0.04, 0.12)) * width
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        rr = r * rng.uniform(0.7, 1.1, size=12)
        stuff.append(("vegetation", np.stack([cx + rr * np.cos(t), cy + 0.7 * rr * np.sin(t)], axis=1)))
    stuff.append(("sidewalk", _rect(0, horizon, width, height)))
    if rng.random() < 0.5:
        stuff.append(("terrain", np.array([[0, horizon], [vx * 0.6, horizon], [0, (horizon + y_left) / 2]])))
    road = np.array(
        [[vx - 3, horizon], [vx + 3, horizon], [width, y_right], [width, height], [0, height], [0, y_left]]
    )
    stuff.append(("road", road))
    for _ in range(int(rng.integers(1, 4))):
        stuff += _pole_with_sign(rng, width, horizon, vx, y_left, y_right)
    regions = [r for label, pts in stuff if (r := _stuff(label, pts, rng)) is not None]
    regions += _things(rng, width, height, horizon, vx, y_left, y_right)
    return regions


def _pole_with_sign(
    rng: np.random.Generator, width: int, horizon: float, vx: float, y_left: float, y_right: float
) -> list[tuple[str, np.ndarray]]:
    """A pole standing on a sidewalk (height by perspective) and a diamond traffic sign on its top."""
    left = rng.random() < 0.5
    offset = float(rng.uniform(0.02, 0.35)) * width
    px = offset if left else width - offset
    # y where the road edge passes x = px: the sidewalk lies above it
    edge = (
        y_left + (horizon - y_left) * px / vx
        if left
        else y_right + (horizon - y_right) * offset / (width - vx)
    )
    base = horizon + float(rng.uniform(0.3, 0.9)) * (edge - horizon)
    depth = base - horizon
    pw, ph = max(2.0, 0.06 * depth), 10.0 + float(rng.uniform(2.5, 4.0)) * depth
    cx, cy, s = px + pw / 2, base - ph, max(3.0, 0.25 * depth)
    sign = np.array([[cx, cy - s], [cx + s, cy], [cx, cy + s], [cx - s, cy]])
    return [("pole", _rect(px, base - ph, px + pw, base)), ("traffic sign", sign)]


def _things(
    rng: np.random.Generator,
    width: int,
    height: int,
    horizon: float,
    vx: float,
    y_left: float,
    y_right: float,
) -> list[Region]:
    """Persons on the sidewalks, vehicles on the road; sized by perspective, sorted far to near."""
    wanted: list[tuple[str, bool]] = [("car", True)] * int(rng.integers(1, 5))
    wanted += [("person", False)] * int(rng.integers(0, 5))
    wanted += [("bicycle", bool(rng.random() < 0.5))] * int(rng.integers(0, 2))
    wanted += [("motorcycle", True)] * int(rng.integers(0, 2))
    wanted += [(name, True) for name in ("bus", "train") if rng.random() < 0.15]
    placed: list[tuple[float, Region]] = []
    for label, on_road in wanted:
        left = rng.random() < 0.5
        if on_road:
            base = horizon + float(rng.uniform(0.1, 1.0)) * (height - horizon)
        else:  # on the sidewalk beside the road, above where the road edge leaves the image
            base = horizon + float(rng.uniform(0.2, 1.0)) * ((y_left if left else y_right) - horizon)
        depth = base - horizon
        road_left = max(0.0, vx - vx * depth / max(y_left - horizon, 1e-3))
        road_right = min(float(width), vx + (width - vx) * depth / max(y_right - horizon, 1e-3))
        if on_road:
            x = float(rng.uniform(road_left, max(road_left + 1, road_right)))
        elif left:
            x = float(rng.uniform(0, max(road_left, 1)))
        else:
            x = float(rng.uniform(min(road_right, width - 1), width))
        scale = {"person": 0.35, "bicycle": 0.3, "motorcycle": 0.3, "bus": 0.9, "train": 1.0}.get(label, 0.45)
        radius = 2.0 + scale * depth
        class_id = class_index(CITYSCAPES_THINGS[label])
        inst = sample_instance(class_id, rng, (x, base - radius * 0.7), radius, width, height)
        if inst is None:
            continue
        polygon = _int_polygon(inst.polygon)
        if len(polygon) >= 3:
            region = Region(label, polygon, inst.appearance, inst.center, inst.radius, inst.angle)
            placed.append((base, region))
    placed.sort(key=lambda item: item[0])
    return [region for _, region in placed]


def render_street(
    regions: list[Region], rng: np.random.Generator, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint the regions; returns RGB (H, W, 3) uint8, labelIds (H, W) uint8, instanceIds (H, W) int32."""
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    label_ids = np.full((height, width), name2label["unlabeled"].id, dtype=np.uint8)
    instance_ids = np.full((height, width), name2label["unlabeled"].id, dtype=np.int32)
    seen: dict[str, int] = {}
    for region in regions:
        mask = rasterize(np.asarray(region.polygon, dtype=np.float64), width, height)
        paint(canvas, mask, region.appearance, region.center, region.radius, region.angle, rng)
        label = name2label[region.label]
        label_ids[mask] = label.id
        if label.hasInstances:
            instance_ids[mask] = label.id * 1000 + seen.get(region.label, 0)
            seen[region.label] = seen.get(region.label, 0) + 1
        else:
            instance_ids[mask] = label.id
    return finish(canvas, rng), label_ids, instance_ids


def color_image(label_ids: np.ndarray) -> Image.Image:
    """The gtFine_color RGBA image: each pixel gets its label's colour from cityscapesscripts."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, 3] = 255
    for label in cs_labels:
        if label.id >= 0:
            lut[label.id, :3] = label.color
    return Image.fromarray(lut[label_ids])


def write_cityscapes(root: Path, profile: SyntheticProfile, seed: int) -> dict[str, int]:
    """Write leftImg8bit and gtFine for train and val; returns images per split."""
    width, height = profile.cityscapes_size
    counts = {}
    for split, count in (("train", profile.cityscapes_train), ("val", profile.cityscapes_val)):
        for index in range(count):
            rng = image_rng(seed, "cityscapes", SPLITS[split], index)
            city = CITIES[split][index % len(CITIES[split])]
            stem = f"{city}_{index:06d}_000019"
            regions = street_regions(rng, width, height)
            rgb, label_ids, instance_ids = render_street(regions, rng, width, height)
            save_png(
                root / "cityscapes" / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                Image.fromarray(rgb),
            )
            gt = root / "cityscapes" / "gtFine" / split / city
            polygons = {
                "imgHeight": height,
                "imgWidth": width,
                "objects": [{"label": r.label, "polygon": [list(p) for p in r.polygon]} for r in regions],
            }
            write_text(gt / f"{stem}_gtFine_polygons.json", json.dumps(polygons, indent=4) + "\n")
            save_png(gt / f"{stem}_gtFine_labelIds.png", Image.fromarray(label_ids))
            save_png(gt / f"{stem}_gtFine_instanceIds.png", Image.fromarray(instance_ids.astype(np.uint16)))
            save_png(gt / f"{stem}_gtFine_color.png", color_image(label_ids))
            json2labelImg(
                str(gt / f"{stem}_gtFine_polygons.json"),
                str(gt / f"{stem}_gtFine_labelTrainIds.png"),
                "trainIds",
            )
        counts[split] = count
    return counts
