"""Datasets and mappers of the transfer benchmark; importing this package registers the VOC 2012
segmentation splits under $DETECTRON2_DATASETS (the root Detectron2's builtin datasets use)."""

from transfer.data.checks import check_datasets, datasets_root
from transfer.data.sem_seg_mapper import SemSegDatasetMapper
from transfer.data.voc_sem_seg import register_voc_sem_seg

register_voc_sem_seg(datasets_root())

__all__ = ["SemSegDatasetMapper", "check_datasets", "datasets_root", "register_voc_sem_seg"]
