"""DenseCL (Wang et al., CVPR 2021, arXiv 2011.09157): MoCo-v2 plus a dense, pixel-level contrast.

Sec. 3.2: a dense projection head on the C5 map (pooled to S x S) gives an S x S grid of vectors per view.
Sec. 3.3: for each query position the positive is the key vector at the key position whose backbone
feature is most similar (cosine, argmax); negatives are pooled dense keys of past images (`queue_dense`,
its own pointer). Eq. 4: loss = (1 - lambda) * L_global + lambda * L_dense; view 1 is the query and
view 2 the key (not symmetrised). Optionally lambda is 0 for the first LAMBDA_WARMUP_ITERS iterations.
Ablation (MODEL.DENSECL.MATCHING geometry): the positive is instead the key cell that shows the same
image point, found from the two views' known crop boxes and flips (`losses.match_geometric`).
"""

from typing import ClassVar

import torch

from ..errors import PretrainError
from ..losses import dense_info_nce, info_nce, match_dense, match_geometric
from ..modules import DenseHead, Encoder, GlobalHead, ResNetTrunk
from .base import MomentumContrast
from .mocov2 import common_kwargs

MATCHINGS = ("feature", "geometry")  # MODEL.DENSECL.MATCHING values


class DenseCL(MomentumContrast):
    """Global + dense InfoNCE; queues `queue_global` (global keys) and `queue_dense` (pooled dense keys)."""

    QUEUE_SOURCES: ClassVar[dict[str, str]] = {"queue_global": "global", "queue_dense": "dense_pooled"}

    def __init__(
        self,
        encoder_q: Encoder,
        loss_lambda: float,
        lambda_warmup_iters: int,
        matching: str = "feature",
        **kwargs,
    ):
        if matching not in MATCHINGS:
            raise PretrainError(
                f"MODEL.DENSECL.MATCHING {matching!r} is unknown; expected one of {', '.join(MATCHINGS)}."
            )
        super().__init__(encoder_q, **kwargs)
        self.loss_lambda = loss_lambda
        self.lambda_warmup_iters = lambda_warmup_iters
        self.matching = matching

    @classmethod
    def from_config(cls, cfg) -> "DenseCL":
        backbone = ResNetTrunk(cfg.MODEL.ARCH)
        c5, hidden, dim = (
            backbone.out_channels,
            cfg.MODEL.HIDDEN_DIM or backbone.out_channels,
            cfg.MODEL.FEAT_DIM,
        )
        heads = {
            "global_head": GlobalHead(c5, hidden, dim, cfg.MODEL.HEAD_INIT),
            "dense_head": DenseHead(c5, hidden, dim, cfg.MODEL.DENSECL.GRID_SIZE),
        }
        return cls(
            Encoder(backbone, heads),
            loss_lambda=cfg.MODEL.DENSECL.LAMBDA,
            lambda_warmup_iters=cfg.MODEL.DENSECL.LAMBDA_WARMUP_ITERS,
            matching=cfg.MODEL.DENSECL.MATCHING,
            **common_kwargs(cfg),
        )

    def current_lambda(self) -> float:
        return 0.0 if self.current_iter < self.lambda_warmup_iters else self.loss_lambda

    @torch.no_grad()
    def match(self, query, keys, view_params: torch.Tensor | None) -> torch.Tensor:
        """Key position paired with each query position, (N, S*S), by MODEL.DENSECL.MATCHING."""
        if self.matching == "feature":
            return match_dense(query["c5_grid"], keys["c5_grid"])
        n = query["dense"].shape[0]
        if view_params is None or tuple(view_params.shape) != (n, 2, 5):
            got = "none" if view_params is None else f"shape {tuple(view_params.shape)}"
            raise PretrainError(
                f"MODEL.DENSECL.MATCHING is 'geometry' but the batch has no valid view_params (expected "
                f"({n}, 2, 5) crop boxes and flips of the query and key views, got {got}). Build the data "
                "with pretrain.data.build_dataset (it adds them for this setting) and pass them as "
                "model(view_q, view_k, view_params=...), or set MODEL.DENSECL.MATCHING feature."
            )
        s = self.encoder_q.dense_head.grid_size
        return match_geometric(view_params[:, 0], view_params[:, 1], s, s)

    def compute_losses(self, query, keys, view_params: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`view_params` (N, 2, 5): crop box and flip of the query (row 0) and key view; geometry only."""
        loss_global = info_nce(query["global"], keys["global"], self.queue_global.queue, self.temperature)
        match_idx = self.match(query, keys, view_params)  # (N, S*S)
        loss_dense = dense_info_nce(
            query["dense"], keys["dense"], match_idx, self.queue_dense.queue, self.temperature
        )
        lam = self.current_lambda()
        return {
            "loss_global": loss_global,
            "loss_dense": loss_dense,
            "loss": (1.0 - lam) * loss_global + lam * loss_dense,
        }
