"""MoCo-v2 (Chen et al., arXiv 2003.04297): MoCo with an MLP projection head and stronger augmentation."""

from typing import ClassVar

import torch

from ..losses import info_nce
from ..modules import Encoder, GlobalHead, ResNetTrunk
from .base import MomentumContrast


class MoCoV2(MomentumContrast):
    """Global InfoNCE between the query and key projections, negatives from `queue_global`."""

    QUEUE_SOURCES: ClassVar[dict[str, str]] = {"queue_global": "global"}

    @classmethod
    def from_config(cls, cfg) -> "MoCoV2":
        backbone = ResNetTrunk(cfg.MODEL.ARCH)
        hidden = cfg.MODEL.HIDDEN_DIM or backbone.out_channels
        head = GlobalHead(backbone.out_channels, hidden, cfg.MODEL.FEAT_DIM, cfg.MODEL.HEAD_INIT)
        heads = {"global_head": head}
        return cls(Encoder(backbone, heads), **common_kwargs(cfg))

    def compute_losses(self, query, keys) -> dict[str, torch.Tensor]:
        loss = info_nce(query["global"], keys["global"], self.queue_global.queue, self.temperature)
        return {"loss_global": loss, "loss": loss}


def common_kwargs(cfg) -> dict:
    """Constructor arguments shared by every momentum-contrast method."""
    return {
        "queue_size": cfg.MODEL.QUEUE_SIZE,
        "feat_dim": cfg.MODEL.FEAT_DIM,
        "momentum": cfg.MODEL.MOMENTUM,
        "temperature": cfg.MODEL.TEMPERATURE,
        "shuffle_bn": cfg.MODEL.SHUFFLE_BN,
    }
