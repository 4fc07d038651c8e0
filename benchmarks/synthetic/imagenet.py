"""Synthetic ImageNet: object-centric images, one dominant object per image, labelled by class folder.

Layout as torchvision's ImageFolder and the real ILSVRC train/val folders expect:
`imagenet/{train,val}/<wnid>/<wnid>_<index>.jpg` with wnids `n00000001..` (class k = VOCABULARY[k-1]).
A third of the images also hold a small distractor of another class, partly behind the main object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.synthetic.files import image_rng, save_jpeg
from benchmarks.synthetic.profiles import SyntheticProfile
from benchmarks.synthetic.scenes import ObjectSpec, compose_scene
from benchmarks.synthetic.vocabulary import IMAGENET_WNIDS, VOCABULARY

SPLITS = {"train": 0, "val": 1}


def render_imagenet_image(seed: int, split: str, index: int, class_id: int, size: int) -> np.ndarray:
    """One object-centric image (size, size, 3) uint8 whose dominant object is of class `class_id`."""
    rng = image_rng(seed, "imagenet", SPLITS[split], index)
    specs = [ObjectSpec(class_id, (0.55, 0.9), centered=True)]
    if rng.random() < 1 / 3:
        distractor = int(rng.choice([k for k in range(len(VOCABULARY)) if k != class_id]))
        specs.insert(0, ObjectSpec(distractor, (0.15, 0.3)))
    scene = compose_scene(rng, size, size, specs, clutter=6, occluders=1, max_overlap=1.0)
    return scene.image


def write_imagenet(root: Path, profile: SyntheticProfile, seed: int) -> dict[str, int]:
    """Write imagenet/{train,val}; returns the number of images per split."""
    counts = {}
    n_classes = min(profile.imagenet_classes, len(VOCABULARY))
    sizes = (("train", profile.imagenet_train_per_class), ("val", profile.imagenet_val_per_class))
    for split, per_class in sizes:
        index = 0
        for class_id in range(n_classes):
            wnid = IMAGENET_WNIDS[class_id]
            for j in range(per_class):
                image = render_imagenet_image(seed, split, index, class_id, profile.imagenet_size)
                save_jpeg(root / "imagenet" / split / wnid / f"{wnid}_{j + 1:06d}.jpg", image)
                index += 1
        counts[split] = index
    return counts
