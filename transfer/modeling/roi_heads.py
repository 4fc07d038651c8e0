"""C4 ROI heads with an extra norm after res5, for BasicBlock (R-18/34) and Bottleneck ResNets.

MoCo's detection benchmark (He et al., 2020, Appendix A.2; facebookresearch/moco `detection/`) adds a
normalisation layer after the res5 head of Faster R-CNN C4 so that the head's output is normalised like
the backbone it was fine-tuned from. Detectron2's `Res5ROIHeads` builds res5 from Bottleneck blocks only;
here res5 follows MODEL.RESNETS.DEPTH, so R-18/34 get BasicBlocks (res5 width 512).
"""

from detectron2.layers import get_norm
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

# res5 blocks of a BasicBlock ResNet (He et al., 2016, Table 1).
_BASIC_RES5_BLOCKS = {18: 2, 34: 3}


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """`Res5ROIHeads` whose res5 ends with an extra MODEL.RESNETS.NORM layer (named `res5.norm`)."""

    @classmethod
    def _build_res5_block(cls, cfg):
        depth = cfg.MODEL.RESNETS.DEPTH
        if depth in _BASIC_RES5_BLOCKS:
            in_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 4  # res4 width
            out_channels = in_channels * 2
            num_blocks = _BASIC_RES5_BLOCKS[depth]
            blocks = ResNet.make_stage(
                BasicBlock,
                num_blocks,
                stride_per_block=[2] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=cfg.MODEL.RESNETS.NORM,
            )
            res5 = nn.Sequential(*blocks)
        else:
            res5, out_channels = super()._build_res5_block(cfg)
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return res5, out_channels
