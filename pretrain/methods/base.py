"""Momentum contrast skeleton shared by MoCo-v2 and DenseCL (MoCo, He et al. CVPR 2020, Sec. 3.2-3.3).

A subclass builds the query encoder's heads and implements ONE hook, `compute_losses`. Everything else
is here: the key encoder (a deep copy, no gradients), its EMA over every query parameter (pairs derived
by name, so a new head cannot be forgotten), shuffle-BN for the keys, and the queues.
"""

import copy
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from .. import dist
from ..modules import Encoder, FeatureQueue
from ..split_bn import shuffle_sub_batches


class MomentumContrast(nn.Module, ABC):
    """Query encoder `encoder_q`, momentum key encoder `encoder_k`, and `queue_<name>` FeatureQueues.

    Subclasses set QUEUE_SOURCES = {queue attribute: key output name}; after each step the gathered
    key outputs are enqueued. `forward(view_q, view_k)` returns the hook's losses plus `loss`, the total;
    extra per-sample batch tensors given as keywords (DenseCL's `view_params`) go on to the hook.
    """

    QUEUE_SOURCES: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        encoder_q: Encoder,
        queue_size: int,
        feat_dim: int,
        momentum: float,
        temperature: float,
        shuffle_bn: bool,
    ):
        super().__init__()
        self.encoder_q = encoder_q
        self.encoder_k = copy.deepcopy(encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        for queue_name in self.QUEUE_SOURCES:
            self.add_module(queue_name, FeatureQueue(queue_size, feat_dim))
        self.momentum = momentum
        self.temperature = temperature
        self.shuffle_bn = shuffle_bn
        self.current_iter = 0

    def momentum_pairs(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """(query, key) parameter pairs matched by name over the backbone and every head."""
        key_params = dict(self.encoder_k.named_parameters())
        return [(p, key_params[name]) for name, p in self.encoder_q.named_parameters()]

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m * theta_k + (1 - m) * theta_q (MoCo Eq. 2)."""
        pairs = self.momentum_pairs()
        key_params = [k for _, k in pairs]
        torch._foreach_mul_(key_params, self.momentum)
        torch._foreach_add_(key_params, [q.detach() for q, _ in pairs], alpha=1.0 - self.momentum)

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """What model_final.pth keeps: every tensor (both encoders and the queues; transfer.convert takes
        `encoder_q.backbone.*`)."""
        return self.state_dict()

    def set_iteration(self, iteration: int) -> None:
        """Called by the engine before each step (for schedules inside a method: DenseCL's lambda warm-up)."""
        self.current_iter = iteration

    @torch.no_grad()
    def encode_keys(self, view_k: torch.Tensor) -> dict[str, torch.Tensor]:
        """Key outputs from the momentum encoder with shuffle-BN: keys permuted across processes under DDP,
        across the BN sub-batches of split_bn.py on one process."""
        idx_unshuffle = None
        if self.shuffle_bn:
            shuffle = dist.batch_shuffle if dist.is_distributed() else shuffle_sub_batches
            view_k, idx_unshuffle = shuffle(view_k)
        keys = self.encoder_k(view_k)
        keys.pop("c5")  # the raw key C5 map is used by no loss: do not gather it across processes
        return {name: dist.batch_unshuffle(t, idx_unshuffle) for name, t in keys.items()}

    def forward(
        self, view_q: torch.Tensor, view_k: torch.Tensor, **batch_extras: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        query = self.encoder_q(view_q)
        if self.training:
            self.momentum_update()
        keys = self.encode_keys(view_k)
        losses = self.compute_losses(query, keys, **batch_extras)
        if self.training:
            for queue_name, source in self.QUEUE_SOURCES.items():
                getattr(self, queue_name).enqueue(dist.all_gather(keys[source].detach()))
        return losses

    @abstractmethod
    def compute_losses(
        self, query: dict[str, torch.Tensor], keys: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Losses from encoder outputs (before this step's keys are enqueued); must include `loss`."""
