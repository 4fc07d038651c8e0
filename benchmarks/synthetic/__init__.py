"""Embedded synthetic datasets in the real on-disk formats (ImageNet folders, COCO json, VOC XML and
masks, Cityscapes gtFine), generated from one shared vocabulary of textured object classes.

`generate(root, profile, seed)` writes them all under a DETECTRON2_DATASETS root; `PROFILES` holds the
sizes per profile ("smoke", "tiny").
"""

from benchmarks.synthetic.generate import GENERATOR_VERSION, SyntheticDataError, generate
from benchmarks.synthetic.profiles import PROFILES, SyntheticProfile
from benchmarks.synthetic.vocabulary import IMAGENET_WNIDS, VOC_CLASS_NAMES, VOCABULARY

__all__ = [
    "GENERATOR_VERSION",
    "IMAGENET_WNIDS",
    "PROFILES",
    "VOCABULARY",
    "VOC_CLASS_NAMES",
    "SyntheticDataError",
    "SyntheticProfile",
    "generate",
]
