"""The pretraining optimizer: SGD with momentum (the MoCo-v2 / DenseCL recipe), or LARS for short schedules.

LARS (You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017, Sec. 3) scales the
step of every weight tensor to a fixed fraction of that tensor's norm: the local LR is
`trust_coefficient * ||w|| / ||g + wd * w||`. A convolution followed by BatchNorm is scale invariant, so under
plain SGD its effective LR is `lr / ||w||^2`, and torchvision's (fan-out) Kaiming initialisation gives
`||w||^2 = 2 x in_channels`: the stem (3 input channels) learns ~170x faster than a res5 convolution (512).
A long schedule hides that; 600 iterations do not. Measured on the `tiny` profile (benchmarks/README.md,
`python -m pretrain.weight_drift`): with SGD the self-supervised runs moved res2-res5 by 1.5-5.5% of their
norm and the stem by 30-45%; LARS moves every stage alike. There it raised the frozen-feature probes but
not the fine-tuned results, so `tiny` keeps the recipe's SGD.

Here, as in SimCLR / BYOL / MoCo v3, only tensors of two or more dimensions (convolutions, linear layers)
are adapted; BatchNorm affine parameters and biases take plain SGD steps. Weight decay applies to every
parameter, as in the official MoCo-v2 / DenseCL SGD.
"""

import torch

from .errors import PretrainError

OPTIMIZERS = ("sgd", "lars")


class LARS(torch.optim.Optimizer):
    """Momentum SGD (as PyTorch: buf = m * buf + d; w -= lr * buf) on the LARS-scaled step d."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float, trust_coefficient: float):
        if trust_coefficient <= 0:
            raise PretrainError(f"SOLVER.LARS_TRUST_COEFFICIENT must be > 0, got {trust_coefficient}.")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(params, {**defaults, "trust_coefficient": trust_coefficient})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"])
                if p.ndim > 1:
                    w_norm = torch.linalg.vector_norm(p)
                    d_norm = torch.linalg.vector_norm(d)
                    usable = (w_norm > 0) & (d_norm > 0)  # a zero tensor or a zero step: plain SGD
                    d.mul_(torch.where(usable, group["trust_coefficient"] * w_norm / d_norm, 1.0))
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(cfg, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over `params` with SOLVER.MOMENTUM / WEIGHT_DECAY (and LARS_TRUST_COEFFICIENT)."""
    solver = cfg.SOLVER
    if solver.OPTIMIZER == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=solver.MOMENTUM,
            weight_decay=solver.WEIGHT_DECAY,
            fused=True,  # one pass per update, not foreach's chain of multi-tensor ops (transfer.optimizer)
        )
    if solver.OPTIMIZER == "lars":
        return LARS(params, lr, solver.MOMENTUM, solver.WEIGHT_DECAY, solver.LARS_TRUST_COEFFICIENT)
    raise PretrainError(f"SOLVER.OPTIMIZER {solver.OPTIMIZER!r} is unknown; use one of {OPTIMIZERS}.")
