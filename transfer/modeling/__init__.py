"""Detectron2 extensions of the transfer benchmark; importing this package registers them."""

from transfer.modeling.dilated_resnet import build_dilated_resnet_backbone
from transfer.modeling.fcn_head import FCNHead
from transfer.modeling.roi_heads import Res5ROIHeadsExtraNorm
from transfer.modeling.segmentor import SlidingSemanticSegmentor

__all__ = ["FCNHead", "Res5ROIHeadsExtraNorm", "SlidingSemanticSegmentor", "build_dilated_resnet_backbone"]
