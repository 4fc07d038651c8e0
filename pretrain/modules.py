"""Building blocks: ResNet trunk (C5 map out), projection heads, and the negative-key queue."""

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .errors import PretrainError

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without avgpool/fc; forward returns the C5 (res5) map (N, C, H/32, W/32).

    Parameter names are exactly torchvision's (conv1.weight, bn1.*, layer1.0.conv1.weight, ...), so a
    state dict converts to Detectron2 with the usual renaming.
    """

    def __init__(self, arch: str):
        super().__init__()
        if arch not in ARCHS:
            raise PretrainError(f"MODEL.ARCH {arch!r} is not supported; expected one of {', '.join(ARCHS)}.")
        net = torchvision.models.get_model(arch, weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))
        self.out_channels = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = max_pool_channels_last(self.maxpool, self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, C5, H/32, W/32)


def max_pool_channels_last(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`pool(x)` for an NCHW CPU tensor, computed in channels_last and returned as NCHW.

    torch's CPU max pooling is vectorised only for channels_last: on the stem map of a 64 px batch of 32
    (32, 64, 32, 32) the forward takes ~15 ms in NCHW and ~1.2 ms in channels_last (one core of an AMD
    EPYC, 2026-12-03), ~5% of a pretraining step. The values and the argmax (hence the gradient) are the
    same (tests/pretrain/test_modules.py).
    """
    if x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
        return pool(x)
    return pool(x.contiguous(memory_format=torch.channels_last)).contiguous()


HEAD_INITS = ("kaiming", "pytorch")  # MODEL.HEAD_INIT values


class GlobalHead(nn.Module):
    """MoCo-v2 projection: global average pool -> FC -> ReLU -> FC, output L2-normalised (no BN).

    `init` "kaiming": both FC layers Kaiming-normal (fan_in, ReLU gain) with zero bias, as the DenseCL
    authors' code (OpenSelfSup) initialises the projection of DenseCL and of its MoCo-v2 baseline;
    "pytorch": nn.Linear's default, as facebookresearch/moco.
    """

    def __init__(self, in_channels: int, hidden_dim: int, out_dim: int, init: str = "kaiming"):
        super().__init__()
        if init not in HEAD_INITS:
            known = ", ".join(HEAD_INITS)
            raise PretrainError(f"MODEL.HEAD_INIT {init!r} is unknown; expected one of {known}.")
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )
        if init == "kaiming":
            for fc in (self.mlp[0], self.mlp[2]):
                nn.init.kaiming_normal_(fc.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(fc.bias)

    def forward(self, c5: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = c5.mean(dim=(2, 3))  # (N, C5)
        return {"global": F.normalize(self.mlp(pooled), dim=1)}  # (N, D)


class DenseHead(nn.Module):
    """DenseCL dense projection (Sec. 3.2): 1x1 conv -> ReLU -> 1x1 conv on the C5 grid (no BN).

    C5 is first average-pooled to S x S (adaptive, so any S works for any input size; a no-op at the
    native size, S = 7 for 224 px), then projected, as the official DenseCL neck does. Outputs:
    `dense` (N, D, S*S) L2-normalised per position; `dense_pooled` (N, D) the spatial mean of the
    projected grid, L2-normalised (what the dense queue stores); `c5_grid` (N, C5, S*S) the pooled
    backbone features used to match positions between views. The 1x1 convs keep PyTorch's default
    initialisation under every MODEL.HEAD_INIT, as in the official code (it initialises only FC layers).
    """

    def __init__(self, in_channels: int, hidden_dim: int, out_dim: int, grid_size: int):
        super().__init__()
        if grid_size < 1:
            raise PretrainError(f"MODEL.DENSECL.GRID_SIZE must be >= 1, got {grid_size}.")
        self.grid_size = grid_size
        self.mlp = nn.Sequential(
            nn.Conv2d(in_channels, hidden_dim, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden_dim, out_dim, 1)
        )

    def forward(self, c5: torch.Tensor) -> dict[str, torch.Tensor]:
        c5_grid = F.adaptive_avg_pool2d(c5, self.grid_size)  # (N, C5, S, S)
        dense = self.mlp(c5_grid)  # (N, D, S, S)
        return {
            "dense": F.normalize(dense.flatten(2), dim=1),  # (N, D, S*S)
            "dense_pooled": F.normalize(dense.mean(dim=(2, 3)), dim=1),  # (N, D)
            "c5_grid": c5_grid.flatten(2),  # (N, C5, S*S)
        }


class Encoder(nn.Module):
    """Backbone + named heads; forward merges the heads' output dicts and adds the raw `c5` map."""

    def __init__(self, backbone: ResNetTrunk, heads: dict[str, nn.Module]):
        super().__init__()
        self.backbone = backbone
        for name, head in heads.items():
            self.add_module(name, head)
        self.head_names = tuple(heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c5 = self.backbone(x)
        out = {"c5": c5}
        for name in self.head_names:
            out.update(getattr(self, name)(c5))
        return out


class FeatureQueue(nn.Module):
    """A FIFO of K past keys (MoCo Sec. 3.1): buffer `queue` (K, C) and write pointer `ptr`.

    `enqueue` writes a (N, C) batch at the pointer with wrap-around, so K need not be a multiple of N.
    Initialised with random unit vectors, as MoCo.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1:
            raise PretrainError(f"MODEL.QUEUE_SIZE must be >= 1, got {size}.")
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """keys: (N, C), already gathered from every process."""
        size = self.queue.shape[0]
        keys = keys.detach()[-size:].to(self.queue.dtype)  # more keys than slots: keep the newest
        ptr = int(self.ptr)
        idx = (ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        # out of place: this step's loss still holds the old queue for its backward pass
        self.queue = self.queue.index_copy(0, idx, keys)
        self.ptr[0] = (ptr + keys.shape[0]) % size
