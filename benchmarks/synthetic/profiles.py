"""Size settings of the synthetic datasets per profile (`smoke`: every code path; `tiny`: the benchmark)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyntheticProfile:
    """How many images of which size each synthetic dataset gets."""

    imagenet_classes: int  # class folders n00000001.. (at most the 20 vocabulary classes)
    imagenet_train_per_class: int
    imagenet_val_per_class: int
    imagenet_size: int  # square side of the object-centric images
    coco_train: int
    coco_val: int
    voc2007_trainval: int
    voc2007_test: int
    voc2012_seg_train: int  # VOC2012 images with SegmentationClass masks, seg `train` list
    voc2012_seg_val: int  # seg `val` list (disjoint from train_aug)
    voc2012_sbd_extra: int  # extra "SBD" images: train_aug = seg train + these
    voc2012_det_only: int  # VOC2012 images in Main/trainval without any segmentation
    cityscapes_train: int
    cityscapes_val: int
    cityscapes_size: tuple[int, int]  # (width, height), 2:1 like the real 2048x1024
    scene_sizes: tuple[tuple[int, int], ...]  # (width, height) choices for COCO and VOC images

    @property
    def voc2012_trainval(self) -> int:
        """Every VOC2012 image is in Main/trainval (as in the real set)."""
        return self.voc2012_seg_train + self.voc2012_seg_val + self.voc2012_sbd_extra + self.voc2012_det_only


PROFILES: dict[str, SyntheticProfile] = {
    "smoke": SyntheticProfile(
        imagenet_classes=4,
        imagenet_train_per_class=6,
        imagenet_val_per_class=2,
        imagenet_size=64,
        coco_train=16,
        coco_val=8,
        voc2007_trainval=12,
        voc2007_test=8,
        voc2012_seg_train=6,
        voc2012_seg_val=6,
        voc2012_sbd_extra=4,
        voc2012_det_only=2,
        cityscapes_train=6,
        cityscapes_val=4,
        cityscapes_size=(256, 128),
        scene_sizes=((128, 96), (96, 128)),
    ),
    "tiny": SyntheticProfile(
        imagenet_classes=20,
        imagenet_train_per_class=60,
        imagenet_val_per_class=10,
        imagenet_size=64,
        coco_train=600,
        coco_val=100,
        voc2007_trainval=300,
        voc2007_test=150,
        voc2012_seg_train=150,
        voc2012_seg_val=100,
        voc2012_sbd_extra=250,
        voc2012_det_only=0,
        cityscapes_train=100,
        cityscapes_val=30,
        cityscapes_size=(256, 128),
        scene_sizes=((128, 128), (160, 120), (120, 160), (144, 112)),
    ),
}
