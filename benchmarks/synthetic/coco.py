"""Synthetic COCO: scene-centric images (2-6 objects) with instance polygons in the real COCO json format.

`coco/{train2017,val2017}/<12-digit id>.jpg` and `coco/annotations/instances_{train,val}2017.json`. The json
lists all 80 real COCO thing categories with their real ids and names (Detectron2's builtin metadata for
`coco_2017_*` checks them); objects use the 20 categories that match the VOC classes (VOCABULARY.coco_name).
Segmentations are the objects' outlines (one polygon each, clipped to the image; later objects may hide
up to a quarter of an earlier one, like overlapping annotations in real COCO).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from benchmarks.synthetic.files import image_rng, save_jpeg, write_json_atomic
from benchmarks.synthetic.profiles import SyntheticProfile
from benchmarks.synthetic.scenes import random_scene
from benchmarks.synthetic.shapes import polygon_area
from benchmarks.synthetic.vocabulary import VOCABULARY

SPLITS = {"train2017": 0, "val2017": 1}
_IMAGE_ID_BASE = {"train2017": 1, "val2017": 1_000_001}  # ids unique across splits, as in real COCO


def coco_thing_categories() -> list[dict]:
    """The 80 COCO thing categories `{"id", "name"}` from Detectron2's `builtin_meta.COCO_CATEGORIES`.

    The module has no imports; it is loaded from its file when `detectron2.data` is not imported yet,
    because importing that package pulls in torch (seconds) just for a table.
    """
    name = "detectron2.data.datasets.builtin_meta"
    module = sys.modules.get(name)
    if module is None:
        package = importlib.util.find_spec("detectron2")
        if package is None or not package.submodule_search_locations:
            raise ImportError("detectron2 is not installed; run `make setup` (scripts/setup.sh)")
        path = Path(package.submodule_search_locations[0]) / "data" / "datasets" / "builtin_meta.py"
        spec = importlib.util.spec_from_file_location("_detectron2_builtin_meta", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return [{"id": c["id"], "name": c["name"]} for c in module.COCO_CATEGORIES if c["isthing"] == 1]


def build_split(root: Path, split: str, count: int, seed: int, profile: SyntheticProfile) -> dict:
    """Render `count` images of one split into coco/<split>/ and return its instances json dict."""
    categories = coco_thing_categories()
    name_to_id = {c["name"]: c["id"] for c in categories}
    category_of_class = [name_to_id[c.coco_name] for c in VOCABULARY]
    images, annotations = [], []
    for index in range(count):
        rng = image_rng(seed, "coco", SPLITS[split], index)
        scene = random_scene(rng, profile.scene_sizes, (2, 6), len(VOCABULARY))
        image_id = _IMAGE_ID_BASE[split] + index
        file_name = f"{image_id:012d}.jpg"
        height, width = scene.image.shape[:2]
        save_jpeg(root / "coco" / split / file_name, scene.image)
        images.append(
            {"id": image_id, "file_name": file_name, "width": width, "height": height, "license": 1}
        )
        for inst in scene.instances:
            poly = inst.polygon
            x0, y0 = poly.min(axis=0)
            x1, y1 = poly.max(axis=0)
            annotations.append(
                {
                    "id": _IMAGE_ID_BASE[split] * 100 + len(annotations),
                    "image_id": image_id,
                    "category_id": category_of_class[inst.class_id],
                    "segmentation": [[round(float(c), 2) for c in poly.reshape(-1)]],
                    "area": round(polygon_area(poly), 2),
                    "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {
            "description": "densebench synthetic scenes in the COCO 2017 instances format",
            "version": "1.0",
            "year": 2017,
            "contributor": "densebench",
        },
        "licenses": [{"id": 1, "name": "generated data, no restrictions", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco(root: Path, profile: SyntheticProfile, seed: int) -> dict[str, int]:
    """Write coco/{train2017,val2017} and their instances json; returns the number of images per split."""
    counts = {}
    for split, count in (("train2017", profile.coco_train), ("val2017", profile.coco_val)):
        dataset = build_split(root, split, count, seed, profile)
        write_json_atomic(root / "coco" / "annotations" / f"instances_{split}.json", dataset)
        counts[split] = count
    return counts
