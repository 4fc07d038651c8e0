"""Projection heads as the official DenseCL neck computes them: pooling order and initialisation."""

import math

import pytest
import torch
import torch.nn.functional as F

from pretrain.config import get_cfg
from pretrain.errors import PretrainError
from pretrain.methods import build_model
from pretrain.modules import DenseHead, GlobalHead


def test_dense_head_projects_the_c5_grid_pooled_below_the_native_size():
    torch.manual_seed(0)
    head = DenseHead(in_channels=8, hidden_dim=16, out_dim=4, grid_size=2)
    c5 = torch.randn(3, 8, 6, 6)
    out = head(c5)
    grid = F.adaptive_avg_pool2d(c5, 2)  # (3, 8, 2, 2): pooled before the 1x1 convs
    projected = head.mlp(grid)  # (3, 4, 2, 2)
    torch.testing.assert_close(out["c5_grid"], grid.flatten(2))
    torch.testing.assert_close(out["dense"], F.normalize(projected.flatten(2), dim=1))
    torch.testing.assert_close(out["dense_pooled"], F.normalize(projected.mean(dim=(2, 3)), dim=1))
    # Projecting the full 6x6 map and pooling after would differ: the ReLU does not commute with the mean.
    pooled_after = F.adaptive_avg_pool2d(head.mlp(c5), 2).flatten(2)
    assert not torch.allclose(out["dense"], F.normalize(pooled_after, dim=1), atol=1e-4)


def test_dense_head_at_the_native_size_projects_every_c5_position():
    torch.manual_seed(0)
    head = DenseHead(in_channels=8, hidden_dim=16, out_dim=4, grid_size=3)
    c5 = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(head(c5)["dense"], F.normalize(head.mlp(c5).flatten(2), dim=1))


def test_kaiming_head_init_is_normal_fan_in_with_zero_bias():
    torch.manual_seed(0)
    head = GlobalHead(in_channels=1024, hidden_dim=1024, out_dim=128, init="kaiming")
    for fc in (head.mlp[0], head.mlp[2]):
        assert torch.count_nonzero(fc.bias) == 0
        expected_std = math.sqrt(2.0 / fc.in_features)  # ReLU gain over fan_in
        assert fc.weight.std().item() == pytest.approx(expected_std, rel=0.02)
    default = GlobalHead(in_channels=1024, hidden_dim=1024, out_dim=128, init="pytorch")
    # nn.Linear's default: uniform in +-1/sqrt(fan_in), std 1/sqrt(3 fan_in), non-zero bias.
    assert default.mlp[0].weight.std().item() == pytest.approx(1 / math.sqrt(3 * 1024), rel=0.02)
    assert torch.count_nonzero(default.mlp[0].bias) > 0


@pytest.mark.parametrize("method", ["densecl", "mocov2"])
def test_head_init_comes_from_the_config_and_unknown_values_are_named(method):
    cfg = get_cfg()
    cfg.MODEL.METHOD, cfg.MODEL.ARCH, cfg.MODEL.HIDDEN_DIM, cfg.MODEL.QUEUE_SIZE = method, "resnet18", 64, 8
    model = build_model(cfg)
    assert torch.count_nonzero(model.encoder_q.global_head.mlp[0].bias) == 0
    assert torch.equal(model.encoder_k.global_head.mlp[0].weight, model.encoder_q.global_head.mlp[0].weight)
    cfg.MODEL.HEAD_INIT = "pytorch"
    assert torch.count_nonzero(build_model(cfg).encoder_q.global_head.mlp[0].bias) > 0
    cfg.MODEL.HEAD_INIT = "xavier"
    with pytest.raises(PretrainError, match=r"MODEL\.HEAD_INIT 'xavier' is unknown; expected one of kaiming"):
        build_model(cfg)
