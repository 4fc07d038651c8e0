"""Shuffle-BN on one process: BatchNorm over sub-batches, so a key's statistics differ from its query's.

MoCo (He et al., CVPR 2020, Sec. 3.3) notes that BN lets a model "cheat" the pretext task: the positive
key is the only key of the current batch among the logits, and the current batch's BN statistics mark it
(queue negatives were normalised with other batches' statistics). With several GPUs each normalises its
own sub-batch and the keys are shuffled across GPUs before the key encoder. On one process the same
effect needs BN statistics per sub-batch (`SplitBatchNorm2d`) plus a local shuffle of the key batch
(`shuffle_sub_batches`); with `num_splits` = 8 and batch 256 this is what 8 GPUs of 32 images compute.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .errors import PretrainError


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics come from `num_splits` disjoint sub-batches.

    Sample i belongs to sub-batch i % num_splits. Running statistics are the mean over sub-batches, so
    the parameters, buffers and evaluation behaviour are those of a plain BatchNorm2d.
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.num_splits
        if not self.training or s == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        if n % s:
            raise PretrainError(
                f"batch of {n} images per process does not split into MODEL.SHUFFLE_BN_SPLITS={s} BN "
                "sub-batches; make SOLVER.BATCH_SIZE a multiple of it (times the number of processes)."
            )
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        running_mean = self.running_mean.repeat(s)  # (s*C,)
        running_var = self.running_var.repeat(s)
        # (N, C, H, W) -> (N/s, s*C, H, W): channel block b holds the samples i with i % s == b
        y = F.batch_norm(
            x.reshape(n // s, s * c, h, w),
            running_mean,
            running_var,
            self.weight.repeat(s),
            self.bias.repeat(s),
            True,
            factor,
            self.eps,
        )
        with torch.no_grad():
            self.running_mean.copy_(running_mean.view(s, c).mean(0))
            self.running_var.copy_(running_var.view(s, c).mean(0))
        return y.reshape(n, c, h, w)


def split_batch_norm(module: nn.Module, num_splits: int) -> nn.Module:
    """`module` with every affine, tracking BatchNorm2d replaced by a SplitBatchNorm2d holding the same
    parameters, buffers, gradient flags and training mode (torchvision ResNets use only such layers)."""
    if type(module) is nn.BatchNorm2d and module.affine and module.track_running_stats:
        split = SplitBatchNorm2d(module.num_features, num_splits, eps=module.eps, momentum=module.momentum)
        split = split.to(module.weight.device)
        split.load_state_dict(module.state_dict())
        split.weight.requires_grad_(module.weight.requires_grad)
        split.bias.requires_grad_(module.bias.requires_grad)
        return split.train(module.training)
    for name, child in module.named_children():
        setattr(module, name, split_batch_norm(child, num_splits))
    return module


def split_encoders_batch_norm(model: nn.Module, num_splits: int) -> nn.Module:
    """Both encoders of a momentum-contrast `model` (query and key, which must normalise alike) with BN
    over `num_splits` sub-batches; converted in place, returned for chaining."""
    model.encoder_q = split_batch_norm(model.encoder_q, num_splits)
    model.encoder_k = split_batch_norm(model.encoder_k, num_splits)
    return model


def shuffle_sub_batches(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The key batch in random order and the index that restores it (`dist.batch_unshuffle` applies it).

    With split BN a key then lands in another sub-batch than its query (with probability 1 - 1/splits),
    as a key shuffled to another GPU does.
    """
    perm = torch.randperm(x.shape[0], device=x.device)
    return x[perm], torch.argsort(perm)
