"""Fixtures for the pretraining tests: tiny JPEG datasets written into tmp_path."""

from pathlib import Path

import pytest
from pretrain_testutils import write_jpegs


@pytest.fixture()
def tiny_root(tmp_path) -> Path:
    """8 COCO-layout images and 2 ImageNet classes x 4 images."""
    root = tmp_path / "datasets"
    write_jpegs(root / "coco" / "train2017", 8, seed=1)
    write_jpegs(root / "imagenet" / "train" / "n0001", 4, seed=2)
    write_jpegs(root / "imagenet" / "train" / "n0002", 4, seed=3)
    return root
