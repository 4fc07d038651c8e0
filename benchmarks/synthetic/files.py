"""Deterministic file writers (fixed JPEG quality, no timestamps) and the per-image random generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.atomic import atomic_write_text

JPEG_QUALITY = 90

# Dataset ids that seed `image_rng`, so every image has its own independent stream.
DATASET_IDS = {"imagenet": 1, "coco": 2, "voc2007": 3, "voc2012": 4, "cityscapes": 5}


def image_rng(seed: int, dataset: str, split_id: int, index: int) -> np.random.Generator:
    """Random generator of one image: depends on (seed, dataset, split, index) only."""
    return np.random.default_rng([seed, DATASET_IDS[dataset], split_id, index])


def save_jpeg(path: Path, image: np.ndarray) -> None:
    """RGB uint8 (H, W, 3) -> baseline JPEG at fixed quality (byte-identical for identical input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY)


def save_png(path: Path, image: Image.Image) -> None:
    """Any PIL image -> PNG (no metadata chunks, so byte-identical for identical pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def write_text(path: Path, text: str) -> None:
    """Write a small text file (lists, XML)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_lines(path: Path, lines: list[str]) -> None:
    """One entry per line with a trailing newline, like the VOC ImageSets lists."""
    write_text(path, "".join(f"{line}\n" for line in lines))


def write_json_atomic(path: Path, obj: object, indent: int | None = None) -> None:
    """Dump JSON (keys in insertion order, trailing newline) atomically onto `path`."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
