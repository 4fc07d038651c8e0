"""The fine-tuning optimizer: Detectron2's SGD, with the update of each parameter group fused into one kernel.

Parameter groups (norm and bias weight decay, bias LR factor), momentum, Nesterov, weight decay and gradient
clipping are exactly those of `detectron2.solver.build_optimizer`; only the implementation of the update
changes. Detectron2 asks for torch's `foreach` SGD, a chain of multi-tensor ops that allocates a fresh copy
of every gradient for the weight decay; the fused SGD does the same arithmetic in one pass per group. The
step takes a third of the time (ResNet-18: ~7 ms instead of 17-25 ms on one core of an AMD EPYC); a `tiny`
training iteration, old and new run side by side (2026-12-03): COCO Mask R-CNN 0.524 -> 0.479 s, VOC
Faster R-CNN 0.325 -> 0.307 s, VOC FCN 0.182 -> 0.178 s. The weights agree to the last bit except for rare
elements one rounding step apart (the vector tail of small tensors, e.g. a 21-class score bias;
tests/transfer/test_optimizer.py), so a run differs from one with Detectron2's optimizer only as float noise
does.

Under CUDA AMP with gradient clipping the update stays Detectron2's foreach one: a fused optimizer takes
the gradient scale into its kernel, so torch's GradScaler skips `unscale_` and Detectron2's clipping would
clip gradients that are still scaled (a no-op).
"""

import torch
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping


def build_fused_sgd(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD over `model`'s trainable parameters with Detectron2's groups and `cfg.SOLVER` settings, fused
    (foreach when CUDA AMP and gradient clipping are both on, see the module docstring)."""
    fused = not (cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.CLIP_GRADIENTS.ENABLED)
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    optimizer = torch.optim.SGD(
        params,
        lr=cfg.SOLVER.BASE_LR,
        momentum=cfg.SOLVER.MOMENTUM,
        nesterov=cfg.SOLVER.NESTEROV,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        fused=fused,
        foreach=not fused,
    )
    return maybe_add_gradient_clipping(cfg, optimizer)
