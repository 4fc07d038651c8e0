"""The pretraining optimizer: LARS steps, SGD for 1-D parameters, momentum, and the config switch."""

import pytest
import torch

from pretrain.config import load_cfg
from pretrain.errors import PretrainError
from pretrain.optim import LARS, build_optimizer

LR, MOMENTUM, WD, TRUST = 0.5, 0.9, 1e-4, 0.1


def _param(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(*shape, generator=g))
    p.grad = torch.randn(*shape, generator=g)
    return p


def test_a_weight_tensor_steps_lr_times_trust_times_its_norm():
    """The first step of a conv weight is lr * trust * ||w|| long, along -(g + wd * w), whatever ||g||."""
    for grad_scale in (1e-6, 1.0, 1e6):
        w = _param(8, 4, 3, 3)
        w.grad.mul_(grad_scale)
        before, d = w.detach().clone(), w.grad + WD * w.detach()
        LARS([w], LR, MOMENTUM, WD, TRUST).step()
        step = before - w.detach()
        torch.testing.assert_close(step.norm(), LR * TRUST * before.norm())
        torch.testing.assert_close(step / step.norm(), d / d.norm())


def test_one_dimensional_parameters_take_plain_sgd_steps():
    """BatchNorm affine parameters and biases: the same three steps as torch's SGD (momentum, decay)."""
    ours, ref = _param(16), _param(16)
    lars = LARS([ours], LR, MOMENTUM, WD, TRUST)
    sgd = torch.optim.SGD([ref], lr=LR, momentum=MOMENTUM, weight_decay=WD)
    for seed in range(3):
        grad = torch.randn(16, generator=torch.Generator().manual_seed(seed + 10))
        ours.grad, ref.grad = grad.clone(), grad.clone()
        lars.step()
        sgd.step()
    torch.testing.assert_close(ours, ref)


def test_momentum_accumulates_the_scaled_steps():
    w = _param(4, 4)
    lars = LARS([w], LR, MOMENTUM, 0.0, TRUST)
    w0 = w.detach().clone()
    d1 = w.grad * TRUST * w0.norm() / w.grad.norm()
    lars.step()
    w1 = w.detach().clone()
    w.grad = torch.ones(4, 4)
    d2 = w.grad * TRUST * w1.norm() / w.grad.norm()
    lars.step()
    torch.testing.assert_close(w.detach(), w1 - LR * (MOMENTUM * d1 + d2))


def test_a_zero_weight_tensor_takes_the_plain_step():
    """||w|| = 0 would freeze the tensor for good; it takes lr * (g + wd * w) instead."""
    w = torch.nn.Parameter(torch.zeros(3, 3))
    w.grad = torch.full((3, 3), 2.0)
    LARS([w], LR, MOMENTUM, WD, TRUST).step()
    torch.testing.assert_close(w.detach(), torch.full((3, 3), -LR * 2.0))


def test_the_config_chooses_the_optimizer():
    params = [_param(4, 4)]

    def build(*opts):
        return build_optimizer(load_cfg(None, list(opts)), params, 0.1)

    sgd = build()
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["fused"]
    lars = build("SOLVER.OPTIMIZER", "lars", "SOLVER.LARS_TRUST_COEFFICIENT", "0.1")
    assert isinstance(lars, LARS) and lars.defaults["trust_coefficient"] == 0.1
    with pytest.raises(PretrainError, match=r"OPTIMIZER 'adam' is unknown; use one of \('sgd', 'lars'\)"):
        build("SOLVER.OPTIMIZER", "adam")
    with pytest.raises(PretrainError, match=r"LARS_TRUST_COEFFICIENT must be > 0, got 0\.0"):
        build("SOLVER.OPTIMIZER", "lars", "SOLVER.LARS_TRUST_COEFFICIENT", "0.0")
