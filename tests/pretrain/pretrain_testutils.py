"""Helpers for the pretraining tests: tiny random-texture JPEGs and a unit-test-sized config."""

from pathlib import Path

import numpy as np
from PIL import Image

from pretrain.config import get_cfg


def write_jpegs(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (48, 40)) -> list[Path]:
    """`count` random-texture JPEGs (height, width = size) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = rng.integers(0, 255, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        path = folder / f"img_{seed}_{i:03d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def tiny_cfg(method: str = "densecl", **overrides):
    """A resnet18 config sized for unit tests (32 px, queue 16, heads 32/16)."""
    cfg = get_cfg()
    cfg.MODEL.METHOD = method
    cfg.MODEL.ARCH = "resnet18"
    cfg.MODEL.HIDDEN_DIM = 32
    cfg.MODEL.FEAT_DIM = 16
    cfg.MODEL.QUEUE_SIZE = 16
    cfg.MODEL.DENSECL.GRID_SIZE = 1
    cfg.DATA.IMAGE_SIZE = 32
    cfg.DATA.NUM_WORKERS = 0
    cfg.SOLVER.BATCH_SIZE = 4
    cfg.MODEL.SHUFFLE_BN_SPLITS = 2
    cfg.SOLVER.LOG_PERIOD = 1
    cfg.SOLVER.CHECKPOINT_PERIOD = 1
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg
