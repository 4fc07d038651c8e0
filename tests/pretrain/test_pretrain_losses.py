"""The three loss functions against slow, obviously-correct loop references."""

import math

import pytest
import torch
import torch.nn.functional as F

from pretrain.losses import dense_info_nce, info_nce, match_dense


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(
        torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1 if len(shape) == 2 else 1
    )


def ref_info_nce(q, k, queue, t):
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[i]) / t] + [float(q[i] @ queue[j]) / t for j in range(queue.shape[0])]
        total += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    return total / q.shape[0]


def ref_match(qf, kf):
    qf, kf = qf.flatten(2), kf.flatten(2)
    n, _, p = qf.shape
    out = torch.empty(n, p, dtype=torch.long)
    for b in range(n):
        for i in range(p):
            sims = [
                float(qf[b, :, i] @ kf[b, :, j] / (qf[b, :, i].norm() * kf[b, :, j].norm()))
                for j in range(kf.shape[2])
            ]
            out[b, i] = max(range(len(sims)), key=sims.__getitem__)
    return out


def ref_dense(qd, kd, idx, queue, t):
    n, _, p = qd.shape
    total = 0.0
    for b in range(n):
        for i in range(p):
            q = qd[b, :, i]
            logits = [float(q @ kd[b, :, int(idx[b, i])]) / t] + [
                float(q @ queue[j]) / t for j in range(len(queue))
            ]
            total += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    return total / (n * p)


@pytest.mark.parametrize("n,c,k", [(1, 4, 1), (3, 8, 5), (4, 16, 32)])
@pytest.mark.parametrize("t", [0.07, 0.2, 1.0])
def test_info_nce_matches_loop(n, c, k, t):
    q, key, queue = unit(n, c, seed=1), unit(n, c, seed=2), unit(k, c, seed=3)
    got = info_nce(q, key, queue, t)
    assert got.item() == pytest.approx(ref_info_nce(q.double(), key.double(), queue.double(), t), rel=1e-5)


def test_info_nce_positive_is_index_zero():
    q = unit(2, 8, seed=4)
    queue = unit(6, 8, seed=5)
    assert info_nce(q, q, queue, 0.2) < info_nce(q, -q, queue, 0.2)


@pytest.mark.parametrize("shape", [(2, 5, 3, 3), (3, 4, 2, 2), (2, 6, 1, 1)])
def test_match_dense_matches_loop_4d_and_flat(shape):
    g = torch.Generator().manual_seed(0)
    # un-normalised, varied norms: the match must use cosine, not the dot product
    qf = torch.randn(*shape, generator=g) * torch.rand(shape[0], 1, *shape[2:], generator=g) * 10
    kf = torch.randn(*shape, generator=g) * torch.rand(shape[0], 1, *shape[2:], generator=g) * 10
    expected = ref_match(qf, kf)
    assert torch.equal(match_dense(qf, kf), expected)
    assert torch.equal(match_dense(qf.flatten(2), kf.flatten(2)), expected)
    assert match_dense(qf, kf).dtype == torch.long


def test_match_dense_uses_cosine_not_dot():
    q = torch.tensor([[[1.0], [0.0]]])  # (1, 2, 1): one query position pointing along x
    k = torch.tensor([[[1.0, 10.0], [0.0, 100.0]]])  # position 0 = (1, 0); position 1 = (10, 100)
    assert match_dense(q, k).tolist() == [[0]]


@pytest.mark.parametrize("n,c,p,k", [(1, 4, 1, 3), (2, 8, 4, 5), (3, 6, 9, 7)])
@pytest.mark.parametrize("t", [0.1, 0.2, 0.5])
def test_dense_info_nce_matches_loop(n, c, p, k, t):
    qd, kd, queue = unit(n, c, p, seed=1), unit(n, c, p, seed=2), unit(k, c, seed=3)
    idx = torch.randint(0, p, (n, p), generator=torch.Generator().manual_seed(4))
    got = dense_info_nce(qd, kd, idx, queue, t)
    assert got.item() == pytest.approx(ref_dense(qd, kd, idx, queue, t), rel=1e-5)


def test_dense_info_nce_uses_the_matched_position():
    qd = unit(1, 8, 4, seed=6)
    queue = unit(5, 8, seed=7)
    identity = torch.arange(4).unsqueeze(0)
    shifted = identity.roll(1, dims=1)
    assert dense_info_nce(qd, qd, identity, queue, 0.2) < dense_info_nce(qd, qd, shifted, queue, 0.2)


def test_losses_stay_fp32_inside_the_training_autocast():
    """The step runs under bfloat16 autocast on CPU; the similarities and logits must not follow it."""
    q, k, queue = (unit(*shape, seed=s).float() for s, shape in enumerate([(8, 16), (8, 16), (64, 16)]))
    q_dense, k_dense = unit(4, 16, 9, seed=3).float(), unit(4, 16, 9, seed=4).float()
    match_idx = match_dense(q_dense, k_dense)

    def losses():
        return info_nce(q, k, queue, 0.2), dense_info_nce(q_dense, k_dense, match_idx, queue, 0.2)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = losses()
        match_under_autocast = match_dense(q_dense, k_dense)
    assert all(torch.equal(a, b) for a, b in zip(under_autocast, losses()))
    assert torch.equal(match_under_autocast, match_idx)
