"""Dataset mapper for semantic segmentation: raw label indices and the mmseg FCN augmentation.

Labels are read as raw PNG indices (`np.asarray(Image.open(path))`): VOC's `SegmentationClass` files
are palette PNGs whose palette index is the class, and Detectron2's `read_image(path, "L")` would turn
them into luminance values instead. Training follows mmsegmentation's FCN pipeline (DenseCL Table 3):
random rescale of the short side by 0.5-2.0 (INPUT.MIN_SIZE_TRAIN as a range), random crop
INPUT.CROP.SIZE avoiding crops dominated by one class, horizontal flip, photometric distortion
(INPUT.PHOTOMETRIC_DISTORTION, transfer/data/photometric.py), padding to the crop size with the mean
colour and the ignore label.
"""

import copy

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from PIL import Image

from transfer.data.photometric import PadToSize, PhotoMetricDistortion
from transfer.errors import TransferError


def read_label_png(path: str) -> np.ndarray:
    """(H, W) uint8 class indices of a palette ("P") or grayscale ("L") label PNG."""
    with Image.open(path) as label:
        if label.mode not in ("P", "L"):
            raise TransferError(
                f"Label {path} is a {label.mode!r} PNG; expected a palette ('P') or single-channel ('L') "
                "PNG of class indices (VOC SegmentationClass/SegmentationClassAug, Cityscapes labelTrainIds)."
            )
        return np.asarray(label).copy()


def load_label_array(path: str, dtype=int) -> np.ndarray:
    """Label PNG -> (H, W) array of raw indices; the `sem_seg_loading_fn` given to SemSegEvaluator
    (Detectron2's default passes `copy=False` to np.array, which numpy 2 rejects)."""
    return read_label_png(path).astype(dtype)


def build_sem_seg_augmentation(cfg, is_train: bool) -> list[T.Augmentation]:
    """Training: rescale, category-constrained crop, flip, photometric distortion, pad to the crop with the
    mean colour (mmseg's order). Test: resize short side."""
    if not is_train:
        if cfg.INPUT.MIN_SIZE_TEST == 0:
            return []
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    augs = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    ignore = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
    if cfg.INPUT.CROP.ENABLED:
        augs.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE, cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA, ignore
            )
        )
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(T.RandomFlip(horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal"))
    if cfg.INPUT.PHOTOMETRIC_DISTORTION:
        augs.append(PhotoMetricDistortion(cfg.INPUT.FORMAT))
    if cfg.INPUT.CROP.ENABLED:
        augs.append(PadToSize(tuple(cfg.INPUT.CROP.SIZE), tuple(cfg.MODEL.PIXEL_MEAN), ignore))
    return augs


class SemSegDatasetMapper:
    """Dataset dict -> {"image": (3, H, W) uint8 tensor, "sem_seg": (H, W) long tensor (train only),
    "height", "width", "file_name"}."""

    def __init__(self, cfg, is_train: bool = True):
        self.is_train = is_train
        self.image_format = cfg.INPUT.FORMAT
        self.augmentations = T.AugmentationList(build_sem_seg_augmentation(cfg, is_train))

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)  # (H, W, 3)
        utils.check_image_size(dataset_dict, image)  # sets "height"/"width": the evaluation size
        label_path = dataset_dict.pop("sem_seg_file_name", None)
        sem_seg = read_label_png(label_path) if self.is_train and label_path else None
        if sem_seg is not None and sem_seg.shape != image.shape[:2]:
            raise utils.SizeMismatchError(
                f"Label {label_path} is {sem_seg.shape[::-1]} (w, h) but its image "
                f"{dataset_dict['file_name']} is {image.shape[1::-1]}; labels must match their image's size. "
                "Set TRANSFER.SKIP_BAD_IMAGES True to skip such training images."
            )
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        self.augmentations(aug_input)
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        if aug_input.sem_seg is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype(np.int64))
        return dataset_dict
