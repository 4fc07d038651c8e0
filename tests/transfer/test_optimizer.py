"""The fused fine-tuning SGD is Detectron2's SGD: the same parameter groups and, up to rounding, weights."""

import copy

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from transfer_testutils import CONFIGS, depth_opts, make_cfg

from transfer.optimizer import build_fused_sgd
from transfer.train_net import Trainer

GROUP_KEYS = ("lr", "momentum", "nesterov", "weight_decay", "dampening")


def _cfg(*opts):
    # Bias LR factor and norm / bias weight decay that differ from the base ones, so that the groups differ.
    groups = (
        "SOLVER.BIAS_LR_FACTOR",
        "2.0",
        "SOLVER.WEIGHT_DECAY_NORM",
        "0.0",
        "SOLVER.WEIGHT_DECAY_BIAS",
        "0",
    )
    return make_cfg(str(CONFIGS / "pascal_voc_R_50_C4_24k.yaml"), *depth_opts(18), *groups, *opts)


def _groups(optimizer, model) -> list[tuple]:
    """(index in model.parameters(), hyper-parameters) for every parameter, sorted by index: how the
    optimizer cuts its groups does not matter."""
    index = {id(p): i for i, p in enumerate(model.parameters())}
    rows = [(index[id(p)], *(g[k] for k in GROUP_KEYS)) for g in optimizer.param_groups for p in g["params"]]
    return sorted(rows)


def _train(model, optimizer, steps: int) -> None:
    torch.manual_seed(1)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn_like(p) if p.requires_grad else None
        optimizer.step()


def test_trainer_builds_the_fused_sgd():
    optimizer = Trainer.build_optimizer(_cfg(), torch.nn.Linear(2, 2))
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(group["fused"] and not group["foreach"] for group in optimizer.param_groups)


def test_amp_with_clipping_keeps_the_foreach_update_so_clipping_sees_unscaled_gradients():
    cfg = _cfg("SOLVER.AMP.ENABLED", "True", "SOLVER.CLIP_GRADIENTS.ENABLED", "True")
    optimizer = build_fused_sgd(cfg, torch.nn.Linear(2, 2))
    assert all(group["foreach"] and not group["fused"] for group in optimizer.param_groups)
    assert not getattr(optimizer, "_step_supports_amp_scaling", False)  # GradScaler unscales before the step


@pytest.mark.parametrize("clip", [False, True])
def test_same_groups_and_weights_as_detectron2s_sgd(clip):
    cfg = _cfg("SOLVER.CLIP_GRADIENTS.ENABLED", str(clip), "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "0.5")
    torch.manual_seed(0)
    reference_model = build_model(cfg)
    fused_model = copy.deepcopy(reference_model)
    reference, fused = build_optimizer(cfg, reference_model), build_fused_sgd(cfg, fused_model)

    ref_rows = _groups(reference, reference_model)
    assert _groups(fused, fused_model) == ref_rows
    assert len({row[1:] for row in ref_rows}) >= 3  # base, bias (2x LR, no decay), norm (no decay) groups
    assert type(fused).__name__ == type(reference).__name__  # the clipping wrapper, when enabled

    _train(reference_model, reference, steps=3)
    _train(fused_model, fused, steps=3)
    pairs = [
        (name, a, b) for (name, a), b in zip(reference_model.named_parameters(), fused_model.parameters())
    ]
    for name, a, b in pairs:
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8, msg=name)  # float32 rounding, not an algorithm
    assert sum(torch.equal(a, b) for _, a, b in pairs) >= 0.9 * len(pairs)  # nearly all bit for bit
