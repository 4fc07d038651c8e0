"""FCN decode head on C5 with an auxiliary FCN head on C4 (mmsegmentation `fcn_r50-d8` protocol).

Decode head (Long et al., 2015, as configured in DenseCL Table 3): NUM_CONVS x (3x3 conv CONVS_DIM + norm
+ ReLU) on res5, the input concatenated with their output and fused by one more 3x3 conv, Dropout2d 0.1,
1x1 classifier. Auxiliary head: one 3x3 conv (AUX_CONVS_DIM) on res4, dropout, classifier; its loss is
weighted 0.4 and it is used in training only. Logits are upsampled bilinearly to the label size for the
loss (pixel-wise cross-entropy ignoring IGNORE_VALUE, 255; averaged over every pixel as mmseg's loss was
for the paper, or over the labelled ones with LOSS_AVG_NON_IGNORE) and, in inference, to the input size
by `SlidingSemanticSegmentor`.
"""

import torch
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn
from torch.nn import functional as F


def _conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> Conv2d:
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        padding=1,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class FCNBranch(nn.Module):
    """convs -> (optional concat with the input + fuse conv) -> dropout -> 1x1 classifier."""

    def __init__(self, in_channels, channels, num_convs, concat_input, dropout, num_classes, norm):
        super().__init__()
        convs = [
            _conv_norm_relu(in_channels if i == 0 else channels, channels, norm) for i in range(num_convs)
        ]
        self.convs = nn.Sequential(*convs)
        self.conv_cat = _conv_norm_relu(in_channels + channels, channels, norm) if concat_input else None
        self.dropout = nn.Dropout2d(dropout)
        self.predictor = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)  # (N, channels, H/8, W/8)
        if self.conv_cat is not None:
            y = self.conv_cat(torch.cat([x, y], dim=1))
        return self.predictor(self.dropout(y))  # (N, K, H/8, W/8)


@SEM_SEG_HEADS_REGISTRY.register()
class FCNHead(nn.Module):
    """Detectron2 sem-seg head: `forward(features, targets) -> (logits or None, losses)`.

    In inference it returns the decode logits (N, K, H/8, W/8) at feature resolution.
    """

    def __init__(self, cfg, input_shape: dict[str, ShapeSpec]):
        super().__init__()
        head = cfg.MODEL.SEM_SEG_HEAD
        (self.in_feature,) = head.IN_FEATURES
        self.ignore_value = head.IGNORE_VALUE
        self.loss_weight = head.LOSS_WEIGHT
        self.avg_non_ignore = head.LOSS_AVG_NON_IGNORE
        self.decode = FCNBranch(
            input_shape[self.in_feature].channels,
            head.CONVS_DIM,
            head.NUM_CONVS,
            head.CONCAT_INPUT,
            head.DROPOUT,
            head.NUM_CLASSES,
            head.NORM,
        )
        self.aux_feature = head.AUX_IN_FEATURE
        self.aux_loss_weight = head.AUX_LOSS_WEIGHT
        self.auxiliary = None
        if self.aux_feature:
            self.auxiliary = FCNBranch(
                input_shape[self.aux_feature].channels,
                head.AUX_CONVS_DIM,
                1,
                False,
                head.DROPOUT,
                head.NUM_CLASSES,
                head.NORM,
            )

    def forward(self, features: dict[str, torch.Tensor], targets: torch.Tensor | None = None):
        logits = self.decode(features[self.in_feature])
        if not self.training:
            return logits, {}
        losses = {"loss_sem_seg": self.loss_weight * self._loss(logits, targets)}
        if self.auxiliary is not None:
            aux_logits = self.auxiliary(features[self.aux_feature])
            losses["loss_sem_seg_aux"] = self.aux_loss_weight * self._loss(aux_logits, targets)
        return None, losses

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        if self.avg_non_ignore:
            return F.cross_entropy(logits, targets, ignore_index=self.ignore_value)  # targets (N, H, W)
        per_pixel = F.cross_entropy(logits, targets, ignore_index=self.ignore_value, reduction="none")
        return per_pixel.mean()  # (N, H, W), 0 where ignored: the mean over every pixel
