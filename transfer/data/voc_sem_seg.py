"""PASCAL VOC 2012 semantic segmentation splits, which Detectron2 does not register.

`voc_2012_sem_seg_train_aug`: VOC2012 train + SBD (Hariharan et al., 2011), the 10,582 ids of
`ImageSets/Segmentation/train_aug.txt`, labels in `SegmentationClassAug/` (single-channel index PNGs).
`voc_2012_sem_seg_val`: the 1,449 ids of `ImageSets/Segmentation/val.txt`, labels in `SegmentationClass/`
(palette PNGs whose palette index is the class). 21 classes (background + 20), 255 = ignore.
"""

import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog

from transfer.errors import TransferError

VOC_SEM_SEG_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# name -> (split list under ImageSets/Segmentation, label directory)
VOC_SEM_SEG_SPLITS = {
    "voc_2012_sem_seg_train_aug": ("train_aug", "SegmentationClassAug"),
    "voc_2012_sem_seg_train": ("train", "SegmentationClass"),
    "voc_2012_sem_seg_val": ("val", "SegmentationClass"),
}

VOC_SEM_SEG_LAYOUT = (
    "VOC2012/JPEGImages/<id>.jpg, VOC2012/SegmentationClass/<id>.png (palette PNG, index = class 0..20, "
    "255 = ignore), VOC2012/SegmentationClassAug/<id>.png (index PNG, every id of train_aug.txt) and "
    "VOC2012/ImageSets/Segmentation/{train,val,train_aug}.txt"
)


def load_voc_sem_seg(voc_root: str, split: str, label_dir: str) -> list[dict]:
    """Detectron2 dataset dicts {file_name, sem_seg_file_name, image_id} of one split."""
    split_file = Path(voc_root) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        raise TransferError(
            f"VOC segmentation split list {split_file} does not exist. Expected under "
            f"$DETECTRON2_DATASETS: {VOC_SEM_SEG_LAYOUT}. Check the layout with `python -m benchmarks "
            "check-data`."
        )
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    return [
        {
            "file_name": os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg"),
            "sem_seg_file_name": os.path.join(voc_root, label_dir, f"{image_id}.png"),
            "image_id": image_id,
        }
        for image_id in ids
    ]


def register_voc_sem_seg(root: str) -> None:
    """Register the VOC 2012 segmentation splits under `root`/VOC2012 (idempotent)."""
    voc_root = os.path.join(root, "VOC2012")
    for name, (split, label_dir) in VOC_SEM_SEG_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda s=split, d=label_dir: load_voc_sem_seg(voc_root, s, d))
        MetadataCatalog.get(name).set(
            stuff_classes=list(VOC_SEM_SEG_CLASSES),
            dirname=voc_root,
            split_file=os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt"),
            image_root=os.path.join(voc_root, "JPEGImages"),
            sem_seg_root=os.path.join(voc_root, label_dir),
            evaluator_type="sem_seg",
            ignore_label=255,
        )
