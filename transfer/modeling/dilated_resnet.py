"""Dilated ResNet backbone of FCN "d8": output stride 8, for BasicBlock and Bottleneck depths.

FCN-d8 (Long et al., 2015; "dilated" variant of Yu & Koltun, 2016, as in mmsegmentation's `r50-d8`,
used by DenseCL Table 3): the standard ResNet stem, res2/res3 as usual, res4 and res5 with stride 1 and
dilation 2 and 4. Parameter names are exactly those of Detectron2's `ResNet` (stem, res2..res5, convK,
convK.norm, shortcut), so converted weights load with no missing backbone keys. Detectron2's builder
rejects dilation for R-18/34 and has no res4 dilation; its blocks and `ResNet` class are reused here.
"""

import fvcore.nn.weight_init as weight_init
from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet
from torch.nn import functional as F

_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


class DilatedBasicBlock(CNNBlockBase):
    """ResNet BasicBlock whose first 3x3 conv is dilated (mmseg `BasicBlock`); names as Detectron2's."""

    def __init__(self, in_channels, out_channels, *, stride=1, dilation=1, norm="BN"):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                stride=stride,
                bias=False,
                norm=get_norm(norm, out_channels),
            )
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        self.conv2 = Conv2d(
            out_channels,
            out_channels,
            kernel_size=3,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        for layer in (self.conv1, self.conv2, self.shortcut):
            if layer is not None:
                weight_init.c2_msra_fill(layer)

    def forward(self, x):
        out = self.conv2(F.relu_(self.conv1(x)))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out + shortcut)


def _stage_dilations(dilation: int, num_blocks: int, contract: bool) -> list[int]:
    """Per-block dilation of a stage; with `contract` the first block uses half of it (mmseg)."""
    first = dilation // 2 if contract and dilation > 1 else dilation
    return [first] + [dilation] * (num_blocks - 1)


@BACKBONE_REGISTRY.register()
def build_dilated_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """Detectron2 `ResNet` with res4/res5 dilated by MODEL.RESNETS.RES4_DILATION / RES5_DILATION.

    A stage with dilation > 1 keeps stride 1, so dilations (2, 4) give output stride 8:
    res2 (N, C, H/4, W/4), res3 H/8, res4 H/8, res5 H/8.
    """
    res = cfg.MODEL.RESNETS
    depth = res.DEPTH
    bottleneck = depth >= 50
    if not bottleneck and res.RES2_OUT_CHANNELS != 64:
        raise ValueError(
            f"MODEL.RESNETS.RES2_OUT_CHANNELS must be 64 for ResNet-{depth} (BasicBlock), got "
            f"{res.RES2_OUT_CHANNELS}; add `MODEL.RESNETS.RES2_OUT_CHANNELS 64`."
        )
    stem = BasicStem(in_channels=input_shape.channels, out_channels=res.STEM_OUT_CHANNELS, norm=res.NORM)
    dilations = [1, 1, res.RES4_DILATION, res.RES5_DILATION]
    in_channels, out_channels = res.STEM_OUT_CHANNELS, res.RES2_OUT_CHANNELS
    bottleneck_channels = res.NUM_GROUPS * res.WIDTH_PER_GROUP
    stages = []
    for idx, num_blocks in enumerate(_BLOCKS_PER_STAGE[depth]):
        first_stride = 1 if idx == 0 or dilations[idx] > 1 else 2
        kwargs = {
            "stride_per_block": [first_stride] + [1] * (num_blocks - 1),
            "dilation_per_block": _stage_dilations(dilations[idx], num_blocks, res.CONTRACT_DILATION),
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": res.NORM,
        }
        if bottleneck:
            kwargs.update(
                bottleneck_channels=bottleneck_channels,
                stride_in_1x1=res.STRIDE_IN_1X1,
                num_groups=res.NUM_GROUPS,
            )
        block = BottleneckBlock if bottleneck else DilatedBasicBlock
        stages.append(ResNet.make_stage(block, num_blocks, **kwargs))
        in_channels, out_channels, bottleneck_channels = (
            out_channels,
            out_channels * 2,
            bottleneck_channels * 2,
        )
    return ResNet(stem, stages, out_features=res.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
