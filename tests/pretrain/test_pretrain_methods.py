"""Momentum contrast mechanics: key path, EMA, queues, DenseCL vs MoCo-v2, grid sizes, learning."""

import pytest
import torch
from pretrain_testutils import tiny_cfg

from pretrain.methods import DenseCL, MoCoV2, build_model
from pretrain.modules import FeatureQueue


def make(method="densecl", seed=0, **overrides):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(method, **overrides)).train()


def views(n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randn(n, 3, size, size, generator=g)


def test_state_dict_layout():
    keys = make().state_dict().keys()
    assert "encoder_q.backbone.conv1.weight" in keys
    assert "encoder_q.backbone.layer4.1.bn2.running_var" in keys
    assert not any(k.startswith("encoder_q.backbone.fc") for k in keys)
    assert any(k.startswith("encoder_q.global_head.") for k in keys)
    assert any(k.startswith("encoder_q.dense_head.") for k in keys)
    assert {"queue_global.queue", "queue_global.ptr", "queue_dense.queue", "queue_dense.ptr"} <= set(keys)
    assert all(k.replace("encoder_q.", "encoder_k.", 1) in keys for k in keys if k.startswith("encoder_q."))
    assert not any(k.startswith("queue_dense") for k in make("mocov2").state_dict())


@pytest.mark.parametrize("method", ["densecl", "mocov2"])
def test_every_query_param_has_a_frozen_key_twin(method):
    model = make(method)
    q = dict(model.encoder_q.named_parameters())
    k = dict(model.encoder_k.named_parameters())
    assert q.keys() == k.keys()
    assert all(q[n].shape == k[n].shape and q[n] is not k[n] for n in q)
    assert all(p.requires_grad for p in q.values()) and not any(p.requires_grad for p in k.values())
    assert len(model.momentum_pairs()) == len(q)


@pytest.mark.parametrize(
    "param", ["backbone.conv1.weight", "global_head.mlp.2.bias", "dense_head.mlp.2.bias"]
)
def test_keys_come_from_the_momentum_encoder_and_heads(param):
    model = make()
    x = views()[1]
    before = model.encode_keys(x)
    with torch.no_grad():
        dict(model.encoder_q.named_parameters())[param].add_(1.0)
    after_q = model.encode_keys(x)
    for name in ("global", "dense", "dense_pooled"):
        assert torch.equal(before[name], after_q[name]), "keys must not depend on the query encoder"
    with torch.no_grad():
        dict(model.encoder_k.named_parameters())[param].add_(1.0)
    after_k = model.encode_keys(x)
    head_out = {"backbone": "global", "global_head": "global", "dense_head": "dense"}[param.split(".")[0]]
    assert not torch.allclose(before[head_out], after_k[head_out])


def test_ema_update_formula():
    model = make()
    model.momentum = 0.9
    with torch.no_grad():
        for p in model.encoder_q.parameters():
            p.add_(torch.randn_like(p))
    q0 = {n: p.clone() for n, p in model.encoder_q.named_parameters()}
    k0 = {n: p.clone() for n, p in model.encoder_k.named_parameters()}
    model.momentum_update()
    for n, p in model.encoder_k.named_parameters():
        torch.testing.assert_close(p, 0.9 * k0[n] + 0.1 * q0[n])
    for n, p in model.encoder_q.named_parameters():
        assert torch.equal(p, q0[n])


def test_forward_updates_key_encoder_and_queues():
    model = make()
    with torch.no_grad():
        model.encoder_q.dense_head.mlp[0].weight.add_(1.0)
    k_before = model.encoder_k.dense_head.mlp[0].weight.clone()
    out = model(*views())
    assert set(out) == {"loss_global", "loss_dense", "loss"}
    assert not torch.equal(model.encoder_k.dense_head.mlp[0].weight, k_before)
    assert int(model.queue_global.ptr) == 4 and int(model.queue_dense.ptr) == 4


def test_queue_pointer_wraps_around():
    queue = FeatureQueue(size=5, dim=2)
    batches = [torch.full((2, 2), float(i)) for i in range(1, 4)]
    pointers = []
    for b in batches:
        queue.enqueue(b)
        pointers.append(int(queue.ptr))
    assert pointers == [2, 4, 1]
    assert queue.queue[:, 0].tolist() == [3.0, 1.0, 2.0, 2.0, 3.0]  # slot 4 then slot 0
    queue.enqueue(torch.arange(14.0).reshape(7, 2))  # more keys than slots: the newest 5 fill the queue
    assert sorted(queue.queue[:, 0].tolist()) == [4.0, 6.0, 8.0, 10.0, 12.0]


def test_densecl_lambda_zero_equals_mocov2():
    dense = make("densecl", seed=0, **{"MODEL.DENSECL.LAMBDA": 0.0})
    moco = make("mocov2", seed=1)
    missing, unexpected = moco.load_state_dict(
        {k: v for k, v in dense.state_dict().items() if k in moco.state_dict()}, strict=False
    )
    assert not missing and not unexpected
    x_q, x_k = views()
    out_dense, out_moco = dense(x_q, x_k), moco(x_q, x_k)
    assert out_dense["loss_dense"] > 0
    torch.testing.assert_close(out_dense["loss"], out_moco["loss_global"], rtol=0, atol=1e-6)
    torch.testing.assert_close(out_dense["loss_global"], out_moco["loss"], rtol=0, atol=1e-6)


def test_lambda_weighting_and_warmup():
    model = make(**{"MODEL.DENSECL.LAMBDA": 0.3, "MODEL.DENSECL.LAMBDA_WARMUP_ITERS": 5})
    x_q, x_k = views()
    model.set_iteration(4)
    out = model.compute_losses(model.encoder_q(x_q), model.encode_keys(x_k))
    torch.testing.assert_close(out["loss"], out["loss_global"])
    model.set_iteration(5)
    out = model.compute_losses(model.encoder_q(x_q), model.encode_keys(x_k))
    torch.testing.assert_close(out["loss"], 0.7 * out["loss_global"] + 0.3 * out["loss_dense"])


@pytest.mark.parametrize("grid", [1, 3, 5, 7])
def test_any_grid_size_with_64px_input(grid):
    model = make(**{"MODEL.DENSECL.GRID_SIZE": grid})
    x_q, x_k = views(n=2, size=64)
    query = model.encoder_q(x_q)
    assert query["c5"].shape[-2:] == (2, 2)
    assert query["dense"].shape == (2, 16, grid * grid) and query["c5_grid"].shape == (2, 512, grid * grid)
    torch.testing.assert_close(query["dense"].norm(dim=1), torch.ones(2, grid * grid))
    out = model(x_q, x_k)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.encoder_q.dense_head.mlp[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["densecl", "mocov2"])
def test_loss_decreases_on_a_fixed_batch(method):
    """Fixed batch and fixed negatives (queues reset each step, else they fill with this batch's keys)."""
    model = make(method, **{"MODEL.QUEUE_SIZE": 64, "MODEL.DENSECL.GRID_SIZE": 2})
    model.momentum = 0.9
    queues = {name: getattr(model, name).queue.clone() for name in model.QUEUE_SOURCES}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    x_q, x_k = views(n=4, size=64, seed=3)
    losses = []
    for _ in range(8):
        for name, q in queues.items():
            getattr(model, name).queue = q.clone()
        loss = model(x_q, x_k)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_classes_and_factory():
    assert isinstance(make("densecl"), DenseCL) and isinstance(make("mocov2"), MoCoV2)
    sup = build_model(tiny_cfg("supervised"), num_classes=3)
    assert set(sup.export_state_dict()) == set(__import__("torchvision").models.resnet18().state_dict())
    assert sup.export_state_dict()["fc.weight"].shape == (3, 512)
