"""DenseCL (Wang et al., CVPR 2021, arXiv 2011.09157): MoCo-v2 plus a dense, pixel-level contrast.

Sec. 3.2: a dense projection head on the un-pooled C5 map gives an S x S grid of vectors per view.
Sec. 3.3: for each query position the positive is the key vector at the key position whose backbone
feature is most similar (cosine, argmax); negatives are pooled dense keys of past images (`queue_dense`,
its own pointer). Eq. 4: loss = (1 - lambda) * L_global + lambda * L_dense; view 1 is the query and
view 2 the key (not symmetrised). Optionally lambda is 0 for the first LAMBDA_WARMUP_ITERS iterations.
"""

from typing import ClassVar

import torch

from ..losses import dense_info_nce, info_nce, match_dense
from ..modules import DenseHead, Encoder, GlobalHead, ResNetTrunk
from .base import MomentumContrast
from .mocov2 import common_kwargs


class DenseCL(MomentumContrast):
    """Global + dense InfoNCE; queues `queue_global` (global keys) and `queue_dense` (pooled dense keys)."""

    QUEUE_SOURCES: ClassVar[dict[str, str]] = {"queue_global": "global", "queue_dense": "dense_pooled"}

    def __init__(self, encoder_q: Encoder, loss_lambda: float, lambda_warmup_iters: int, **kwargs):
        super().__init__(encoder_q, **kwargs)
        self.loss_lambda = loss_lambda
        self.lambda_warmup_iters = lambda_warmup_iters

    @classmethod
    def from_config(cls, cfg) -> "DenseCL":
        backbone = ResNetTrunk(cfg.MODEL.ARCH)
        c5, hidden, dim = (
            backbone.out_channels,
            cfg.MODEL.HIDDEN_DIM or backbone.out_channels,
            cfg.MODEL.FEAT_DIM,
        )
        heads = {
            "global_head": GlobalHead(c5, hidden, dim),
            "dense_head": DenseHead(c5, hidden, dim, cfg.MODEL.DENSECL.GRID_SIZE),
        }
        return cls(
            Encoder(backbone, heads),
            loss_lambda=cfg.MODEL.DENSECL.LAMBDA,
            lambda_warmup_iters=cfg.MODEL.DENSECL.LAMBDA_WARMUP_ITERS,
            **common_kwargs(cfg),
        )

    def current_lambda(self) -> float:
        return 0.0 if self.current_iter < self.lambda_warmup_iters else self.loss_lambda

    def compute_losses(self, query, keys) -> dict[str, torch.Tensor]:
        loss_global = info_nce(query["global"], keys["global"], self.queue_global.queue, self.temperature)
        with torch.no_grad():
            match_idx = match_dense(query["c5_grid"], keys["c5_grid"])  # (N, S*S)
        loss_dense = dense_info_nce(
            query["dense"], keys["dense"], match_idx, self.queue_dense.queue, self.temperature
        )
        lam = self.current_lambda()
        return {
            "loss_global": loss_global,
            "loss_dense": loss_dense,
            "loss": (1.0 - lam) * loss_global + lam * loss_dense,
        }
