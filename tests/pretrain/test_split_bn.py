"""split_bn.py: per-sub-batch BN statistics, plain-BN parameters and buffers, the local key shuffle."""

import pytest
import torch
from torch import nn

from pretrain import dist
from pretrain.errors import PretrainError
from pretrain.split_bn import SplitBatchNorm2d, shuffle_sub_batches, split_batch_norm


def _bn_pair(num_splits: int) -> tuple[nn.BatchNorm2d, SplitBatchNorm2d]:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    nn.init.normal_(plain.weight)
    nn.init.normal_(plain.bias)
    return plain, split_batch_norm(plain, num_splits)


def test_each_sub_batch_is_normalised_with_its_own_statistics():
    plain, split = _bn_pair(4)
    x = torch.randn(8, 3, 5, 5) * torch.arange(1.0, 9.0).view(8, 1, 1, 1)  # (N, C, H, W), samples differ
    y = split(x)
    for b in range(4):  # sub-batch b = samples b, b + 4
        alone = nn.BatchNorm2d(3).train()
        alone.load_state_dict(plain.state_dict())
        assert torch.allclose(y[b::4], alone(x[b::4]), atol=1e-5)
    whole = plain.train()(x)
    assert not torch.allclose(y, whole, atol=1e-3)


def test_running_statistics_are_the_mean_over_sub_batches_and_eval_is_plain_bn():
    plain, split = _bn_pair(2)
    x = torch.randn(6, 3, 4, 4) + torch.tensor([0.0, 5.0] * 3).view(6, 1, 1, 1)
    split(x)
    halves = [x[b::2] for b in range(2)]
    momentum = plain.momentum
    expected_mean = sum((1 - momentum) * 0.0 + momentum * h.mean(dim=(0, 2, 3)) for h in halves) / 2
    n = halves[0].numel() / 3
    expected_var = (
        sum(
            (1 - momentum) * 1.0 + momentum * h.var(dim=(0, 2, 3), unbiased=False) * n / (n - 1)
            for h in halves
        )
        / 2
    )
    assert torch.allclose(split.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(split.running_var, expected_var, atol=1e-4)
    assert int(split.num_batches_tracked) == 1
    plain.load_state_dict(split.state_dict())
    assert torch.equal(split.eval()(x), plain.eval()(x))


def test_one_split_is_plain_batch_norm():
    plain, split = _bn_pair(1)
    x = torch.randn(4, 3, 3, 3)
    assert torch.allclose(split.train()(x), plain.train()(x.clone()), atol=1e-6)


def test_conversion_keeps_keys_values_and_frozen_parameters():
    from torchvision.models import resnet18

    model = resnet18()
    for p in model.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = split_batch_norm(model, 4)
    after = converted.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    bns = [m for m in converted.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, SplitBatchNorm2d) and m.num_splits == 4 for m in bns)
    assert not any(p.requires_grad for p in converted.parameters())


def test_batch_that_does_not_split_is_a_clear_error():
    _, split = _bn_pair(4)
    with pytest.raises(PretrainError, match=r"MODEL\.SHUFFLE_BN_SPLITS=4"):
        split(torch.randn(6, 3, 2, 2))


def test_key_shuffle_on_one_process_is_undone_by_batch_unshuffle():
    x = torch.arange(64.0).reshape(32, 2)
    torch.manual_seed(0)
    shuffled, idx = shuffle_sub_batches(x)
    assert not torch.equal(shuffled, x)  # a permutation of 32 rows is the identity with chance 1/32!
    assert torch.equal(shuffled.sort(dim=0).values, x)
    assert torch.equal(dist.batch_unshuffle(shuffled * 2, idx), x * 2)  # an "encoder" on the shuffled keys
