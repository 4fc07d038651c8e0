"""Up-front checks that every dataset a config names is registered and present on disk.

Detectron2 registers its builtin datasets at import time from $DETECTRON2_DATASETS (default
`datasets`), and fails deep inside a data loader worker when files are missing. These checks run before
the model is built and name the missing path, the expected layout and the fix.
"""

import difflib
import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog

from transfer.data.voc_sem_seg import VOC_SEM_SEG_LAYOUT
from transfer.errors import TransferError

_LAYOUTS = {
    "coco": "coco/{train2017,val2017}/*.jpg and coco/annotations/instances_{train,val}2017.json",
    "voc": "VOC2007/ and VOC2012/ with Annotations/*.xml, JPEGImages/*.jpg, "
    "ImageSets/Main/{train,val,trainval,test}.txt (VOC2007 test merged into VOC2007/)",
    "cityscapes": "cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
    "cityscapes/gtFine/{train,val}/<city>/*_gtFine_{labelIds,labelTrainIds,instanceIds,polygons} files "
    "(labelTrainIds from cityscapesscripts' createTrainIdLabelImgs)",
    "voc_sem_seg": VOC_SEM_SEG_LAYOUT,
}
# Metadata fields of registered datasets that are paths which must exist.
_PATH_FIELDS = ("json_file", "image_root", "image_dir", "gt_dir", "split_file", "sem_seg_root")


def datasets_root() -> str:
    """The root Detectron2's builtin registration used (same rule as `detectron2.data.datasets.builtin`)."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def _family(name: str) -> str:
    if "sem_seg" in name and name.startswith("voc"):
        return "voc_sem_seg"
    return next((f for f in ("coco", "voc", "cityscapes") if name.startswith(f)), "")


def required_paths(name: str) -> list[Path]:
    """Files and directories the dataset `name` needs, from its registered metadata."""
    meta = MetadataCatalog.get(name)
    paths = [Path(getattr(meta, f)) for f in _PATH_FIELDS if hasattr(meta, f)]
    if getattr(meta, "evaluator_type", "") == "pascal_voc":
        voc = Path(meta.dirname)
        paths += [voc / "ImageSets" / "Main" / f"{meta.split}.txt", voc / "Annotations", voc / "JPEGImages"]
    return paths


def check_cityscapes_train_ids(name: str) -> None:
    """Raise TransferError if the Cityscapes sem-seg dataset `name` has no `*_labelTrainIds.png` label.

    Detectron2 reads Cityscapes semantic labels as train IDs, which the release does not ship; without
    them its loader stops on a bare assertion."""
    gt_dir = Path(MetadataCatalog.get(name).gt_dir)
    if next(gt_dir.glob("*/*_labelTrainIds.png"), None) is None:
        raise TransferError(
            f"Dataset {name!r} has no <city>/*_gtFine_labelTrainIds.png label under {gt_dir}. Semantic "
            "segmentation reads the 19 Cityscapes train IDs from these files, which cityscapesscripts "
            "generates from the *_gtFine_polygons.json files: run `CITYSCAPES_DATASET="
            f"{gt_dir.parents[1]} python -m cityscapesscripts.preparation.createTrainIdLabelImgs`."
        )


def check_dataset(name: str) -> None:
    """Raise TransferError if `name` is not registered or any of its files is missing."""
    registered = DatasetCatalog.list()
    if name not in registered:
        close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
        raise TransferError(
            f"Dataset {name!r} is not registered in Detectron2's DatasetCatalog"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            + ". Use a builtin name (coco_2017_train, voc_2007_trainval, cityscapes_fine_sem_seg_train, ...) "
            "or one of ours (voc_2012_sem_seg_train_aug, voc_2012_sem_seg_val) in DATASETS.TRAIN/TEST."
        )
    missing = [p for p in required_paths(name) if not p.exists()]
    if missing:
        layout = _LAYOUTS.get(_family(name), "the Detectron2 builtin layout")
        raise TransferError(
            f"Dataset {name!r} is missing {missing[0]}"
            + (f" (and {len(missing) - 1} more paths)" if len(missing) > 1 else "")
            + f". Datasets are read from $DETECTRON2_DATASETS={datasets_root()!r}, which must be set before "
            f"the process starts and hold: {layout}. Check it with `python -m benchmarks check-data`, or "
            "generate synthetic data with `python -m benchmarks make-data --profile tiny --root DIR`."
        )
    if getattr(MetadataCatalog.get(name), "evaluator_type", "") == "cityscapes_sem_seg":
        check_cityscapes_train_ids(name)


def check_datasets(names: list[str]) -> None:
    for name in names:
        check_dataset(name)
