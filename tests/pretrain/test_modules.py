"""The ResNet trunk's stem pooling in channels_last is the plain NCHW pooling: values, layout and gradient."""

import pytest
import torch
from torch import nn

from pretrain.modules import ResNetTrunk, max_pool_channels_last


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_pooling_matches_nchw_including_ties(dtype):
    torch.manual_seed(0)
    # Post-ReLU values rounded to one decimal: many zeros and equal maxima, so the argmax tie rule matters.
    x = torch.relu(torch.randn(4, 8, 17, 16)).round(decimals=1).to(dtype)
    grad = torch.randn(4, 8, 9, 8).to(dtype)
    pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    plain, fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = pool(plain)
    out = max_pool_channels_last(pool, fast)
    expected.backward(grad)
    out.backward(grad)
    assert out.is_contiguous() and torch.equal(out, expected)
    assert torch.equal(fast.grad, plain.grad)


def test_trunk_output_is_unchanged_by_the_pooling_layout():
    torch.manual_seed(0)
    trunk = ResNetTrunk("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    reference = trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(trunk.maxpool(
        trunk.relu(trunk.bn1(trunk.conv1(x)))
    )))))  # fmt: skip
    assert torch.equal(trunk(x), reference)
